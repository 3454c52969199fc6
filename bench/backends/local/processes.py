"""Processes the local backend starts: each in its own session, known by PID, stopped by PID."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from bench.probes.processes import alive


@dataclass
class Managed:
    name: str  # unique entity name, e.g. "sidecar-client-0", "app-svc-0-0"
    role: str  # sidecar, ztunnel, waypoint, app
    popen: subprocess.Popen[bytes]
    netns: str
    log: Path
    pod: str = ""
    node: str = ""

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log_tail(self, lines: int = 3) -> str:
        try:
            text = self.log.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(text[-lines:])


class Supervisor:
    def __init__(self) -> None:
        self.procs: dict[str, Managed] = {}

    def start(self, name: str, role: str, argv: list[str], netns: str, log: Path,
              uid: int | None = None, pod: str = "", node: str = "") -> Managed:
        """Start argv inside netns; `ip netns exec` and `setpriv` exec, so the PID we hold
        is the program's own."""
        cmd = ["ip", "netns", "exec", netns]
        if uid is not None:
            cmd += ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]
        cmd += argv
        with open(log, "wb") as out:
            popen = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        m = Managed(name, role, popen, netns, log, pod, node)
        self.procs[name] = m
        return m

    def dead(self) -> list[Managed]:
        return [m for m in self.procs.values() if m.popen.poll() is not None]

    def stop_all(self, grace_s: float = 3.0, reap_s: float = 60.0) -> None:
        """SIGTERM every process group we started, then SIGKILL what is left after grace_s.
        A killed process is waited for up to reap_s (shared by all): with a thousand
        processes exiting at once on two cores, the kernel takes seconds to free them."""
        for m in self.procs.values():
            if m.popen.poll() is None:
                _signal_group(m.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        killed = []
        for m in self.procs.values():
            left = max(0.0, deadline - time.monotonic())
            try:
                m.popen.wait(timeout=left)
            except subprocess.TimeoutExpired:
                _signal_group(m.pid, signal.SIGKILL)
                killed.append(m)
        reap = time.monotonic() + reap_s
        for m in killed:
            m.popen.wait(timeout=max(1.0, reap - time.monotonic()))
        self.procs.clear()


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass  # already gone: nothing of ours to stop


def kill_pids(pids: list[int], grace_s: float = 3.0) -> None:
    """Stop processes by PID (teardown of a crashed run): SIGTERM, wait, SIGKILL."""
    for pid in pids:
        _kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.05)
    for pid in pids:
        if alive(pid):
            _kill(pid, signal.SIGKILL)


def _kill(pid: int, sig: signal.Signals) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass  # exited meanwhile
