"""Statistics over cells: one cell's summary value is one sample (docs/statistics.md).

Inputs are tidy rows with columns mode, level, repetition, metric, value, already
narrowed to one source and entity, so that each (mode, level, repetition) holds at most
one value per metric.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import comb
from typing import NamedTuple

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy.stats import linregress, mannwhitneyu
from scipy.stats import t as student_t

BASELINE = "baseline"
CV_WARN = 0.10  # warn when std / mean of a cell's repetitions reaches 10 %
ALPHA = 0.01  # significance needs p < ALPHA ...
# ... and an effect of at least 5 %: the smallest difference this harness calls meaningful,
# half of asv's default factor (`asv compare --factor 1.1`, 10 %), which the nightly gate
# uses (analysis.gate.PRACTICAL)
MIN_EFFECT = 0.05
CELL = ["mode", "level", "repetition"]

SUMMARY_COLUMNS = ["mode", "level", "n", "median", "min", "max", "mean", "std", "cv",
                   "cv_warning"]
OVERHEAD_COLUMNS = ["mode", "level", "n", "median", "min", "max",
                    "pct_median", "pct_min", "pct_max"]


def cell_values(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    """One row per (mode, level, repetition) with that cell's `value` for `metric`.

    Raises ValueError when a cell holds more than one value: the caller has not narrowed
    the rows to one entity, or the run stored a cell twice.
    """
    rows = df.loc[df["metric"] == metric, CELL + ["value"]]
    dup = rows.duplicated(CELL, keep=False)
    if dup.any():
        cells = sorted({tuple(r) for r in rows.loc[dup, CELL].itertuples(index=False)})
        raise ValueError(f"{metric}: more than one value in cell(s) {cells[:5]}")
    return rows.reset_index(drop=True)


def summarize(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per (mode, level): n, median, min, max, mean, std (ddof=1), cv, cv_warning.

    cv = std / mean; NaN when n < 2 or mean == 0, and then cv_warning is False (the
    caller should say the spread is unknown rather than fine).
    """
    values = cell_values(df, metric)
    if values.empty:
        return pd.DataFrame(columns=SUMMARY_COLUMNS)
    g = values.groupby(["mode", "level"], sort=False)["value"]
    out = g.agg(n="count", median="median", min="min", max="max", mean="mean",
                std=lambda v: v.std(ddof=1) if len(v) > 1 else np.nan).reset_index()
    mean = out["mean"].where(out["mean"] != 0)
    out["cv"] = (out["std"] / mean.abs()).astype(float)
    out["cv_warning"] = out["cv"].ge(CV_WARN).fillna(False).astype(bool)
    return out[SUMMARY_COLUMNS]


def paired_deltas(df: pd.DataFrame, metric: str, baseline: str = BASELINE) -> pd.DataFrame:
    """Per (mode, level, repetition): value minus baseline's value at the same level and
    repetition of the same run ("delta"), and that in % of baseline ("pct").

    Cells without a baseline partner are left out; baseline itself is left out.
    """
    values = cell_values(df, metric)
    base = values[values["mode"] == baseline].drop(columns="mode")
    base = base.rename(columns={"value": "baseline"})
    other = values[values["mode"] != baseline]
    pairs = other.merge(base, on=["level", "repetition"], how="inner")
    pairs["delta"] = pairs["value"] - pairs["baseline"]
    pairs["pct"] = 100.0 * pairs["delta"] / pairs["baseline"].where(pairs["baseline"] != 0)
    return pairs[CELL + ["value", "baseline", "delta", "pct"]]


def overhead_vs_baseline(df: pd.DataFrame, metric: str,
                         baseline: str = BASELINE) -> pd.DataFrame:
    """Per (mode, level): n pairs, median/min/max of the paired delta (metric's unit) and
    pct_median/pct_min/pct_max of it in % of baseline. See `paired_deltas`."""
    pairs = paired_deltas(df, metric, baseline)
    if pairs.empty:
        return pd.DataFrame(columns=OVERHEAD_COLUMNS)
    g = pairs.groupby(["mode", "level"], sort=False)
    out = g["delta"].agg(n="count", median="median", min="min", max="max")
    pct = g["pct"].agg(pct_median="median", pct_min="min", pct_max="max")
    return out.join(pct).reset_index()[OVERHEAD_COLUMNS]


class RatioCI(NamedTuple):
    """median(a) / median(b) with a 95 % percentile-bootstrap interval [lo, hi]."""

    ratio: float
    lo: float
    hi: float


