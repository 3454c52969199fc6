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


def test_a_consistent_but_small_effect_is_not_a_superiority() -> None:
    out = ct.compare([97.0, 97.1, 96.9], [100.0, 100.0, 100.0])
    assert out.ratio is not None and out.ratio.hi < 1
    assert out.verdict == ct.INCONCLUSIVE and "under 5 %" in out.reason


def test_equality_with_small_spread_is_non_inferior() -> None:
    b = _reps([500.0, 520.0, 480.0, 510.0])
    a = b * np.array([1.01, 0.99, 1.02, 1.00])
    out = ct.compare(a, b, ct.NON_INFERIORITY)
    assert out.verdict == ct.SUPPORTED
    assert out.ratio is not None and out.ratio.hi < 1 + ct.NI_MARGIN
    assert "non-inferiority, margin 10 %" in out.test
    # the same data cannot show superiority: equality is not "less than"
    assert ct.compare(a, b, ct.SUPERIORITY).verdict == ct.INCONCLUSIVE


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
    assert out.ratio is not None and not out.ratio.has_ci
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
