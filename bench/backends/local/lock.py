"""The host's lock (/run/meshbench/lock, flock): one user of the host's namespaces, proxies
and control planes at a time (a local-backend run, a test, the real istiod). The kernel
drops it when its holder dies, so a stale lock is simply taken over; the file names the
holder ("pid run_id") for the error a second user prints."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from bench.errors import PrerequisiteError

RUNTIME = Path("/run/meshbench")


class LockHeld(PrerequisiteError):
    """Another process holds the local backend's lock."""


class HostLock:
    def __init__(self, runtime: Path = RUNTIME) -> None:
        self.runtime = runtime
        self.fd: int | None = None

    def take(self, run_id: str = "") -> None:
        """Take it now, or LockHeld naming the holder."""
        if self.fd is not None:
            return
        self.runtime.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.runtime / "lock", os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode(errors="replace").split()
            os.close(fd)
            pid = holder[0] if holder else "unknown"
            run = holder[1] if len(holder) > 1 else "not a run (a test or a benchmark?)"
            raise LockHeld(f"another meshbench run holds the local backend: run {run}, "
                           f"pid {pid}",
                           hint="wait for it (meshbench run --wait-lock SECONDS), or stop it "
                                "(Ctrl-C or kill -TERM that pid)") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {run_id}".strip().encode(), 0)
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
