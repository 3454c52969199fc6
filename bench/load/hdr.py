"""Merge and summarise the load generator's per-second HDR histograms.

Reads the JSONL lines written by workloads/locustfiles/hdr_recorder.py (one file per
Locust process, named f"{prefix}.{pid}") without importing Locust or gevent. Values are
integer microseconds; percentiles are exact to HDR's 3 significant figures.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from hdrh.histogram import HdrHistogram

from bench.store import Cell, Sample

LOWEST_US, HIGHEST_US, SIG_FIGS = 1, 60_000_000, 3  # must match the recorder's
SATURATION_RPS_RATIO = 0.95
# Locust's timing from each request's intended send time (coordinated-omission corrected)
SOURCE_INTENDED = "load_intended"
SATURATION_CPU_PERCENT = 80.0
# a user's median send lag past max(1 ms, a quarter of its period between sends): behind
# its schedule, so it catches up in bursts (the open-loop schedule was not kept)
SATURATION_LAG_US = 1000.0
SATURATION_LAG_SHARE = 0.25


@dataclass(frozen=True)
class Interval:
    """One process's histogram of successful requests completed in [ts_start, ts_end)."""

    ts_start: float
    ts_end: float
    pid: int
    count: int
    errors: int
    hist: str  # base64 from HdrHistogram.encode(), decoded only when merged
    cpu_s: float | None = None  # the process's CPU time over the interval (None: not recorded)

    @property
    def midpoint(self) -> float:
        return (self.ts_start + self.ts_end) / 2.0


def cpu_percent_max(intervals: Iterable[Interval], t0: float, t1: float) -> float | None:
    """Highest CPU % (of one core) of any load-generating process over the intervals whose
    midpoint lies in [t0, t1], from their `cpu_s`; None when none of them recorded it."""
    seen = [100.0 * i.cpu_s / (i.ts_end - i.ts_start) for i in intervals
            if i.cpu_s is not None and i.ts_end > i.ts_start and t0 <= i.midpoint <= t1]
    return max(seen) if seen else None


@dataclass(frozen=True)
class LatencySummary:
    """Latency (us) and throughput of one window [t0, t1]; latencies are 0.0 when count == 0."""

    p50_us: float
    p90_us: float
    p99_us: float
    p999_us: float
    max_us: float
    mean_us: float
    count: int
    errors: int
    achieved_rps: float
    t0: float
    t1: float
    seconds_covered: float


def hdr_files(prefix: Path) -> list[Path]:
    """The per-process files the recorder wrote for MB_HDR_OUT=prefix, sorted."""
    return sorted(p for p in prefix.parent.glob(prefix.name + ".*") if p.suffix[1:].isdigit())


HISTOGRAMS = ("hist", "hist_intended", "hist_lag")


def read_intervals(paths: Iterable[Path], field: str = "hist") -> list[Interval]:
    """All intervals from the given JSONL files, sorted by start time, with the histogram
    `field`: "hist" (from the actual send), "hist_intended" (from the intended send time),
    "hist_lag" (send lateness). Lines without that field are skipped.

    A truncated last line (the process was killed mid-write) is skipped.
    """
    if field not in HISTOGRAMS:
        raise ValueError(f"histogram field {field!r}: expected one of {', '.join(HISTOGRAMS)}")
    out: list[Interval] = []
    for path in paths:
        for line in Path(path).read_text().splitlines():
            try:
                d = json.loads(line)
            except json.JSONDecodeError:
                continue
            if field not in d:
                continue
            out.append(Interval(
                ts_start=float(d["ts_start"]), ts_end=float(d["ts_end"]), pid=int(d["pid"]),
                count=int(d["count"]), errors=int(d["errors"]), hist=str(d[field]),
                cpu_s=float(d["cpu_s"]) if d.get("cpu_s") is not None else None,
            ))
    out.sort(key=lambda i: (i.ts_start, i.pid))
    return out


def merge(
    intervals: Iterable[Interval], t0: float, t1: float
) -> tuple[HdrHistogram, int, int, float]:
    """Add up the intervals whose midpoint lies in [t0, t1].

    Returns (histogram, count, errors, seconds_covered), where seconds_covered is the
    length of the union of the kept intervals' spans (a gap means a process wrote nothing).
    """
    total = HdrHistogram(LOWEST_US, HIGHEST_US, SIG_FIGS)
    count = errors = 0
    spans: list[tuple[float, float]] = []
    for i in intervals:
        if not t0 <= i.midpoint <= t1:
            continue
        if i.count:
            total.add(HdrHistogram.decode(i.hist))
        count += i.count
        errors += i.errors
        spans.append((i.ts_start, i.ts_end))
    return total, count, errors, _union_length(spans)


def _union_length(spans: list[tuple[float, float]]) -> float:
    covered, end = 0.0, -math.inf
    for a, b in sorted(spans):
        if b > end:
            covered += b - max(a, end)
            end = b
    return covered


