"""The tests the claims table applies: superiority, non-inferiority, exact counts.

Why these tests (docs/statistics.md):

- **Unit of replication: one repetition.** A repetition is one interleaved block in
  which every mode runs once, in an order shuffled per repetition, so slow drift of the
  machine hits all modes of a block alike. A cell's summary (p50, cores, MiB) is one
  sample; requests inside a window are autocorrelated and are not samples. A default run
  has 3-5 repetitions per mode.
- **Paired by repetition.** Overheads are taken against the baseline of the same
  repetition, and a mode-vs-mode ratio is formed within each repetition, so what a
  block shares (drift, a noisy neighbour) cancels.
- **Effect on the log scale, Student t interval.** Costs and latencies are positive and
  their differences are multiplicative, so each repetition gives d_i = ln(a_i / b_i);
  the 95 % CI of mean(d) uses Student's t with n - 1 degrees of freedom and is
  back-transformed into a CI for the geometric-mean ratio a / b. Unlike a rank test,
  which at n = 3 per group cannot reach p < 0.01 at all (the smallest two-sided
  Mann-Whitney p at 3 vs 3 is 0.1), the t interval narrows with the consistency of the
  effect: a large effect that repeats in 3 blocks is resolved, a noisy one is not. It
  assumes the log ratios are roughly normal; with 3-5 values that cannot be checked,
  which is why the per-repetition values are shown beside every verdict.
- **Unpaired fallback.** When the two modes come from different runs (a report combined
  from `make bench-sidecar` and `make bench-ambient`) their repetitions are not blocks
  of one run: Welch's t on the logs (Welch-Satterthwaite degrees of freedom) is used,
  and the verdict says so.
- **Linear fallback.** An overhead over baseline can be <= 0 (a mode no slower than no
  mesh, within noise), where a log is undefined. Then the test is on the linear scale:
  the CI of mean(a - k b) (paired) or of mean(a) - k mean(b) (Welch), with k = 1 for
  superiority and k = 1 + margin for non-inferiority; the ratio is shown as a point
  (mean(a) / mean(b)) without a CI.

Verdicts for a ratio r = a / b with 95 % CI [lo, hi], effect floor f = MIN_EFFECT (5 %)
applied to the CI, not to the point estimate (a point past the floor with a CI that is not
leaves "supported" 2-6 % of the time for a true effect of 3 %):

- superiority, claim "a is less than b": supported when hi < 1 - f; no meaningful
  difference (equivalence) when the whole CI lies within [1 - f, 1 + f]; not supported
  when lo >= 1; otherwise inconclusive, with the reason (CI spans 1, or the reduction
  may be under f).
- non-inferiority, claim "a adds no more than b": supported when hi < 1 + margin; not
  supported when lo > 1 + margin; otherwise inconclusive. NI_MARGIN = 10 %.
- non-inferiority of overheads (a and b are each a mode's latency minus the baseline's of
  the same repetition): one linear scale for all data, the contrast
  c_i = a_i - (1 + margin) b_i with its t interval (Welch's for two runs); supported when
  the CI of mean(c) is below 0, not supported when above. The ratio mean(a) / mean(b) is
  shown with Fieller's interval, which is the set of ratios the same t test does not
  reject: the verdict and the interval agree by construction.
- exact: deterministic counts (proxies reached, bytes pushed, config held) are compared
  as numbers when every repetition gave the same value; only when they did not is the
  superiority test applied to them.

Power: each outcome carries the smallest effect its test detects 80 % of the time at its
n and the spread it saw (`Outcome.detectable`: the true ratio at which the 95 % CI clears
the floor or margin the verdict needs with probability 0.8, from the noncentral t, taking
the spread seen as the true one).
A verdict describes this run: its CI covers the repetition-to-repetition noise, not a shift
of the whole run (analysis.across gives the verdict across compatible runs).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy.optimize import brentq
from scipy.stats import nct
from scipy.stats import t as student_t

from analysis.stats import MIN_EFFECT

SUPPORTED, NOT_SUPPORTED = "supported", "not supported"
INCONCLUSIVE, NOT_MEASURED = "inconclusive", "not measured"
# the CI lies within the effect floor on both sides: the claimed difference is ruled out as
# meaningful (an equivalence outcome, not a failure to see one)
EQUIVALENT = "no meaningful difference"
# the run lacks what the claim needs (analysis.preconditions): a topology or a stand-in
# would decide the verdict, so none is given
NOT_TESTABLE = "not testable here"
VERDICTS = (SUPPORTED, EQUIVALENT, NOT_SUPPORTED, INCONCLUSIVE, NOT_TESTABLE,
            NOT_MEASURED)

SUPERIORITY, NON_INFERIORITY, EXACT = "superiority", "non-inferiority", "exact"
CONFIDENCE = 0.95
# Non-inferiority margin: "adds no more than" is supported when the ratio's CI stays below
# 1.10. 10 % is twice the 5 % effect floor (a difference smaller than 5 % is treated as
# noise everywhere in this harness), and about the run-to-run spread of a 2-core machine's
# cells (CV_WARN = 10 %): a margin tighter than the noise would make equality unprovable.
NI_MARGIN = 0.10

PAIRED, WELCH = "paired", "welch"
LOG, LINEAR = "log", "linear"  # the scale a test works on
POWER = 0.80


@dataclass(frozen=True)
class Ratio:
    """a / b with its 95 % CI (lo, hi are NaN when there is none) and how it was got."""

    ratio: float
    lo: float
    hi: float

    @property
    def has_ci(self) -> bool:
        return not (math.isnan(self.lo) or math.isnan(self.hi))

    def text(self, places: int = 2) -> str:
        if math.isnan(self.ratio):
            return "undefined"
        if not self.has_ci:
            return f"{self.ratio:.{places}f}"
        return f"{self.ratio:.{places}f} [{self.lo:.{places}f}–{self.hi:.{places}f}]"


@dataclass(frozen=True)
class Outcome:
    """A claim test's result: verdict, reason, the ratio, and which test gave it.

    `detectable`: the true ratio a / b at or below which this test gives "supported" 80 %
    of the time at its n and the spread it saw (superiority: 0.85 means a 15 % reduction
    is detected; non-inferiority: the ratio must lie that far under the margin); NaN when
    there is no spread to judge by (exact counts, one repetition)."""

    verdict: str
    reason: str
    ratio: Ratio | None = None
    n_a: int = 0
    n_b: int = 0
    test: str = ""
    detectable: float = float("nan")
    # per-repetition ratios a_i / b_i when paired (the forest plot's points)
    points: tuple[float, ...] = ()

    def text(self) -> str:
        """"verdict (reason; test)"; "reason (test)" when the reason starts with the
        verdict."""
        if self.reason.startswith(self.verdict):
            return f"{self.reason} ({self.test})" if self.test else self.reason
        parts = [p for p in (self.reason, self.test) if p]
        return f"{self.verdict} ({'; '.join(parts)})" if parts else self.verdict

    def power_text(self, short: bool = False) -> str:
        """"detects a 12 % reduction 80 % of the time at n=5" ("80 % power for a 12 %
        reduction" when `short`), or "" without a spread."""
        if math.isnan(self.detectable):
            return ""
        n = self.n_a if self.n_a == self.n_b else f"{self.n_a} vs {self.n_b}"
        ni = "non-inferiority" in self.test
        if short:
            return (f"{100 * POWER:.0f} % power if the true ratio is <= {self.detectable:.2f}"
                    if ni else f"{100 * POWER:.0f} % power for a "
                    f"{100 * (1 - self.detectable):.0f} % reduction")
        what = (f"non-inferiority when the true ratio is <= {self.detectable:.2f}" if ni
                else f"a {100 * (1 - self.detectable):.0f} % reduction")
        return f"detects {what} {100 * POWER:.0f} % of the time at n={n}"


def _t_ci(mean: float, se: float, df: float) -> tuple[float, float]:
    if se == 0:
        return mean, mean
    half = float(student_t.ppf(0.5 + CONFIDENCE / 2, df)) * se
    return mean - half, mean + half


def _welch_df(va: float, na: int, vb: float, nb: int) -> float:
    num_ = (va / na + vb / nb) ** 2
    den = (va / na) ** 2 / (na - 1) + (vb / nb) ** 2 / (nb - 1)
    return num_ / den if den > 0 else float(na + nb - 2)


def _pairs(a: pd.Series, b: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    common = sorted(set(a.index) & set(b.index))
    return (a.loc[common].to_numpy(dtype=float), b.loc[common].to_numpy(dtype=float))


def _as_series(x: ArrayLike | pd.Series) -> pd.Series:
    if isinstance(x, pd.Series):
        return x.astype(float)
    return pd.Series(np.asarray(x, dtype=float))


def _bound_ci(test: str, k: float, a: np.ndarray, b: np.ndarray,
              paired: bool) -> tuple[float, float]:
    """Linear scale: CI of mean(a - k b) (paired) or mean(a) - k mean(b) (Welch)."""
    if paired:
        d = a - k * b
        se = float(d.std(ddof=1)) / math.sqrt(d.size)
        return _t_ci(float(d.mean()), se, d.size - 1)
    va, vb = float(a.var(ddof=1)), float(b.var(ddof=1)) * k * k
    se = math.sqrt(va / a.size + vb / b.size)
    return _t_ci(float(a.mean() - k * b.mean()), se, _welch_df(va, a.size, vb, b.size))


def _log_stats(a: np.ndarray, b: np.ndarray, paired: bool) -> tuple[float, float, float]:
    """(mean, standard error, degrees of freedom) of ln(a / b): paired by position, or
    Welch's on the two groups' logs."""
    la, lb = np.log(a), np.log(b)
    if paired:
        d = la - lb
        return float(d.mean()), float(d.std(ddof=1)) / math.sqrt(d.size), d.size - 1
    va, vb = float(la.var(ddof=1)), float(lb.var(ddof=1))
    return (float(la.mean() - lb.mean()), math.sqrt(va / la.size + vb / lb.size),
            _welch_df(va, la.size, vb, lb.size))


def ratio_ci(a: np.ndarray, b: np.ndarray, paired: bool) -> Ratio:
    """Geometric-mean ratio a / b with a 95 % t interval on the logs; needs values > 0
    and at least 2 per side (2 pairs when paired)."""
    mean, se, df = _log_stats(a, b, paired)
    lo, hi = _t_ci(mean, se, df)
    return Ratio(math.exp(mean), math.exp(lo), math.exp(hi))


def fieller(a: np.ndarray, b: np.ndarray, paired: bool) -> Ratio:
    """mean(a) / mean(b) with Fieller's 95 % interval: the ratios rho for which the t test
    of mean(a - rho b) = 0 does not reject (paired: on the per-repetition contrasts;
    Welch's otherwise). Unbounded (NaN ends) when mean(b) is not itself clear of 0."""
    ma, mb = float(a.mean()), float(b.mean())
    point = ma / mb if mb != 0 else float("nan")
    if paired:
        n = a.size
        cov = np.cov(a, b, ddof=1)
        vaa, vbb, vab = cov[0, 0] / n, cov[1, 1] / n, cov[0, 1] / n
        df: float = n - 1
    else:
        vaa, vbb, vab = float(a.var(ddof=1)) / a.size, float(b.var(ddof=1)) / b.size, 0.0
        df = _welch_df(float(a.var(ddof=1)), a.size,
                       float(b.var(ddof=1)) * point * point, b.size) if point == point else 1
    t2 = float(student_t.ppf(0.5 + CONFIDENCE / 2, df)) ** 2
    qa, qb, qc = mb * mb - t2 * vbb, ma * mb - t2 * vab, ma * ma - t2 * vaa
    disc = qb * qb - qa * qc
    if qa <= 0 or disc < 0:
        return Ratio(point, float("nan"), float("nan"))
    root = math.sqrt(disc)
    return Ratio(point, (qb - root) / qa, (qb + root) / qa)


def _power_quantiles(df: float) -> float:
    """How many standard errors a true effect must lie past the decision bound for a 95 %
    CI to clear it 80 % of the time: the noncentrality at which the noncentral t with `df`
    degrees of freedom exceeds t(0.975, df) with probability POWER (taking the spread seen
    as the true one; t(0.975) + t(0.80), the usual shortcut, overstates the power at n=3)."""
    crit = float(student_t.ppf(0.5 + CONFIDENCE / 2, df))
    return float(brentq(lambda nc: float(nct.sf(crit, df, nc)) - POWER, 0.0, 100.0))


def compare(a: ArrayLike | pd.Series, b: ArrayLike | pd.Series, kind: str = SUPERIORITY,
            paired: bool = True, margin: float = NI_MARGIN,
            min_effect: float = MIN_EFFECT, scale: str = LOG) -> Outcome:
    """Test the claim "a is less than b" (SUPERIORITY) or "a is no more than b" within
    `margin` (NON_INFERIORITY), from per-repetition values.

    With `paired`, `a` and `b` are Series indexed by repetition and only repetitions in
    both are used (a plain array pairs by position). `scale` LOG tests the ratio of
    geometric means (values must be > 0: else the linear test is used and says why);
    LINEAR tests the contrast a - k b (overheads over a baseline, which can be <= 0). See
    the module docstring for the rules. Deterministic counts go through `exact` instead.
    """
    sa, sb = _as_series(a), _as_series(b)
    if not paired or not isinstance(a, pd.Series) or not isinstance(b, pd.Series):
        if paired and sa.size != sb.size:
            paired = False
        sa, sb = sa.reset_index(drop=True), sb.reset_index(drop=True)
    xa, xb = _pairs(sa, sb) if paired else (sa.to_numpy(), sb.to_numpy())
    n_a, n_b = int(xa.size), int(xb.size)
    if sa.empty or sb.empty:
        return Outcome(NOT_MEASURED, "no values", None, int(sa.size), int(sb.size))
    if paired and xa.size == 0:
        return Outcome(INCONCLUSIVE, "no repetition has both values", None, int(sa.size),
                       int(sb.size))
    how = (f"paired by repetition, n={n_a}" if paired else f"unpaired (Welch), n={n_a} vs {n_b}")
    if min(n_a, n_b) < 2:
        point = float(xa.mean() / xb.mean()) if xb.mean() > 0 else float("nan")
        return Outcome(INCONCLUSIVE, f"one repetition: no CI ({how})",
                       Ratio(point, float("nan"), float("nan")), n_a, n_b)
    rule = (f"non-inferiority, margin {100 * margin:g} %" if kind == NON_INFERIORITY
            else f"superiority, effect floor {100 * min_effect:g} %")
    if scale == LOG and (xa > 0).all() and (xb > 0).all():
        r = ratio_ci(xa, xb, paired)
        _, se, df = _log_stats(xa, xb, paired)
        z = _power_quantiles(df) * se
        bound = 1.0 + margin if kind == NON_INFERIORITY else 1.0 - min_effect
        test = f"{rule}; t on log ratios, {how}"
        out = _verdict(kind, r, bound, min_effect, n_a, n_b, test, bound * math.exp(-z))
    else:
        out = _linear(kind, xa, xb, paired, margin, min_effect, how, rule,
                      "" if scale == LINEAR else " (values <= 0: no log ratio)")
    if paired:
        out = replace(out, points=tuple(float(x / y) for x, y in zip(xa, xb) if y > 0))
    return out


def _linear(kind: str, xa: np.ndarray, xb: np.ndarray, paired: bool, margin: float,
            min_effect: float, how: str, rule: str, why: str) -> Outcome:
    """The linear-scale tests: CIs of contrasts mean(a - k b), the ratio with Fieller's
    interval."""
    r = fieller(xa, xb, paired)
    n_a, n_b = int(xa.size), int(xb.size)
    mb = float(xb.mean())

    def ci(k: float) -> tuple[float, float]:
        return _bound_ci(kind, k, xa, xb, paired)

    def power(k: float) -> float:
        if mb <= 0:
            return float("nan")
        d = xa - k * xb
        se = (float(d.std(ddof=1)) / math.sqrt(d.size) if paired
              else math.sqrt(float(xa.var(ddof=1)) / n_a + k * k * float(xb.var(ddof=1)) / n_b))
        return k - _power_quantiles(n_a - 1 if paired else min(n_a, n_b) - 1) * se / mb

    fmt = "{:.4g}"
    if kind == NON_INFERIORITY:
        k = 1.0 + margin
        lo, hi = ci(k)
        test = f"{rule}; t on mean(a) - {k:g} x mean(b){why}, Fieller's CI for the ratio, {how}"
        span = f"CI of mean(a) - {k:g} x mean(b) [{fmt.format(lo)}, {fmt.format(hi)}]"
        if hi < 0:
            return Outcome(SUPPORTED, f"{span} below 0", r, n_a, n_b, test, power(k))
        if lo > 0:
            return Outcome(NOT_SUPPORTED, f"{span} above 0", r, n_a, n_b, test, power(k))
        return Outcome(INCONCLUSIVE, f"{span} spans 0", r, n_a, n_b, test, power(k))
    test = f"{rule}; t on mean(a) - k x mean(b){why}, Fieller's CI for the ratio, {how}"
    floor_lo, floor_hi = ci(1.0 - min_effect)
    lo, hi = ci(1.0)
    detect = power(1.0 - min_effect)
    if floor_hi < 0:
        return Outcome(SUPPORTED, f"CI of mean(a) - {1 - min_effect:g} x mean(b) "
                       f"[{fmt.format(floor_lo)}, {fmt.format(floor_hi)}] below 0", r, n_a,
                       n_b, test, detect)
    if lo >= 0:
        return Outcome(NOT_SUPPORTED, f"CI of mean(a - b) [{fmt.format(lo)}, "
                       f"{fmt.format(hi)}] at or above 0", r, n_a, n_b, test, detect)
    up_lo, up_hi = ci(1.0 + min_effect)
    if mb > 0 and floor_lo > 0 and up_hi < 0:
        return Outcome(EQUIVALENT, f"a within ±{100 * min_effect:g} % of b (both contrasts "
                       "clear of 0)", r, n_a, n_b, test, detect)
    return Outcome(INCONCLUSIVE, f"CI of mean(a - b) [{fmt.format(lo)}, {fmt.format(hi)}] "
                   + ("spans 0" if hi >= 0 else f"below 0, but not by {100 * min_effect:g} %"),
                   r, n_a, n_b, test, detect)


def _verdict(kind: str, r: Ratio, bound: float, min_effect: float, n_a: int, n_b: int,
             test: str, detectable: float) -> Outcome:
    lo, hi = r.lo, r.hi

    def out(verdict: str, reason: str) -> Outcome:
        return Outcome(verdict, reason, r, n_a, n_b, test, detectable)

    if kind == NON_INFERIORITY:
        if hi < bound:
            return out(SUPPORTED, f"CI upper bound {hi:.3f} < {bound:.2f}")
        if lo > bound:
            return out(NOT_SUPPORTED, f"CI lower bound {lo:.3f} > {bound:.2f}")
        return out(INCONCLUSIVE, f"CI [{lo:.3f}–{hi:.3f}] spans {bound:.2f}")
    if hi < bound:
        return out(SUPPORTED, f"CI upper bound {hi:.3f} < {bound:.2f} (1 - the "
                   f"{100 * min_effect:g} % floor)")
    if lo > 1.0 - min_effect and hi < 1.0 + min_effect:
        return out(EQUIVALENT, f"CI [{lo:.3f}–{hi:.3f}] within ±{100 * min_effect:g} %")
    if lo >= 1.0:
        return out(NOT_SUPPORTED, f"CI lower bound {lo:.3f} >= 1")
    if hi < 1.0:
        return out(INCONCLUSIVE, f"CI [{lo:.3f}–{hi:.3f}] below 1 but not below "
                   f"{bound:.2f}: the reduction may be under {100 * min_effect:g} %")
    return out(INCONCLUSIVE, f"CI [{lo:.3f}–{hi:.3f}] spans 1")


def identical(x: ArrayLike) -> bool:
    """Every value the same (a deterministic count repeated exactly)."""
    v = np.asarray(x, dtype=float)
    return bool(v.size) and bool(np.all(v == v[0]))


def exact(a: ArrayLike | pd.Series, b: ArrayLike | pd.Series, paired: bool = True) -> Outcome:
    """The claim "a is less than b" for deterministic counts: when each side gave the same
    value in every repetition, compare the numbers (no statistics: there is no variation
    to test); when a side varied, fall back to `compare` (superiority) and say why."""
    xa, xb = np.asarray(_as_series(a)), np.asarray(_as_series(b))
    if xa.size == 0 or xb.size == 0:
        return Outcome(NOT_MEASURED, "no values", None, int(xa.size), int(xb.size))
    if identical(xa) and identical(xb):
        va, vb = float(xa[0]), float(xb[0])
        r = Ratio(va / vb if vb else float("nan"), float("nan"), float("nan"))
        same = (f"identical in every repetition (n={xa.size} vs {xb.size})")
        test = "exact comparison of counts"
        if va < vb:
            return Outcome(SUPPORTED, f"{va:g} < {vb:g}, {same}", r, xa.size, xb.size, test)
        return Outcome(NOT_SUPPORTED, f"{va:g} >= {vb:g}, {same}", r, xa.size, xb.size, test)
    out = compare(a, b, SUPERIORITY, paired)
    varied = [m for m, x in (("a", xa), ("b", xb)) if not identical(x)]
    note = f"counts varied across repetitions ({', '.join(varied)}): statistics applied"
    return Outcome(out.verdict, out.reason, out.ratio, out.n_a, out.n_b,
                   f"{note}; {out.test}" if out.test else note)


def two_sided(a: ArrayLike | pd.Series, b: ArrayLike | pd.Series, paired: bool = True,
              min_effect: float = MIN_EFFECT) -> tuple[Ratio | None, str, str]:
    """(ratio a / b with its 95 % CI, verdict, test) for describing two modes without a
    directional claim: "lower" / "higher" when the CI excludes 1 and the effect is at
    least `min_effect`, "no clear difference" otherwise; the same t interval on log ratios
    as `compare` (paired by repetition when `paired`). Values <= 0 or a side with fewer
    than 2 values give a point ratio and "no CI"."""
    sa, sb = _as_series(a), _as_series(b)
    if not (isinstance(a, pd.Series) and isinstance(b, pd.Series)):
        sa, sb = sa.reset_index(drop=True), sb.reset_index(drop=True)
        paired = paired and sa.size == sb.size
    xa, xb = _pairs(sa, sb) if paired else (sa.to_numpy(), sb.to_numpy())
    if xa.size == 0 or xb.size == 0:
        return None, NOT_MEASURED, ""
    how = (f"paired by repetition, n={xa.size}" if paired
           else f"unpaired (Welch), n={xa.size} vs {xb.size}")
    if min(xa.size, xb.size) < 2 or not ((xa > 0).all() and (xb > 0).all()):
        mb = float(xb.mean())
        point = float(xa.mean()) / mb if mb > 0 else float("nan")
        why = "one repetition" if min(xa.size, xb.size) < 2 else "values <= 0"
        return Ratio(point, float("nan"), float("nan")), f"no CI ({why})", how
    r = ratio_ci(xa, xb, paired)
    test = f"t on log ratios, {how}"
    if r.hi < 1 and r.ratio <= 1 - min_effect:
        return r, "lower", test
    if r.lo > 1 and r.ratio >= 1 + min_effect:
        return r, "higher", test
    if r.hi < 1 or r.lo > 1:
        return r, f"no clear difference (effect under {100 * min_effect:g} %)", test
    return r, "no clear difference (CI spans 1)", test


@dataclass(frozen=True)
class Shift:
    """b against a from two runs: the ratio b / a with its 95 % CI, and the one-sided p
    values of "b is more than (1 + margin) a" (worse) and "b is less than a / (1 + margin)"
    (better), before any correction across metrics."""

    ratio: Ratio
    p_worse: float
    p_better: float
    test: str


def shift(a: ArrayLike, b: ArrayLike, margin: float) -> Shift:
    """The claims' unpaired machinery applied to two runs of one metric (repetitions of
    two runs are not blocks of one): Welch's t on the logs; the linear Welch contrast
    b - k a when a value is <= 0 (an overhead within noise of the baseline), with
    Fieller's ratio. Needs at least 2 values per side."""
    xa, xb = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if (xa > 0).all() and (xb > 0).all():
        mean, se, df = _log_stats(xb, xa, paired=False)
        lo, hi = _t_ci(mean, se, df)
        r = Ratio(math.exp(mean), math.exp(lo), math.exp(hi))
        step = math.log1p(margin)
        if se == 0:
            return Shift(r, float(mean > step), float(mean < -step), "Welch's t on logs")
        return Shift(r, float(student_t.sf((mean - step) / se, df)),
                     float(student_t.cdf((mean + step) / se, df)), "Welch's t on logs")

    def contrast_p(k: float, upper: bool) -> float:
        c = float(xb.mean() - k * xa.mean())
        va, vb = float(xa.var(ddof=1)) * k * k, float(xb.var(ddof=1))
        se = math.sqrt(va / xa.size + vb / xb.size)
        df = _welch_df(vb, xb.size, va, xa.size)
        if se == 0:
            return float(c > 0) if upper else float(c < 0)
        return float(student_t.sf(c / se, df) if upper else student_t.cdf(c / se, df))

    return Shift(fieller(xb, xa, paired=False), contrast_p(1 + margin, True),
                 contrast_p(1 / (1 + margin), False),
                 "Welch's t on b - k a (values <= 0: no log ratio)")


def holm(p_values: Sequence[float], alpha: float) -> list[bool]:
    """Holm's step-down rejections at family-wise level `alpha` (NaN never rejects)."""
    order = sorted((p, i) for i, p in enumerate(p_values) if p == p)
    m = len(order)
    out = [False] * len(p_values)
    for rank, (p, i) in enumerate(order):
        if p > alpha / (m - rank):
            break
        out[i] = True
    return out


def across_runs(ratios: Sequence[float], kind: str, margin: float = NI_MARGIN,
                min_effect: float = MIN_EFFECT) -> Outcome:
    """The verdict across runs: one ratio per run (each run's own estimate), a one-sample t
    interval on their logs with k - 1 degrees of freedom, so the between-run variance is
    in it; the same rules as `compare`. Needs 2 runs or more, every ratio > 0."""
    x = np.log(np.asarray(ratios, dtype=float))
    k = int(x.size)
    mean, se = float(x.mean()), float(x.std(ddof=1)) / math.sqrt(k)
    lo, hi = _t_ci(mean, se, k - 1)
    r = Ratio(math.exp(mean), math.exp(lo), math.exp(hi))
    bound = 1.0 + margin if kind == NON_INFERIORITY else 1.0 - min_effect
    detect = bound * math.exp(-_power_quantiles(k - 1) * se)
    test = f"{kind}; t on the runs' log ratios, {k} runs (between-run variance included)"
    return replace(_verdict(kind, r, bound, min_effect, k, k, test, detect), points=tuple(
        float(v) for v in ratios))
