"""Number and Markdown table formatting for the report."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

NOT_MEASURED = "not measured"


def decimals(*values: float) -> int:
    """Decimals that show the largest of `values` to about three significant digits;
    0 when they are all whole numbers >= 1."""
    finite = [abs(v) for v in values if not math.isnan(v)]
    top = max(finite, default=0.0)
    if top == 0 or top >= 100 or (top >= 1 and all(v == int(v) for v in finite)):
        return 0
    return min(6, 2 - math.floor(math.log10(top)))


def num(x: float, places: int | None = None) -> str:
    """A measured number (see `decimals`); "undefined" for NaN."""
    if math.isnan(x):
        return "undefined"
    return f"{x:.{decimals(x) if places is None else places}f}"


def pct(x: float, places: int | None = None) -> str:
    """A signed percentage with one decimal, e.g. "+12.5"; "undefined" for NaN."""
    return "undefined" if math.isnan(x) else f"{x:+.1f}"


def spread(median: float, lo: float, hi: float,
           fmt: Callable[[float, int | None], str] = num) -> str:
    """"median [min–max]" across repetitions, all three with the same decimals."""
    places = decimals(median, lo, hi)
    return f"{fmt(median, places)} [{fmt(lo, places)}–{fmt(hi, places)}]"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """A Markdown table as lines."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines
