"""Locust-side latency recorder: one HDR histogram per process per second, as JSONL.

Imported by a locustfile; it runs inside Locust (gevent), never in the orchestrator.
Locust's own percentiles round anything under 100 ms to whole milliseconds, which hides
a ~0.1 ms proxy hop, so every request's float `response_time` is recorded here in
integer microseconds instead.

Each load-generating process appends lines to f"{MB_HDR_OUT}.{pid}" (the master of a
--processes run sends no requests and writes nothing):

    {"ts_start": float, "ts_end": float, "pid": int, "count": int, "errors": int,
     "hist": "<HdrHistogram.encode() base64>", "hist_intended": "...", "hist_lag": "...",
     "cpu_s": float}

`hist` times each request from its actual send (Locust's response_time); `hist_intended`
from its intended send time (context["intended"], wall clock: coordinated-omission
corrected); `hist_lag` is how late the send was against its schedule (the difference).
`cpu_s` is this process's own CPU time (all threads, user + system: time.process_time) over
the interval, so the load generator's CPU is measured where it runs -- inside a pod on the
kube backends, where the host cannot sample it. `count` and the histograms hold successful
requests completed in [ts_start, ts_end);
failed requests (exception set) are only counted in `errors`, so that fast connection
errors do not pull the latency distribution down. Intervals end on whole wall-clock
seconds so that the files of several processes line up.
"""

from __future__ import annotations

import json
import math
import os
import time
from typing import Any, TextIO

import gevent
from arrivals import timings_us
from hdrh.histogram import HdrHistogram
from locust import events
from locust.runners import MasterRunner

LOWEST_US, HIGHEST_US, SIG_FIGS = 1, 60_000_000, 3

_OUT_PREFIX = os.environ.get("MB_HDR_OUT", "")
if not _OUT_PREFIX:
    raise RuntimeError("MB_HDR_OUT is not set: it names the per-second HDR output file prefix")


class _Recorder:
    def __init__(self) -> None:
        self.hist = HdrHistogram(LOWEST_US, HIGHEST_US, SIG_FIGS)
        self.hist_intended = HdrHistogram(LOWEST_US, HIGHEST_US, SIG_FIGS)
        self.hist_lag = HdrHistogram(LOWEST_US, HIGHEST_US, SIG_FIGS)
        self.errors = 0
        self.ts_start: float | None = None  # None until the test starts in this process
        self.cpu_start = 0.0  # time.process_time() at ts_start
        self.out: TextIO | None = None
        self.flusher: gevent.Greenlet | None = None

    def record(self, response_time_ms: float, failed: bool, intended: float | None) -> None:
        if failed:
            self.errors += 1
            return
        actual, from_intended, lag = timings_us(intended, time.time(), response_time_ms)
        self.hist.record_value(_clamp(actual))
        if from_intended is not None and lag is not None:
            self.hist_intended.record_value(_clamp(from_intended))
            self.hist_lag.record_value(_clamp(lag))

    def flush(self, *, keep_empty: bool) -> None:
        """Write the current interval and start a new one (no gevent yield in between)."""
        if self.ts_start is None:
            return
        now = time.time()
        cpu = time.process_time()
        count = self.hist.get_total_count()
        if count or self.errors or keep_empty:
            if self.out is None:
                # Opened here, after Locust's fork, so that the pid names this process.
                # Kept open across flushes; closed by stop().
                self.out = open(f"{_OUT_PREFIX}.{os.getpid()}", "a", buffering=1)  # noqa: SIM115
            line = {
                "ts_start": self.ts_start, "ts_end": now, "pid": os.getpid(),
                "count": count, "errors": self.errors,
                "hist": self.hist.encode().decode("ascii"),
                "hist_intended": self.hist_intended.encode().decode("ascii"),
                "hist_lag": self.hist_lag.encode().decode("ascii"),
                "cpu_s": round(cpu - self.cpu_start, 6),
            }
            self.out.write(json.dumps(line, separators=(",", ":")) + "\n")
        self._reset_hists()
        self.ts_start = now
        self.cpu_start = cpu

    def _reset_hists(self) -> None:
        for h in (self.hist, self.hist_intended, self.hist_lag):
            h.reset()
        self.errors = 0

    def every_second(self) -> None:
        while True:
            now = time.time()
            gevent.sleep(math.floor(now) + 1.0 - now)
            # Empty seconds are written too: a gap in the load shows up as zero counts.
            self.flush(keep_empty=True)

    def start(self) -> None:
        if self.ts_start is not None:
            return
        if self.out is None:
            # created at once: the harness takes the file's appearance as "this process's
            # test has started" (bench.load.driver.LocustRun.wait_started)
            self.out = open(f"{_OUT_PREFIX}.{os.getpid()}", "a", buffering=1)  # noqa: SIM115
        self._reset_hists()
        self.ts_start = time.time()
        self.cpu_start = time.process_time()
        self.flusher = gevent.spawn(self.every_second)

    def stop(self) -> None:
        if self.flusher is not None:
            self.flusher.kill(block=False)
            self.flusher = None
        self.flush(keep_empty=False)
        self.ts_start = None
        if self.out is not None:
            self.out.close()
            self.out = None


def _clamp(us: int) -> int:
    return min(max(us, 1), HIGHEST_US)


_recorder = _Recorder()


def _is_master(environment: Any) -> bool:
    return isinstance(getattr(environment, "runner", None), MasterRunner)


@events.request.add_listener
def _on_request(response_time: float, exception: BaseException | None,
                context: dict[str, Any] | None = None, **_: Any) -> None:
    intended = (context or {}).get("intended")
    _recorder.record(response_time, exception is not None,
                     float(intended) if intended is not None else None)


@events.test_start.add_listener
def _on_test_start(environment: Any, **_: Any) -> None:
    if not _is_master(environment):
        _recorder.start()


@events.test_stop.add_listener
def _on_test_stop(environment: Any, **_: Any) -> None:
    _recorder.stop()


@events.quitting.add_listener
def _on_quitting(environment: Any, **_: Any) -> None:
    _recorder.stop()
