"""Envoys bootstrapped from the control plane, on loopback in the current network namespace.

For tests and benchmarks of the control plane alone: no namespaces, no iptables, no uid
switch; admin on a Unix socket under `directory`, listeners wherever the snapshot puts them
(tests pick free 127.0.0.1 ports, tests/support/ports.py). Every Envoy runs with
--disable-hot-restart, so many can share the host, and is stopped by its PID (stop_all in a
finally).
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from bench.backends.local.backend import envoy_binary
from bench.backends.local.netns import admin_get
from bench.controlplane.resources import xds_bootstrap


@dataclass(frozen=True)
class Envoy:
    node_id: str
    popen: subprocess.Popen[bytes]
    admin: Path
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def get(self, path: str, timeout_s: float = 5.0) -> tuple[int, str]:
        """GET on this Envoy's admin endpoint."""
        return admin_get(self.admin, path, timeout=timeout_s)

    def log_tail(self, lines: int = 5) -> str:
        try:
            return " | ".join(self.log.read_text(errors="replace").strip().splitlines()[-lines:])
        except OSError:
            return ""


def start(node_id: str, directory: Path, xds_socket: Path, *, role: str = "sidecar",
          internal_listeners: bool = False, concurrency: int = 1,
          log_level: str = "warning", binary: Path | None = None) -> Envoy:
    """Write an ADS bootstrap for `node_id` under `directory` and start Envoy with it."""
    directory.mkdir(parents=True, exist_ok=True)
    admin = directory / f"{node_id}.admin.sock"
    boot = directory / f"{node_id}.json"
    boot.write_text(json.dumps(xds_bootstrap(node_id, role, admin, xds_socket,
                                             internal_listeners=internal_listeners)))
    log = directory / f"{node_id}.log"
    with open(log, "wb") as out:
        popen = subprocess.Popen(
            [str(binary or envoy_binary()), "-c", str(boot), "--disable-hot-restart",
             "--concurrency", str(concurrency), "--log-level", log_level, "--drain-time-s", "1"],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True)
    return Envoy(node_id, popen, admin, log)


def wait_admin(envoys: Iterable[Envoy], timeout_s: float = 60.0) -> None:
    """Wait until every Envoy's admin socket answers; raise if one exits or time runs out."""
    pending = list(envoys)
    deadline = time.monotonic() + timeout_s
    while pending:
        for e in pending:
            if not e.alive():
                raise RuntimeError(f"{e.node_id} exited ({e.popen.returncode}): {e.log_tail()}")
        still = []
        for e in pending:
            try:
                ok = e.get("/ready", timeout_s=1.0)[0] in (200, 503)  # 503: still initialising
            except OSError:
                ok = False
            if not ok:
                still.append(e)
        pending = still
        if pending and time.monotonic() > deadline:
            raise TimeoutError(f"{len(pending)} Envoys without admin after {timeout_s:.0f} s, "
                               f"e.g. {pending[0].node_id}: {pending[0].log_tail()}")
        if pending:
            time.sleep(0.05)


def stop_all(envoys: Iterable[Envoy], grace_s: float = 3.0) -> None:
    """SIGTERM each Envoy by PID, then SIGKILL the ones still running after grace_s."""
    running = [e for e in envoys if e.alive()]
    for e in running:
        e.popen.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for e in running:
        try:
            e.popen.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            e.popen.kill()
            e.popen.wait(timeout=5)
