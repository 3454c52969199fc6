"""Verdicts across compatible runs (analysis.across, claimtests.across_runs)."""

from __future__ import annotations

import math
from pathlib import Path

import make_fixture as fx  # tests/fixtures, on sys.path via tests/conftest.py
import numpy as np
import pytest

from analysis import across as ac
from analysis import claims as cl
from analysis import claimtests as ct
from analysis.report import write_outputs
from analysis.rundata import load_run


def test_across_runs_is_a_t_interval_over_the_runs_ratios() -> None:
    ratios = [0.50, 0.56, 0.47]
    out = ct.across_runs(ratios, ct.SUPERIORITY)
    x = np.log(ratios)
    half = 4.302652729911275 * x.std(ddof=1) / math.sqrt(3)  # t(0.975, 2)
    assert out.ratio is not None
    assert out.ratio.lo == pytest.approx(math.exp(x.mean() - half))
    assert out.ratio.hi == pytest.approx(math.exp(x.mean() + half))
    assert out.verdict == ct.SUPPORTED and "3 runs (between-run variance included)" in out.test
    # the same mean with a run-to-run shift as large as the effect: no longer resolved
    assert ct.across_runs([0.5, 1.1], ct.SUPERIORITY).verdict == ct.INCONCLUSIVE


def _runs(tmp_path: Path, scales: list[float], **kw: object) -> list[Path]:
    out = []
    for i, s in enumerate(scales):
        out.append(fx.make_series_run(tmp_path, run_id=f"2025010{i + 1}T000000Z-series-{i}",
                                      seed=i, hdr=False, started=fx.SERIES_STARTED + 86400 * i,
                                      cost_scale={"ambient": s}, **kw))  # type: ignore[arg-type]
    return out


def test_earlier_compatible_runs_join_the_verdict(tmp_path: Path) -> None:
    dirs = _runs(tmp_path, [1.0, 1.3, 0.8])
    newest = load_run(dirs[-1])
    earlier, unreadable = ac.earlier_runs(newest)
    assert [r.run_dir for r in earlier] == dirs[:2] and unreadable == []
    rows = cl.claim_rows(newest)
    over = ac.across(rows, earlier, newest.run_id)
    cpu = over[next(ac._key(r) for r in rows if r.primary and "CPU: ambient" in r.tested)]
    assert len(cpu.runs) == 3 and cpu.runs[-1] == newest.run_id
    r = cpu.result.ratio
    assert r is not None and r.lo < r.ratio < r.hi
    # the runs' ratios (0.4 x 1.0, 1.3, 0.8) spread far wider than one run's repetitions
    one = next(x for x in rows if x.primary and "CPU: ambient" in x.tested).result.ratio
    assert one is not None and (r.hi / r.lo) > 3 * (one.hi / one.lo)
    text = write_outputs(dirs[-1]).markdown.read_text()
    assert "; across 3 compatible runs: 0." in text
    # the oldest run has nothing before it: no line
    assert "compatible runs" not in write_outputs(dirs[0]).markdown.read_text()


def test_runs_with_other_key_metadata_stay_out(tmp_path: Path) -> None:
    _runs(tmp_path, [1.0])
    fx.make_series_run(tmp_path, run_id="20250105T000000Z-series-k", seed=5, hdr=False,
                       started=fx.SERIES_STARTED + 86400 * 5,
                       manifest_updates={"host": {"kernel": "6.9.0-other"}})
    newest = load_run(tmp_path / "20250105T000000Z-series-k")
    assert ac.earlier_runs(newest)[0] == []
