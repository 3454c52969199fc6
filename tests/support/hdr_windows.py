"""Where the load of a finished Locust run was steady (tests check recorded intervals)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from bench.load.hdr import Interval


def steady_window(intervals: Sequence[Interval], trim_s: float = 1.0) -> tuple[float, float]:
    """[t0, t1] from the first to the last interval with requests, trimmed by trim_s at each
    end and rounded inwards to whole seconds (where the recorder's intervals end)."""
    busy = [i for i in intervals if i.count or i.errors]
    if not busy:
        raise ValueError("no interval has any request")
    t0 = math.ceil(busy[0].ts_start + trim_s)
    t1 = math.floor(busy[-1].ts_end - trim_s)
    if t1 <= t0:
        raise ValueError(f"run too short for a {trim_s}s trim at each end")
    return float(t0), float(t1)
