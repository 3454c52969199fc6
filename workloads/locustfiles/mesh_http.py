"""Open-loop HTTP GET load for meshbench; started by bench.load.driver, not by hand.

Environment (set by the driver):
  MB_RATE          requests per second over all users, required
  MB_USERS         number of users over all processes (= connections), required
  MB_PROCESSES     Locust processes (--processes), default 1
  MB_ARRIVALS      uniform (default) | poisson | burst (see arrivals.py)
  MB_SEED          seed of the Poisson streams, default 0
  MB_PATH          path to GET, default "/"
  MB_HDR_OUT       prefix of the per-second HDR histogram files (see hdr_recorder)
The host comes from --host; users = connections (FastHttpUser keeps one alive per user).
Every request carries its intended send time (context["intended"]) so that the recorder
can time it from the schedule as well as from the actual send.
"""

from __future__ import annotations

import itertools
import os
import sys
import time

# Locust loads this file by path, so its directory is not importable by default.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import gevent
import hdr_recorder  # noqa: F401 - registers the request/test event hooks
from arrivals import Schedule, user_slot
from locust import FastHttpUser, constant, task
from locust.runners import WorkerRunner


def _env(name: str, kind: type, default: object = None) -> object:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        if default is None:
            raise RuntimeError(f"{name} must be set (by bench.load.driver)")
        return default
    try:
        return kind(raw)
    except ValueError as e:
        raise RuntimeError(f"{name}={raw!r}: {e}") from e


RATE = float(_env("MB_RATE", float))  # type: ignore[arg-type]
USERS = int(_env("MB_USERS", int))  # type: ignore[arg-type]
PROCESSES = int(_env("MB_PROCESSES", int, 1))  # type: ignore[arg-type]
ARRIVALS = str(_env("MB_ARRIVALS", str, "uniform"))
SEED = int(_env("MB_SEED", int, 0))  # type: ignore[arg-type]
PATH = os.environ.get("MB_PATH", "/") or "/"
_local_users = itertools.count()


class MeshHttpUser(FastHttpUser):
    wait_time = constant(0)  # the task sleeps until its intended time itself

    def on_start(self) -> None:
        runner = self.environment.runner
        worker = runner.worker_index if isinstance(runner, WorkerRunner) else 0
        slot = user_slot(next(_local_users), worker, PROCESSES, USERS)
        self.schedule = Schedule(ARRIVALS, slot, USERS, RATE, SEED)

    @task
    def get(self) -> None:
        intended = self.schedule.next(time.time())
        delay = intended - time.time()
        if delay > 0:
            gevent.sleep(delay)
        self.client.get(PATH, context={"intended": intended})
