"""ControlPlane: start the control-plane process, drive it through its control API, stop it.

    with ControlPlane.in_dir(tmp) as cp:            # tmp must be traversable by uid 1337
        boot = resources.xds_bootstrap(name, role, admin, cp.xds_socket)
        ... start Envoys with `boot` ...
        v = cp.set_snapshots({name: {"listeners": [...], "clusters": [...]}})["version"]
        late = cp.wait_acked(version=v, timeout_s=30)["stragglers"]

Every call opens its own connection to the control socket, so a ControlPlane can be used
from several threads. A failed command raises ControlPlaneError with the server's message.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from bench.errors import ProvisionError
from bench.probes.resources import process_cpu_ns

_PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # so `-m bench...` imports without install


class ControlPlaneError(ProvisionError):
    """The control plane refused a command, or could not be started or reached."""


class ControlPlane:
    def __init__(self, xds_socket: Path, control_socket: Path, events: Path,
                 log: Path | None = None, python: str = sys.executable,
                 debounce_ms: float = 0.0, push_throttle: int = 0) -> None:
        self.xds_socket = Path(xds_socket)
        self.control_socket = Path(control_socket)
        self.events_file = Path(events)
        self.log = Path(log) if log else self.events_file.with_suffix(".log")
        self.python = python
        self.debounce_ms = debounce_ms
        self.push_throttle = push_throttle
        self._popen: subprocess.Popen[bytes] | None = None
        # bytes of each control-API reply, in call order: what the control plane wrote on
        # the harness's own connections (the kernel view of a push subtracts them)
        self.replies: list[int] = []

    @classmethod
    def in_dir(cls, directory: Path, debounce_ms: float = 0.0,
               push_throttle: int = 0) -> ControlPlane:
        """Sockets, events file and log under `directory` (xds.sock, control.sock,
        xds-events.jsonl, controlplane.log)."""
        d = Path(directory)
        return cls(d / "xds.sock", d / "control.sock", d / "xds-events.jsonl",
                   d / "controlplane.log", debounce_ms=debounce_ms,
                   push_throttle=push_throttle)

    # ---- process --------------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        return self._popen.pid if self._popen else None

    def start(self, timeout_s: float = 20.0) -> Self:
        """Spawn the server in its own session and wait until both sockets answer."""
        if self._popen is not None:
            return self
        cmd = [self.python, "-m", "bench.controlplane", "--xds-socket", str(self.xds_socket),
               "--control-socket", str(self.control_socket), "--events", str(self.events_file),
               "--debounce-ms", str(self.debounce_ms), "--push-throttle", str(self.push_throttle)]
        env = {**os.environ,
               "PYTHONPATH": os.pathsep.join(filter(None, [str(_PACKAGE_ROOT),
                                                           os.environ.get("PYTHONPATH")]))}
        with open(self.log, "ab") as out:
            self._popen = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out,
                                           stderr=subprocess.STDOUT, env=env,
                                           start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while True:
            if self._popen.poll() is not None:
                tail = self._log_tail()
                self._popen = None
                raise ControlPlaneError(f"the control plane exited during start-up: {tail}",
                                        hint=f"see {self.log}")
            if self._answers():
                return self
            if time.monotonic() > deadline:
                self.stop()
                raise ControlPlaneError(f"the control plane did not answer in {timeout_s:.0f} s",
                                        hint=f"see {self.log}")
            time.sleep(0.05)

    def _answers(self) -> bool:
        try:
            self.call({"cmd": "ping"}, timeout_s=1.0)
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(1.0)
                s.connect(str(self.xds_socket))
        except OSError:
            return False
        return True

    def _log_tail(self, lines: int = 5) -> str:
        try:
            return " | ".join(self.log.read_text(errors="replace").strip().splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, grace_s: float = 3.0) -> None:
        """SIGTERM the server by PID, SIGKILL it after grace_s. Idempotent."""
        popen, self._popen = self._popen, None
        if popen is None or popen.poll() is not None:
            return
        popen.send_signal(signal.SIGTERM)
        try:
            popen.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait(timeout=5)

    def returncode(self) -> int | None:
        """The server's exit code once it has exited; None while it runs (or never ran)."""
        return self._popen.poll() if self._popen is not None else None

    def cpu_seconds(self) -> float:
        """CPU time the server process has used (all threads), in seconds."""
        if self.pid is None:
            raise ControlPlaneError("the control plane is not running")
        return process_cpu_ns(self.pid) / 1e9

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # ---- control API ----------------------------------------------------------------------
    def call(self, request: dict[str, Any], timeout_s: float = 120.0) -> Any:
        """One request to the control API; returns its result or raises ControlPlaneError."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout_s)
            s.connect(str(self.control_socket))
            s.sendall(json.dumps(request, separators=(",", ":")).encode() + b"\n")
            chunks: list[bytes] = []
            while not chunks or not chunks[-1].endswith(b"\n"):
                chunk = s.recv(1 << 20)
                if not chunk:
                    raise ControlPlaneError(f"the control plane closed the connection during "
                                            f"{request.get('cmd')!r}", hint=f"see {self.log}")
                chunks.append(chunk)
        data = b"".join(chunks)
        self.replies.append(len(data))
        reply = json.loads(data)
        if not reply.get("ok"):
            raise ControlPlaneError(f"{request.get('cmd')}: {reply.get('error')}")
        return reply["result"]

    def set_snapshots(self, snapshots: Mapping[str, Mapping[str, Any]],
                      meta: Mapping[str, Mapping[str, Any]] | None = None,
                      change: Iterable[Mapping[str, str]] | None = None) -> dict[str, Any]:
        """Give each node id its {"listeners": [...], "clusters": [...], ...}. Without
        `change` the types whose content changed are pushed; with it (ConfigKeys: kind,
        namespace, name) the change goes through the debounce and Istio's push decision,
        which needs `meta` (role, namespace, services, egress) of every node, given once.
        Nodes sharing one config object (the same Python object) are sent as one group, so
        a config shared by 500 proxies crosses the socket and is converted once. Returns
        {"version", "changed", "queued", "convert_s", ...}."""
        by_id: dict[int, tuple[Mapping[str, Any], list[str]]] = {}
        for node, cfg in snapshots.items():
            by_id.setdefault(id(cfg), (cfg, []))[1].append(node)
        groups = [{"nodes": nodes, "snapshot": cfg} for cfg, nodes in by_id.values()]
        req: dict[str, Any] = {"cmd": "snapshot", "groups": groups}
        if meta is not None:
            req["meta"] = {n: dict(m) for n, m in meta.items()}
        if change is not None:
            req["change"] = [dict(k) for k in change]
        return self.call(req)  # type: ignore[no-any-return]

    def push(self, nodes: Iterable[str] | None = None, reason: str = "",
             types: Iterable[str] | None = None) -> dict[str, Any]:
        """Send the nodes' current snapshots again, changed or not, under a new version
        (None: every node), like istiod's full push. Returns {"version", "queued", ...}."""
        return self.call({"cmd": "push", "nodes": None if nodes is None else list(nodes),  # type: ignore[no-any-return]
                          "reason": reason, "types": None if types is None else list(types)})

    def status(self) -> dict[str, Any]:
        """Connected nodes; per node and type: versions sent and ACKed, last NACK, sizes."""
        return self.call({"cmd": "status"})  # type: ignore[no-any-return]

    def wait_acked(self, versions: Mapping[str, str] | None = None, timeout_s: float = 30.0,
                   *, version: str | None = None,
                   nodes: Iterable[str] | None = None) -> dict[str, Any]:
        """Wait until every node ACKed its version (or newer) of each type. Give `versions`
        per node, or one `version` for `nodes` (default: every node); with neither, each
        node's current version. Returns {"acked", "stragglers", "waited_s"}."""
        req: dict[str, Any] = {"cmd": "wait_acked", "timeout_s": timeout_s}
        if versions is not None:
            req["versions"] = dict(versions)
        elif version is not None:
            req["version"] = version
            req["nodes"] = None if nodes is None else list(nodes)
        elif nodes is not None:
            raise ValueError("nodes without a version: pass version= too")
        return self.call(req, timeout_s=timeout_s + 30.0)  # type: ignore[no-any-return]

    def event_cursor(self) -> int:
        """The index the next event will have: pass it to events() later to get only what
        happened after now (without fetching the whole log)."""
        return int(self.call({"cmd": "events", "since": None})["next"])

    def events(self, since: int = 0) -> tuple[list[dict[str, Any]], int]:
        """Accounting events from index `since`, and the index to ask from next time."""
        r = self.call({"cmd": "events", "since": since})
        return r["events"], r["next"]
