"""The one runner of external programs (kind, istioctl, docker, kubectl) for kube backends.

Backends take a `Commands` and never call subprocess themselves, so tests swap in
`tests.support.k8s_fake.CommandRecorder` and no test runs a real binary.

    cmd = SubprocessCommands()
    r = cmd.run(["kind", "get", "clusters"], timeout_s=30)
    if r.ok: names = r.stdout.split()
    pf = cmd.start(["kubectl", "--context", "kind-mb-kind", "port-forward", ...], log)
    ...
    pf.stop()
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from bench.errors import ProvisionError

NOT_FOUND = 127  # returncode when the program is not on PATH (as a shell reports it)
TIMED_OUT = 124  # returncode when the program overran its timeout and was killed


@dataclass(frozen=True)
class CommandResult:
    argv: tuple[str, ...]
    returncode: int
    stdout: str = ""
    stderr: str = ""

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def first_error_line(self) -> str:
        for line in (self.stderr or self.stdout).splitlines():
            if line.strip():
                return line.strip()
        return f"exit code {self.returncode}"

    def check(self) -> CommandResult:
        """Self if it succeeded, else ProvisionError naming the command and its error."""
        if not self.ok:
            raise ProvisionError(f"`{shlex.join(self.argv)}` failed: {self.first_error_line()}",
                                 hint="run it by hand to see the full output")
        return self


class Background(Protocol):
    """A long-running command (port-forward, an exec'd Locust)."""

    pid: int

    def poll(self) -> int | None:
        """Its exit code, or None while it runs."""

    def wait(self, timeout_s: float) -> int | None:
        """Wait at most timeout_s for it to exit; its exit code, or None if still running."""

    def stop(self) -> None:
        """Terminate it (and its children); safe to call twice."""


class Commands(Protocol):
    def which(self, name: str) -> str | None: ...

    def run(self, argv: list[str], *, stdin: str = "", timeout_s: float = 60.0) -> CommandResult:
        """Run to completion. Never raises for a failing program: see returncode
        (NOT_FOUND, TIMED_OUT included)."""

    def start(self, argv: list[str], log_path: Path) -> Background:
        """Start in its own process group with stdout and stderr going to log_path."""


class _Popen:
    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self._proc = proc
        self.pid = proc.pid

    def poll(self) -> int | None:
        return self._proc.poll()

    def wait(self, timeout_s: float) -> int | None:
        try:
            return self._proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def stop(self) -> None:
        if self._proc.poll() is not None:
            return
        for sig, grace in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(self._proc.pid, sig)
            except ProcessLookupError:
                return
            if self.wait(grace) is not None:
                return


class SubprocessCommands:
    """`Commands` on the real machine."""

    def which(self, name: str) -> str | None:
        return shutil.which(name)

    def run(self, argv: list[str], *, stdin: str = "", timeout_s: float = 60.0) -> CommandResult:
        try:
            p = subprocess.run(argv, input=stdin or None, capture_output=True, text=True,
                               timeout=timeout_s, stdin=None if stdin else subprocess.DEVNULL,
                               check=False)
        except FileNotFoundError:
            return CommandResult(tuple(argv), NOT_FOUND, "", f"{argv[0]}: not found on PATH")
        except subprocess.TimeoutExpired as e:
            out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
            return CommandResult(tuple(argv), TIMED_OUT, out, f"timed out after {timeout_s:.0f} s")
        return CommandResult(tuple(argv), p.returncode, p.stdout, p.stderr)

    def start(self, argv: list[str], log_path: Path) -> Background:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        return _Popen(proc)
