"""Constant-rate HTTP GET load for meshbench; started by bench.load.driver, not by hand.

Environment (set by the driver):
  MB_RATE_PER_USER  requests per second per user (target rps / users), required
  MB_PATH           path to GET, default "/"
  MB_HDR_OUT        prefix of the per-second HDR histogram files (see hdr_recorder)
The host comes from --host; users = connections (FastHttpUser keeps one alive per user).
"""

from __future__ import annotations

import os
import sys

# Locust loads this file by path, so its directory is not importable by default.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import hdr_recorder  # noqa: F401 - registers the request/test event hooks
from locust import FastHttpUser, constant_throughput, task

try:
    RATE_PER_USER = float(os.environ["MB_RATE_PER_USER"])
except (KeyError, ValueError) as e:
    raise RuntimeError(f"MB_RATE_PER_USER must be a positive float: {e}") from e
PATH = os.environ.get("MB_PATH", "/") or "/"


class MeshHttpUser(FastHttpUser):
    wait_time = constant_throughput(RATE_PER_USER)

    @task
    def get(self) -> None:
        self.client.get(PATH)
