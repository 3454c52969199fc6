"""XdsLoad: run mb-xdsload (bench/istiod/xdsload, Go), the simulated proxies' delta-ADS
clients of a real istiod, and drive it through its command lines.

    with XdsLoad(binary, "127.0.0.1:15010", proxies, work / "events.jsonl", work) as load:
        load.connect(0, len(proxies))          # opens the streams; returns at once
        while load.status()["synced"] < len(proxies): ...
        k = load.mark()                        # responses from now on carry mark >= k
        held = load.held(work / "held.json")   # {"<i>": {"<type_url>": [n, bytes, digest]}}
        load.dump([0, 5], work / "dump.json")  # bodies of "keep" proxies, base64

`proxies`: dicts {"id", "role" (sidecar | waypoint | ztunnel), "cluster", "metadata",
"keep"}, written to WORK/proxies.json. Every command is one JSON line on the process's
stdin and gets one JSON line on its stdout; its stderr goes to WORK/mb-xdsload.log. A
command that fails raises XdsLoadError naming it (with the log's last lines if the process
died); a command that gets no reply in its timeout also ends the process, since later
replies could no longer be matched to their commands. The context manager always ends the
process: `close` first, then SIGTERM, then SIGKILL. `pid` is for CPU and memory readings.
"""

from __future__ import annotations

import json
import queue
import subprocess
import threading
from collections.abc import Iterable, Mapping, Sequence
from contextlib import suppress
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

from bench.errors import ProvisionError

LOG_NAME = "mb-xdsload.log"
PROXIES_NAME = "proxies.json"


class XdsLoadError(ProvisionError):
    """mb-xdsload refused a command, did not answer it in time, or is not running."""


