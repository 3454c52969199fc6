"""The local backend's lock: a second run is told who holds it (run id and pid), can wait for
it, and takes over the lock of a process that died."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from bench import scenario as scen
from bench.backends.local.backend import LocalBackend, LockHeld

HOLDER = """
import sys
from pathlib import Path
from bench import scenario as scen
from bench.backends.local.backend import LocalBackend
b = LocalBackend(scen.read("smoke"), runtime=Path(sys.argv[1]))
b.hold_lock(sys.argv[2])
print("held", flush=True)
sys.stdin.read()  # until the test closes our stdin (or kills us)
b.release_lock()
"""


def _holder(runtime: Path, run_id: str) -> subprocess.Popen[str]:
    p = subprocess.Popen([sys.executable, "-c", HOLDER, str(runtime), run_id],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])})
    assert p.stdout is not None
    assert p.stdout.readline().strip() == "held"  # blocks until it holds the lock
    return p


def _backend(runtime: Path) -> LocalBackend:
    return LocalBackend(scen.read("smoke"), runtime=runtime)


def test_a_second_run_is_told_which_run_and_pid_hold_the_backend(tmp_path: Path) -> None:
    runtime = tmp_path / "meshbench"
    first = _holder(runtime, "20260101T000000Z-quick-1")
    try:
        with pytest.raises(LockHeld) as e:
            _backend(runtime).hold_lock("second")
        line = e.value.one_line()
        assert f"run 20260101T000000Z-quick-1, pid {first.pid}" in line
        assert "--wait-lock" in line and "\n" not in line
        assert e.value.exit_code == 2
    finally:
        first.kill()
        first.wait()


@pytest.fixture
def no_remove_all(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """teardown's sweep of every mb- namespace on the host must not run from a unit test
    (another user's run may be going): record it instead."""
    calls: list[Path] = []
    monkeypatch.setattr("bench.backends.local.backend.remove_all",
                        lambda runtime, keep=(): calls.append(runtime) or [])
    return calls


def test_wait_lock_waits_for_the_holder_to_finish(tmp_path: Path,
                                                  no_remove_all: list[Path]) -> None:
    runtime = tmp_path / "meshbench"
    first = _holder(runtime, "first")
    assert first.stdin is not None
    # the holder lets go a moment after we start waiting (on its own thread's event)
    started = threading.Event()

    def release() -> None:
        started.wait(30)
        time.sleep(0.5)
        first.stdin.close()  # type: ignore[union-attr]

    t = threading.Thread(target=release)
    t.start()
    b = _backend(runtime)
    started.set()
    b.hold_lock("second", wait_s=60)
    t.join()
    first.wait(timeout=30)
    assert (runtime / "lock").read_text() == f"{os.getpid()} second"
    b.teardown()  # between modes a run keeps the lock...
    assert b._lock_fd is not None
    b.release_lock()  # ...until it ends
    assert b._lock_fd is None


def test_the_lock_of_a_killed_run_is_taken_over(tmp_path: Path) -> None:
    runtime = tmp_path / "meshbench"
    first = _holder(runtime, "killed-run")
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    assert "killed-run" in (runtime / "lock").read_text()  # its record is stale
    b = _backend(runtime)
    b.hold_lock("next-run")  # no wait needed: the kernel dropped the dead holder's lock
    assert (runtime / "lock").read_text() == f"{os.getpid()} next-run"
    b.release_lock()


def test_without_a_run_the_lock_is_released_by_teardown(tmp_path: Path,
                                                        no_remove_all: list[Path]) -> None:
    """Tests and benchmarks that provision directly keep the old behaviour."""
    b = _backend(tmp_path / "meshbench")
    b.wait_for_lock(5)
    b.teardown()
    assert b._lock_fd is None
    assert no_remove_all == [tmp_path / "meshbench"]
