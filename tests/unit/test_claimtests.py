"""Superiority, non-inferiority and exact tests on synthetic data with known effects."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from analysis import claimtests as ct


def _reps(values: list[float]) -> pd.Series:
    return pd.Series(values, index=range(len(values)), dtype=float)


def test_a_big_consistent_effect_with_three_repetitions_is_supported() -> None:
    # a is half of b in every block, with the block-to-block drift both share
    b = _reps([400.0, 440.0, 380.0])
    a = b * np.array([0.50, 0.52, 0.49])
    out = ct.compare(a, b, ct.SUPERIORITY)
    assert out.verdict == ct.SUPPORTED
    assert out.ratio is not None and out.ratio.ratio == pytest.approx(0.503, abs=0.005)
    assert out.ratio.lo < out.ratio.ratio < out.ratio.hi < 1
    assert "superiority" in out.test and "paired by repetition, n=3" in out.test


def test_the_interval_is_students_t_with_n_minus_1_df() -> None:
    d = np.log([0.5, 0.6, 0.55])
    half = 4.302652729911275 * d.std(ddof=1) / math.sqrt(3)  # t(0.975, 2)
    out = ct.compare([0.5, 0.6, 0.55], [1.0, 1.0, 1.0])
    assert out.ratio is not None
    assert out.ratio.lo == pytest.approx(math.exp(d.mean() - half))
    assert out.ratio.hi == pytest.approx(math.exp(d.mean() + half))


def test_the_opposite_effect_is_not_supported() -> None:
    out = ct.compare([150.0, 152, 149], [100.0, 101, 99])
    assert out.verdict == ct.NOT_SUPPORTED and "lower bound" in out.reason


def test_noisy_data_stay_inconclusive() -> None:
    out = ct.compare([60.0, 140, 90], [100.0, 100, 100])
    assert out.verdict == ct.INCONCLUSIVE and "spans 1" in out.reason
    ni = ct.compare([60.0, 140, 90], [100.0, 100, 100], ct.NON_INFERIORITY)
    assert ni.verdict == ct.INCONCLUSIVE and "spans 1.10" in ni.reason


def test_a_consistent_but_small_effect_is_no_meaningful_difference() -> None:
    out = ct.compare([97.0, 97.1, 96.9], [100.0, 100.0, 100.0])
    assert out.ratio is not None and out.ratio.hi < 1
    assert out.verdict == ct.EQUIVALENT and "within ±5 %" in out.reason


def test_the_floor_applies_to_the_ci_not_the_point() -> None:
    # point 0.93 (past the 5 % floor), but the CI reaches 0.95 and above
    out = ct.compare([92.0, 94.0, 93.0], [100.0, 100.0, 100.0])
    assert out.ratio is not None and out.ratio.ratio < 0.95 < out.ratio.hi < 1
    assert out.verdict == ct.INCONCLUSIVE and "may be under 5 %" in out.reason


def test_a_true_3_percent_reduction_is_rarely_called_supported() -> None:
    # the case: with the floor on the point only, 2-6 % of runs said "supported"
    rng = np.random.default_rng(7)
    wins = 0
    for _ in range(2000):
        b = 100 * np.exp(rng.normal(0, 0.05, 4))
        a = b * 0.97 * np.exp(rng.normal(0, 0.03, 4))
        wins += ct.compare(a, b).verdict == ct.SUPPORTED
    assert wins / 2000 < 0.025


@pytest.mark.parametrize("n,sd", [(3, 0.05), (5, 0.10), (8, 0.15)])
def test_the_stated_power_is_the_power_seen(n: int, sd: float) -> None:
    # a sample whose spread is exactly sd gives the bound; draws at that true ratio with
    # that true sd are then supported 80 % of the time
    z = np.arange(n, dtype=float)
    z = (z - z.mean()) / z.std(ddof=1)
    b = np.full(n, 100.0)
    bound = ct.compare(b * np.exp(sd * z), b).detectable
    assert 0 < bound < 0.95
    rng = np.random.default_rng(n)
    sims = 2000
    wins = sum(ct.compare(b * bound * np.exp(rng.normal(0, sd, n)), b).verdict == ct.SUPPORTED
               for _ in range(sims))
    assert 0.75 < wins / sims < 0.85


def test_equality_with_small_spread_is_non_inferior() -> None:
    b = _reps([500.0, 520.0, 480.0, 510.0])
    a = b * np.array([1.01, 0.99, 1.02, 1.00])
    out = ct.compare(a, b, ct.NON_INFERIORITY)
    assert out.verdict == ct.SUPPORTED
    assert out.ratio is not None and out.ratio.hi < 1 + ct.NI_MARGIN
    assert "non-inferiority, margin 10 %" in out.test
    # the same data cannot show superiority: equality is not "less than"
    assert ct.compare(a, b, ct.SUPERIORITY).verdict == ct.EQUIVALENT


def test_non_inferiority_margin_decides() -> None:
    b = _reps([100.0, 100.0, 100.0])
    # 20 % more, consistently: beyond a 10 % margin, inside a 30 % one
    a = _reps([120.0, 121.0, 119.0])
    assert ct.compare(a, b, ct.NON_INFERIORITY).verdict == ct.NOT_SUPPORTED
    assert ct.compare(a, b, ct.NON_INFERIORITY, margin=0.30).verdict == ct.SUPPORTED


def test_pairing_uses_repetitions_present_on_both_sides() -> None:
    a = pd.Series([50.0, 51.0, 52.0, 999.0], index=[0, 1, 2, 7])
    b = pd.Series([100.0, 101.0, 102.0, 98.0], index=[0, 1, 2, 3])
    out = ct.compare(a, b)
    assert (out.n_a, out.n_b) == (3, 3) and out.verdict == ct.SUPPORTED


def test_pairing_cancels_drift_that_welch_cannot() -> None:
    # strong drift across blocks, a always 10 % below b within a block
    b = _reps([100.0, 200.0, 300.0, 150.0])
    a = b * 0.9
    assert ct.compare(a, b, paired=True).verdict == ct.SUPPORTED
    welch = ct.compare(a, b, paired=False)
    assert welch.verdict == ct.INCONCLUSIVE and "unpaired (Welch), n=4 vs 4" in welch.test


def test_unpaired_welch_resolves_separated_groups() -> None:
    out = ct.compare([40.0, 42, 41], [100.0, 103, 98, 101], paired=False)
    assert out.verdict == ct.SUPPORTED and (out.n_a, out.n_b) == (3, 4)


def test_overheads_at_or_below_zero_use_the_linear_test() -> None:
    out = ct.compare([-5.0, 3.0, 0.0], [400.0, 410.0, 395.0])
    assert out.verdict == ct.SUPPORTED
    assert "values <= 0: no log ratio" in out.test
    assert out.ratio is not None and out.ratio.has_ci  # Fieller's
    assert out.ratio.ratio == pytest.approx(-2 / 3 / 401.6667, rel=1e-3)
    ni = ct.compare([-5.0, 3.0, 0.0], [0.0, 2.0, -1.0], ct.NON_INFERIORITY)
    assert ni.verdict == ct.INCONCLUSIVE and "spans 0" in ni.reason


def test_one_repetition_has_no_ci() -> None:
    out = ct.compare([1.0], [2.0])
    assert out.verdict == ct.INCONCLUSIVE and "no CI" in out.reason
    assert ct.compare([], [2.0]).verdict == ct.NOT_MEASURED


def test_identical_counts_are_compared_exactly() -> None:
    out = ct.exact([0.0, 0.0, 0.0], [3448.0, 3448.0, 3448.0])
    assert out.verdict == ct.SUPPORTED
    assert out.reason == "0 < 3448, identical in every repetition (n=3 vs 3)"
    assert out.test == "exact comparison of counts"
    assert out.ratio is not None and out.ratio.ratio == 0 and not out.ratio.has_ci
    same = ct.exact([2.0, 2.0], [2.0, 2.0])
    assert same.verdict == ct.NOT_SUPPORTED and "2 >= 2" in same.reason


def test_counts_that_vary_get_statistics_and_say_so() -> None:
    out = ct.exact([100.0, 104.0, 98.0], [3448.0, 3448.0, 3448.0])
    assert out.verdict == ct.SUPPORTED
    assert out.test.startswith("counts varied across repetitions")
    assert "t on log ratios" in out.test


def test_two_sided_describes_without_a_direction() -> None:
    b = _reps([100.0, 200.0, 300.0])
    r, verdict, test = ct.two_sided(b * 1.3, b)
    assert verdict == "higher" and r is not None and r.lo > 1
    assert test == "t on log ratios, paired by repetition, n=3"
    assert ct.two_sided(b * 0.7, b)[1] == "lower"
    assert ct.two_sided(_reps([60.0, 140.0, 95.0]), _reps([100.0, 100.0, 100.0]))[1] \
        == "no clear difference (CI spans 1)"
    assert ct.two_sided([1.0], [2.0])[1] == "no CI (one repetition)"
    assert ct.two_sided([], [2.0])[0] is None


def _t_rejects(a: np.ndarray, b: np.ndarray, rho: float) -> bool:
    d = a - rho * b
    half = float(ct.student_t.ppf(0.975, d.size - 1)) * d.std(ddof=1) / math.sqrt(d.size)
    return abs(d.mean()) > half


def test_fiellers_interval_is_the_ratios_the_t_test_keeps() -> None:
    a = np.array([0.31, 0.42, 0.36, 0.40, 0.33])
    b = np.array([0.30, 0.35, 0.33, 0.37, 0.31])
    r = ct.fieller(a, b, paired=True)
    assert r.lo < r.ratio < r.hi
    grid = np.linspace(0.5, 1.8, 2601)
    kept = [rho for rho in grid if not _t_rejects(a, b, rho)]
    assert min(kept) == pytest.approx(r.lo, abs=1e-3)
    assert max(kept) == pytest.approx(r.hi, abs=1e-3)


def test_overhead_non_inferiority_is_the_linear_contrast_and_fieller_agrees() -> None:
    side = _reps([0.40, 0.44, 0.38, 0.41, 0.43])  # ms over baseline
    near = side * np.array([1.00, 0.97, 1.02, 0.99, 1.01])
    far = side * np.array([1.30, 1.25, 1.32, 1.28, 1.27])
    ok = ct.compare(near, side, ct.NON_INFERIORITY, scale=ct.LINEAR)
    bad = ct.compare(far, side, ct.NON_INFERIORITY, scale=ct.LINEAR)
    assert ok.verdict == ct.SUPPORTED and bad.verdict == ct.NOT_SUPPORTED
    assert "t on mean(a) - 1.1 x mean(b)" in ok.test and "Fieller" in ok.test
    assert ok.ratio is not None and ok.ratio.hi < 1.1
    assert bad.ratio is not None and bad.ratio.lo > 1.1
    # an overhead within noise of zero: the ratio is unbounded, the contrast still decides
    flat = _reps([0.01, -0.02, 0.0, 0.02, -0.01])
    out = ct.compare(flat, side, ct.NON_INFERIORITY, scale=ct.LINEAR)
    assert out.verdict == ct.SUPPORTED


def test_power_text_names_the_effect_and_n() -> None:
    out = ct.compare([50.0, 52, 49], [100.0, 101, 99])
    assert out.power_text().startswith("detects a ") and out.power_text().endswith("n=3")
    assert ct.exact([1.0, 1.0], [2.0, 2.0]).power_text() == ""