class XdsLoad:
    def __init__(self, binary: Path | str, addr: str, proxies: Sequence[Mapping[str, Any]],
                 events: Path | str, work_dir: Path | str, *, streams_per_conn: int = 20,
                 lds_after_cds: bool = False, extra_args: Sequence[str] = (),
                 timeout_s: float = 60.0) -> None:
        """Write the proxies list and start the process (no stream is opened yet)."""
        self.binary = Path(binary)
        self.addr = addr
        self.events = Path(events)
        self.work_dir = Path(work_dir)
        self.log = self.work_dir / LOG_NAME
        self.timeout_s = timeout_s
        self.proxies = len(proxies)
        self._lock = threading.Lock()
        self._replies: queue.Queue[bytes | None] = queue.Queue()
        self.work_dir.mkdir(parents=True, exist_ok=True)
        proxies_file = self.work_dir / PROXIES_NAME
        with open(proxies_file, "w") as f:
            json.dump(list(map(dict, proxies)), f, separators=(",", ":"))
        cmd = [str(self.binary), "--addr", addr, "--proxies", str(proxies_file),
               "--events", str(self.events), "--streams-per-conn", str(streams_per_conn)]
        if lds_after_cds:
            cmd.append("--lds-after-cds")
        cmd += list(extra_args)
        with open(self.log, "ab") as err:
            try:
                self._popen: subprocess.Popen[bytes] | None = subprocess.Popen(
                    cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
                    start_new_session=True)
            except OSError as e:
                raise XdsLoadError(f"cannot start {self.binary}: {e}",
                                   hint="build it with `meshbench istiod build`") from e
        assert self._popen.stdout is not None
        self._reader = threading.Thread(target=self._read, args=(self._popen.stdout,),
                                        name="mb-xdsload-replies", daemon=True)
        self._reader.start()

    # ---- process --------------------------------------------------------------------------
    @property
    def pid(self) -> int:
        if self._popen is None:
            raise XdsLoadError("mb-xdsload is not running")
        return self._popen.pid

    def returncode(self) -> int | None:
        """The exit code once the process has ended; None while it runs."""
        return self._popen.poll() if self._popen is not None else None

    def _read(self, stdout: IO[bytes]) -> None:
        for line in stdout:
            self._replies.put(line)
        self._replies.put(None)  # EOF: the process ended (or closed stdout)

    def log_tail(self, lines: int = 8) -> str:
        """The last lines of the process's stderr log, joined with " | "."""
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return " | ".join(text.strip().splitlines()[-lines:])

    def _died(self, what: str) -> XdsLoadError:
        popen = self._popen
        code = None
        if popen is not None:
            with suppress(subprocess.TimeoutExpired):
                code = popen.wait(timeout=2)
        status = f"exit code {code}" if code is not None else "no reply"
        return XdsLoadError(f"mb-xdsload ended during {what!r} ({status}): {self.log_tail()}",
                            hint=f"see {self.log}")

    def terminate(self, grace_s: float = 5.0) -> None:
        """SIGTERM the process (it flushes its events file), SIGKILL after grace_s.
        Idempotent."""
        popen, self._popen = self._popen, None
        if popen is None:
            return
        if popen.poll() is None:
            with suppress(ProcessLookupError):
                popen.terminate()
            try:
                popen.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                with suppress(ProcessLookupError):
                    popen.kill()
                popen.wait(timeout=10)
        for pipe in (popen.stdin, popen.stdout):
            if pipe is not None:
                with suppress(OSError):
                    pipe.close()

    def close(self, timeout_s: float = 60.0) -> None:
        """Close every stream and end the process (its events file flushed). Idempotent;
        ends the process by signal if it does not exit by itself."""
        if self._popen is None:
            return
        try:
            if self._popen.poll() is None:
                self.call({"cmd": "close"}, timeout_s=timeout_s)
                with suppress(subprocess.TimeoutExpired):
                    self._popen.wait(timeout=timeout_s)
        finally:
            self.terminate()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            if exc_type is None:
                self.close()
        finally:
            self.terminate()

    # ---- commands -------------------------------------------------------------------------
    def call(self, request: Mapping[str, Any], timeout_s: float | None = None) -> dict[str, Any]:
        """Send one command, return its reply (a dict with "ok": true); XdsLoadError
        otherwise."""
        what = str(request.get("cmd"))
        timeout = self.timeout_s if timeout_s is None else timeout_s
        with self._lock:
            popen = self._popen
            if popen is None:
                raise XdsLoadError(f"{what}: mb-xdsload is not running")
            if popen.poll() is not None:
                raise self._died(what)
            assert popen.stdin is not None
            try:
                popen.stdin.write(json.dumps(request, separators=(",", ":")).encode() + b"\n")
                popen.stdin.flush()
            except (BrokenPipeError, ValueError, OSError):
                raise self._died(what) from None
            try:
                line = self._replies.get(timeout=timeout)
            except queue.Empty:
                self.terminate()
                raise XdsLoadError(f"mb-xdsload did not answer {what!r} in {timeout:.0f} s "
                                   f"(process ended): {self.log_tail()}",
                                   hint=f"see {self.log}") from None
            if line is None:
                raise self._died(what)
        try:
            reply = json.loads(line)
        except json.JSONDecodeError as e:
            raise XdsLoadError(f"{what}: unreadable reply {line[:200]!r}: {e}") from e
        if not isinstance(reply, dict) or not reply.get("ok"):
            error = reply.get("error") if isinstance(reply, dict) else reply
            raise XdsLoadError(f"mb-xdsload {what}: {error}")
        return reply

    def connect(self, start: int, end: int) -> int:
        """Open the streams of proxies[start:end] (those not yet opened); returns the
        number of streams open now. The streams sync in the background (status)."""
        reply = self.call({"cmd": "connect", "from": int(start), "to": int(end)})
        return int(reply["connected"])

    def status(self) -> dict[str, Any]:
        """{"connected", "synced", "responses", "bytes", "last_response_ns", "errors",
        "errors_total", "decode_errors", "streams_failed", "opened", "proxies", "mark"}."""
        return self.call({"cmd": "status"})

    def mark(self) -> int:
        """A new mark: every response line written from now on carries it (or a later
        one)."""
        return int(self.call({"cmd": "mark"})["mark"])

    def flush(self) -> None:
        """Write out the events file's buffer (it is also flushed every second)."""
        self.call({"cmd": "flush"})

    def dump(self, indices: Iterable[int], path: Path | str,
             timeout_s: float = 600.0) -> dict[str, Any]:
        """Write {"<i>": {"<type_url>": {"<name>": "<base64>"}}} of the given proxies to
        `path` (bodies exist for "keep" proxies only; the others are written as {}).
        Returns the reply ({"ok": true, "not_kept": [...]})."""
        return self.call({"cmd": "dump", "proxies": [int(i) for i in indices],
                          "path": str(path)}, timeout_s=timeout_s)

    def held(self, path: Path | str, timeout_s: float = 600.0) -> dict[str, Any]:
        """Write and return, for every proxy, {"<i>": {"<type_url>": [resources, bytes,
        digest]}}: what each proxy holds now (digest: 16 hex digits over the names and
        bytes of the type's resources, comparable within one process)."""
        self.call({"cmd": "held", "path": str(path)}, timeout_s=timeout_s)
        with open(path) as f:
            held: dict[str, Any] = json.load(f)
        return held