def bootstrap_ratio_ci(a: ArrayLike, b: ArrayLike, n_boot: int = 10000,
                       seed: int = 0) -> RatioCI:
    """Ratio of medians of `a` over `b` with a 95 % percentile bootstrap CI.

    `a` and `b` are resampled independently with replacement. With few samples the
    interval is wide, and with one sample per side it collapses to the point: both are
    honest descriptions of what was measured. Raises ValueError on an empty input or a
    zero median of `b`.
    """
    xa, xb = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if xa.size == 0 or xb.size == 0:
        raise ValueError("bootstrap needs at least one sample on each side")
    if np.median(xb) == 0:
        raise ValueError("median of the reference sample is 0; ratio undefined")
    rng = np.random.default_rng(seed)
    ma = np.median(xa[rng.integers(0, xa.size, (n_boot, xa.size))], axis=1)
    mb = np.median(xb[rng.integers(0, xb.size, (n_boot, xb.size))], axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = ma / mb
    lo, hi = np.percentile(ratios, [2.5, 97.5])
    return RatioCI(float(np.median(xa) / np.median(xb)), float(lo), float(hi))


@dataclass(frozen=True)
class Significance:
    """Mann-Whitney U (two-sided) of `a` against reference `b`.

    effect = median(a) / median(b) - 1 (0.05 = a is 5 % higher). verdict is
    "significant" only when p < 0.01 and |effect| >= 5 % (or the `min_effect` the
    caller gave); "n too small" when no outcome of these sample sizes could give
    p < 0.01; else "not significant".
    """

    p_value: float
    effect: float
    n_a: int
    n_b: int
    verdict: str
    reason: str


def min_two_sided_p(n_a: int, n_b: int) -> float:
    """Smallest two-sided p the exact Mann-Whitney test can give for these sizes."""
    return min(1.0, 2.0 / comb(n_a + n_b, n_a))


def significance(a: ArrayLike, b: ArrayLike,
                 min_effect: float = MIN_EFFECT) -> Significance:
    """Is `a` different from `b`? See `Significance` for the rule; `min_effect` replaces
    the 5 % effect floor (e.g. a `compare --threshold`)."""
    xa, xb = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if xa.size == 0 or xb.size == 0:
        raise ValueError("significance needs at least one sample on each side")
    mb = float(np.median(xb))
    effect = float(np.median(xa)) / mb - 1.0 if mb != 0 else float("nan")
    p = float(mannwhitneyu(xa, xb, alternative="two-sided").pvalue)
    floor = min_two_sided_p(xa.size, xb.size)
    if floor >= ALPHA:
        verdict = "n too small"
        reason = (f"with n={xa.size} vs {xb.size} the smallest possible p is {floor:.3g}, "
                  f"so p < {ALPHA} cannot be reached")
    elif p < ALPHA and abs(effect) >= min_effect:
        verdict = "significant"
        reason = f"p={p:.3g} < {ALPHA} and |effect| >= {100 * min_effect:g} %"
    else:
        verdict = "not significant"
        reason = (f"p={p:.3g}, effect {100 * effect:+.1f} % (needs p < {ALPHA} and "
                  f">= {100 * min_effect:g} %)")
    return Significance(p, effect, int(xa.size), int(xb.size), verdict, reason)


class SlopeFit(NamedTuple):
    """Least-squares line y = intercept + slope * x with a 95 % t-interval [lo, hi] for
    the slope; n points over `x_values` distinct x."""

    slope: float
    lo: float
    hi: float
    intercept: float
    n: int
    x_values: int


def fit_slope(x: ArrayLike, y: ArrayLike) -> SlopeFit:
    """Fit y = a + b x (ordinary least squares) with a 95 % CI for b from Student's t
    with n - 2 degrees of freedom (each point is one cell's value, e.g. one repetition at
    one pod count). A perfect fit gives a zero-width interval.

    Raises ValueError with fewer than 3 points or fewer than 2 distinct x.
    """
    xs, ys = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    distinct = int(np.unique(xs).size)
    if xs.size < 3 or distinct < 2:
        raise ValueError(f"a slope needs >= 3 points over >= 2 distinct x "
                         f"(got {xs.size} points, {distinct} x)")
    r = linregress(xs, ys)
    half = float(student_t.ppf(0.975, xs.size - 2) * r.stderr)
    return SlopeFit(float(r.slope), float(r.slope) - half, float(r.slope) + half,
                    float(r.intercept), int(xs.size), distinct)