def summarize(intervals: Iterable[Interval], t0: float, t1: float) -> LatencySummary:
    """Percentiles, count, errors and achieved rps (= count / (t1 - t0)) over [t0, t1]."""
    if t1 <= t0:
        raise ValueError(f"empty window [{t0}, {t1}]")
    hist, count, errors, covered = merge(intervals, t0, t1)

    def pct(p: float) -> float:
        return float(hist.get_value_at_percentile(p)) if count else 0.0

    return LatencySummary(
        p50_us=pct(50), p90_us=pct(90), p99_us=pct(99), p999_us=pct(99.9),
        max_us=float(hist.get_max_value()) if count else 0.0,
        mean_us=float(hist.get_mean_value()) if count else 0.0,
        count=count, errors=errors, achieved_rps=count / (t1 - t0),
        t0=t0, t1=t1, seconds_covered=covered,
    )


def is_saturated(achieved_rps: float, target_rps: float,
                 loadgen_cpu_percent: float | None, send_lag_p50_us: float | None = None,
                 user_period_us: float | None = None) -> bool:
    """Locust is closed-loop: below 95 % of target, or above 80 % of a core, the latencies
    describe the load generator's limits as much as the system under test. A user that
    falls behind its schedule catches up by sending back to back: above 105 % of target,
    or a median send lag over a quarter of a user's period (and 1 ms), the schedule was not
    kept either. With the CPU or the lag unmeasured (None) those parts are not checked."""
    late = (send_lag_p50_us is not None and user_period_us is not None
            and send_lag_p50_us > max(SATURATION_LAG_US, SATURATION_LAG_SHARE * user_period_us))
    return (achieved_rps < SATURATION_RPS_RATIO * target_rps
            or achieved_rps > (2.0 - SATURATION_RPS_RATIO) * target_rps
            or late
            or (loadgen_cpu_percent is not None
                and loadgen_cpu_percent > SATURATION_CPU_PERCENT))


def to_samples(
    cell: Cell,
    summary: LatencySummary,
    target_rps: float,
    loadgen_cpu_percent: float | None,
    saturated: bool | None = None,
    cpu_missing: str = "",
) -> list[Sample]:
    """Tidy rows (source "load", entity "client") for one cell.

    `saturated` defaults to is_saturated(...). Latency rows are left out when the window
    has no successful request, since there is no latency to report. Without a measured
    load-generator CPU (None) there is no "loadgen_cpu" row, and the "saturated" row says
    in its labels that CPU could not be checked, and why (`cpu_missing`).
    """
    if saturated is None:
        saturated = is_saturated(summary.achieved_rps, target_rps, loadgen_cpu_percent)
    ts = summary.t1
    values = latency_values(summary)
    values += [
        ("requests", "count", float(summary.count)), ("errors", "count", float(summary.errors)),
        ("achieved_rps", "rps", summary.achieved_rps), ("target_rps", "rps", float(target_rps)),
    ]
    if loadgen_cpu_percent is not None:
        values.append(("loadgen_cpu", "percent", float(loadgen_cpu_percent)))
    rows = [
        Sample.for_cell(cell, source="load", metric=m, unit=u, value=v, entity="client", ts=ts)
        for m, u, v in values
    ]
    check = ({} if loadgen_cpu_percent is not None else
             {"cpu_checked": False,
              "cpu_missing": cpu_missing or "the load generator's CPU was not measured"})
    rows.append(Sample.for_cell(cell, source="load", metric="saturated", unit="bool",
                                value=1.0 if saturated else 0.0, entity="client", ts=ts,
                                labels=check or None))
    return rows


def to_latency_samples(cell: Cell, summary: LatencySummary, *, source: str,
                       prefix: str = "latency") -> list[Sample]:
    """Percentile rows only (entity "client"): f"{prefix}_p50" ... for another timing of the
    same requests (e.g. from the intended send time), or for the send lag (prefix
    "send_lag": how late sends left against their schedule)."""
    return [Sample.for_cell(cell, source=source, metric=m, unit=u, value=v, entity="client",
                            ts=summary.t1) for m, u, v in latency_values(summary, prefix)]


def latency_values(summary: LatencySummary, prefix: str = "latency",
                   ) -> list[tuple[str, str, float]]:
    """(metric, unit, value) of a summary's percentiles, max and mean, named alike for every
    timing of the requests (Locust's, the kernel's, the reference client's); [] when no
    request completed, since there is no latency to report."""
    if not summary.count:
        return []
    return [(f"{prefix}_{q}", "us", v) for q, v in (
        ("p50", summary.p50_us), ("p90", summary.p90_us), ("p99", summary.p99_us),
        ("p999", summary.p999_us), ("max", summary.max_us), ("mean", summary.mean_us))]
