"""LocustRun.check: the load generator's leader or a worker gone mid-cell is noticed (a
stand-in program with one child plays Locust with --processes)."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from bench.load.driver import LocustRun

# a leader with one worker child, both sleeping, as `locust --processes 1` would be
LEADER = ("import subprocess, sys, time; "
          "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
          "time.sleep(60)")


def _run(tmp_path: Path) -> LocustRun:
    return LocustRun([sys.executable, "-c", LEADER], dict(os.environ),
                     hdr_out=tmp_path / "hdr", log_path=tmp_path / "log", duration_s=60,
                     timeout_s=90).start()


def _worker(run: LocustRun) -> int:
    deadline = time.monotonic() + 30
    while not run._workers:  # the CPU sampler records each child it sees, once a second
        assert time.monotonic() < deadline, "the child was never seen"
        time.sleep(0.05)
    return next(iter(run._workers))


def test_a_worker_gone_is_noticed(tmp_path: Path) -> None:
    run = _run(tmp_path)
    try:
        worker = _worker(run)
        assert run.check() == ""
        os.kill(worker, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while not (why := run.check()):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert f"Locust worker pid {worker} is gone (1 of 1 workers)" in why
    finally:
        run.stop()


def test_the_leader_gone_is_noticed(tmp_path: Path) -> None:
    run = _run(tmp_path)
    try:
        _worker(run)
        os.kill(run.pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while not (why := run.check()):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert why.startswith(f"Locust (pid {run.pid}) exited early with signal 9")
    finally:
        run.stop()
    assert "exited with -9" in run.check()  # reaped by stop(): still says so
