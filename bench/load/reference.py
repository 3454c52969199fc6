"""The independent latency reference: mb-refclient (bench/load/refclient.c) in the client pod.

Why it can be trusted as a yardstick for Locust's figures: it is a small C program with one
blocking thread per connection (the kernel wakes the thread that owns the socket when its
response arrives: no event loop, interpreter or garbage collector in between), it paces each
connection on absolute CLOCK_MONOTONIC deadlines with the connections' schedules spread
evenly over the period (or Poisson), it never waits for a late response to schedule the next
one, and it writes every request's intended, sent and completed times raw: percentiles are
computed here with numpy, not from buckets. It shares no code with Locust, the recorder or the
kernel-timed probe. `make setup` builds it into the venv's bin/ (gcc); `meshbench doctor`
says when it is missing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

from bench.errors import CellFailed, PrerequisiteError
from bench.load.hdr import LatencySummary, latency_values
from bench.probes.client_latency import Requests, schedule_spread, summarize_requests, window
from bench.store import Cell, Sample

SOURCE = "reference"
# the reference client's requests timed by the kernel probe too: the same kernel timing on an
# independent client, and (against SOURCE) what its own syscalls and wake-ups add
SOURCE_KERNEL = "reference_kernel"
SOURCE_C = Path(__file__).with_name("refclient.c")
BINARY = "mb-refclient"


def refclient_path() -> Path:
    """The built client: $MB_REFCLIENT, the venv's bin/, or PATH."""
    candidates = [os.environ.get("MB_REFCLIENT", ""), str(Path(sys.prefix) / "bin" / BINARY),
                  shutil.which(BINARY) or ""]
    for c in candidates:
        if c and os.access(c, os.X_OK):
            return Path(c)
    raise PrerequisiteError(f"the reference client {BINARY} is not built",
                            hint=f"make setup (builds it with gcc from {SOURCE_C.name})")


def build(out: Path) -> Path:
    """Compile refclient.c to `out` (what `make setup` does); PrerequisiteError without gcc."""
    cc = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    if cc is None:
        raise PrerequisiteError("no C compiler to build the reference client",
                                hint="apt-get install gcc")
    subprocess.run([cc, "-O2", "-Wall", "-pthread", "-o", str(out), str(SOURCE_C), "-lm"],
                   check=True)
    return out


def run_reference(*, netns: str | None, url: str, rate: float, connections: int,
                  duration_s: float, arrivals: str, seed: int, out: Path,
                  timeout_s: float, on_start: Callable[[int], None] | None = None) -> Requests:
    """Run mb-refclient against `url` (an IPv4 address inside the harness's namespaces) and
    return its completed requests (wall-clock times, latency from the actual send).
    `on_start(pid)` is called as soon as it runs (it sends its first request 100 ms later):
    the kernel-timed probe watches it from there."""
    parts = urlsplit(url)
    if parts.hostname is None or parts.port is None:
        raise ValueError(f"reference client needs host:port in the URL: {url!r}")
    model = arrivals if arrivals in ("uniform", "poisson") else "uniform"
    cmd = [str(refclient_path()), parts.hostname, str(parts.port), parts.path or "/",
           repr(float(rate)), str(connections), repr(float(duration_s)), model, str(seed),
           str(out)]
    if netns:
        cmd = ["ip", "netns", "exec", netns, *cmd]
    # `ip netns exec` execs the client: the pid is mb-refclient's own
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          stdin=subprocess.DEVNULL) as proc:
        if on_start is not None:
            on_start(proc.pid)
        try:
            stdout, stderr = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired as e:
            proc.kill()
            proc.communicate()
            raise CellFailed(f"reference client overran {timeout_s:.0f} s") from e
    if proc.returncode != 0:
        raise CellFailed(f"reference client exited {proc.returncode}: "
                         f"{(stderr or stdout).strip()[-200:]}")
    return load_records(out)


def load_records(path: Path) -> Requests:
    recs = np.fromfile(path, dtype="<i8").reshape(-1, 3)
    order = np.argsort(recs[:, 2], kind="stable")
    recs = recs[order]
    return Requests(t_send=recs[:, 1] / 1e9, t_done=recs[:, 2] / 1e9,
                    latency_us=(recs[:, 2] - recs[:, 1]) / 1e3,
                    sk=np.zeros(len(recs), dtype=np.uint64))


def to_samples(cell: Cell, summary: LatencySummary, target_rps: float,
               spread: dict[str, float], source: str = SOURCE) -> list[Sample]:
    values = latency_values(summary)
    values += [("requests", "count", float(summary.count)),
               ("achieved_rps", "rps", summary.achieved_rps),
               ("target_rps", "rps", float(target_rps))]
    values += [(k, "ratio", v) for k, v in spread.items()]
    return [Sample.for_cell(cell, source=source, metric=m, unit=u, value=v, entity="client",
                            ts=summary.t1) for m, u, v in values]


def reference_cell(*, cell: Cell, netns: str | None, url: str, connections: int,
                   warmup_s: float, window_s: float, arrivals: str, seed: int, out: Path,
                   on_start: Callable[[int], None] | None = None,
                   ) -> tuple[LatencySummary, list[Sample], tuple[float, float]]:
    """One reference window at the cell's rate: warm-up, then window_s measured. Returns
    the summary, its rows and the window (wall clock)."""
    req = run_reference(netns=netns, url=url, rate=cell.level, connections=connections,
                        duration_s=warmup_s + window_s, arrivals=arrivals, seed=seed, out=out,
                        timeout_s=warmup_s + window_s + 30, on_start=on_start)
    if not len(req):
        raise CellFailed("reference client completed no request")
    start = float(req.t_send.min())
    t0, t1 = start + warmup_s, start + warmup_s + window_s
    win = window(req, t0, t1)
    summary = summarize_requests(win, t0, t1)
    rows = to_samples(cell, summary, cell.level, schedule_spread(win.t_send, cell.level))
    return summary, rows, (t0, t1)
