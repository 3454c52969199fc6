"""The nightly gate on history (analysis/gate.py): known histories, known shifts."""

from __future__ import annotations

import json
import math
from pathlib import Path

import make_fixture as fx  # tests/fixtures, on sys.path via tests/conftest.py
import numpy as np

from analysis import gate
from analysis.rundata import load_run


def _history(sd: float, n: int = 10, seed: int = 0) -> list[float]:
    rng = np.random.default_rng(seed)
    return [math.exp(x) for x in rng.normal(0.0, sd, n)]


def test_a_value_is_flagged_outside_the_band_and_past_the_practical_threshold() -> None:
    hist = _history(0.05)
    centre, upper, flagged, note = gate.judge_metric(hist, 1.6, m=6)
    assert flagged and note == "" and centre is not None and upper is not None
    assert 0.9 < centre < 1.1 and centre < upper < 1.6
    assert not gate.judge_metric(hist, 1.02, m=6)[2]  # inside the band
    # a metric that never varied: the band is the SD floor; 5 % above is not practical
    flat = [100.0] * 10
    assert not gate.judge_metric(flat, 105.0, m=1)[2]
    assert gate.judge_metric(flat, 120.0, m=1)[2]
    assert gate.judge_metric(hist[:4], 9.0, m=1)[3] == "4 of 5 history nights"


def test_a_wide_history_needs_a_larger_change() -> None:
    wide = _history(0.15)
    assert not gate.judge_metric(wide, 1.3, m=6)[2]
    assert gate.judge_metric(wide, 3.0, m=6)[2]


def test_only_a_second_flagged_night_confirms() -> None:
    hist = [{"a": v, "b": 1.0} for v in _history(0.05)]
    night = {"a": 2.0, "b": 1.0}
    first = {j.metric: j for j in gate.judge(hist, night)}
    assert first["a"].flagged and not first["a"].confirmed and not first["b"].flagged
    second = {j.metric: j for j in gate.judge(hist, night, {"a"})}
    assert second["a"].confirmed


def test_a_stable_history_does_not_fail_and_a_large_shift_does_within_two_nights() -> None:
    rng = np.random.default_rng(3)
    series = {f"m{i}": np.exp(rng.normal(0.0, 0.08, 400)) for i in range(8)}
    green: list[dict[str, float]] = []
    before: set[str] = set()
    failures = 0
    for i in range(400):
        night = {k: float(v[i]) for k, v in series.items()}
        judged = gate.judge(green, night, before)
        before = {j.metric for j in judged if j.flagged}
        fail = any(j.confirmed for j in judged)
        failures += fail
        if not fail:
            green.append(gate.without_flagged(night, before))
    assert failures / (400 - gate.MIN_HISTORY) <= 0.05  # the gate's hard limit
    series["m0"][50:] *= 2.0
    green, before, m0_confirmed = [], set(), []
    for i in range(52):
        night = {k: float(v[i]) for k, v in series.items()}
        judged = gate.judge(green, night, before)
        before = {j.metric for j in judged if j.flagged}
        if any(j.confirmed and j.metric == "m0" for j in judged):
            m0_confirmed.append(i)
        if not any(j.confirmed for j in judged):
            green.append(gate.without_flagged(night, before))
    assert m0_confirmed == [51]  # flagged on night 50, confirmed on 51


def test_the_cli_flags_then_confirms_a_regression_over_two_nights(tmp_path: Path) -> None:
    hist = tmp_path / "history"
    for i in range(6):
        fx.make_series_run(hist, run_id=f"2025010{i}T000000Z-series-{i}", seed=i, hdr=False,
                           started=fx.SERIES_STARTED + i * 86400)
    night1 = fx.make_series_run(tmp_path / "n1", run_id="20250110T000000Z-series-n1", seed=10,
                                hdr=False, cost_scale={"ambient": 1.5},
                                started=fx.SERIES_STARTED + 10 * 86400)
    values = gate.night_values(load_run(night1))
    assert any(k.startswith("dataplane_cores ambient @") for k in values)
    assert any(k.startswith("overhead_p50 sidecar @") for k in values)
    assert gate.main([str(night1), str(hist)]) == 0  # flagged, not yet confirmed
    out = json.loads((night1 / "gate.json").read_text())
    assert [m for m in out["flagged"] if "ambient" in m] and out["confirmed"] == []
    assert len(out["history"]) == 6
    # the next night regresses the same way; last night (with its gate.json) is history now
    (hist / night1.name).symlink_to(night1)
    night2 = fx.make_series_run(tmp_path / "n2", run_id="20250111T000000Z-series-n2", seed=11,
                                hdr=False, cost_scale={"ambient": 1.5},
                                started=fx.SERIES_STARTED + 11 * 86400)
    assert gate.main([str(night2), str(hist), "--json", str(tmp_path / "g.json")]) == 1
    assert json.loads((tmp_path / "g.json").read_text())["confirmed"]
