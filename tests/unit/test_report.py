"""analysis: statistics on known inputs, and the report of a fabricated run."""

from __future__ import annotations

import math
from pathlib import Path

import make_fixture as fx  # tests/fixtures, on sys.path via tests/conftest.py
import pandas as pd
import pytest

from analysis.report import main, write_report
from analysis.rundata import load_run
from analysis.stats import (
    bootstrap_ratio_ci,
    min_two_sided_p,
    overhead_vs_baseline,
    paired_deltas,
    significance,
    summarize,
)


def frame(rows: list[tuple[str, int, int, float]], metric: str = "m") -> pd.DataFrame:
    """Tidy rows (mode, level, repetition, value) of one metric."""
    return pd.DataFrame([{"mode": m, "level": lv, "repetition": r, "metric": metric,
                          "value": v} for m, lv, r, v in rows])


# --- statistics ---------------------------------------------------------------------

def test_summarize_known_values_and_cv_threshold() -> None:
    df = frame([("a", 1, 0, 90.0), ("a", 1, 1, 100.0), ("a", 1, 2, 110.0),
                ("b", 1, 0, 99.0), ("b", 1, 1, 100.0), ("b", 1, 2, 101.0),
                ("c", 1, 0, 7.0)])
    s = summarize(df, "m").set_index("mode")
    assert s.loc["a", ["n", "median", "min", "max", "mean"]].tolist() == [3, 100, 90, 110, 100]
    assert s.loc["a", "std"] == pytest.approx(10.0)
    assert s.loc["a", "cv"] == pytest.approx(0.10)
    assert bool(s.loc["a", "cv_warning"])  # 10 % exactly is warned about
    assert s.loc["b", "cv"] == pytest.approx(0.01)
    assert not bool(s.loc["b", "cv_warning"])
    assert math.isnan(s.loc["c", "cv"])  # one repetition: spread unknown, not "fine"
    assert not bool(s.loc["c", "cv_warning"])


def test_summarize_refuses_two_values_in_one_cell() -> None:
    df = frame([("a", 1, 0, 1.0), ("a", 1, 0, 2.0)])
    with pytest.raises(ValueError, match="more than one value"):
        summarize(df, "m")


def test_overhead_is_paired_by_level_and_repetition() -> None:
    df = frame([
        ("baseline", 100, 0, 500.0), ("baseline", 100, 1, 700.0), ("baseline", 100, 2, 600.0),
        ("sidecar", 100, 0, 820.0), ("sidecar", 100, 1, 990.0), ("sidecar", 100, 2, 900.0),
        ("sidecar", 100, 3, 5000.0),  # no baseline partner in repetition 3: left out
        ("baseline", 200, 0, 1.0),  # another level: never paired with level 100
    ])
    deltas = paired_deltas(df, "m").sort_values("repetition")
    assert deltas["delta"].tolist() == [320.0, 290.0, 300.0]
    o = overhead_vs_baseline(df, "m")
    assert len(o) == 1
    row = o.iloc[0]
    assert (row["mode"], row["level"], row["n"]) == ("sidecar", 100, 3)
    assert (row["median"], row["min"], row["max"]) == (300.0, 290.0, 320.0)
    assert row["pct_median"] == pytest.approx(50.0)
    assert row["pct_min"] == pytest.approx(100 * 290 / 700)
    assert row["pct_max"] == pytest.approx(64.0)


def test_bootstrap_ci_contains_true_ratio_of_separated_samples() -> None:
    a = [200.0, 205.0, 195.0, 210.0, 190.0, 202.0, 198.0, 207.0]
    b = [100.0, 102.0, 98.0, 105.0, 95.0, 101.0, 99.0, 103.0]
    ratio, lo, hi = bootstrap_ratio_ci(a, b)
    assert ratio == pytest.approx(201.0 / 100.5)
    assert lo < 2.0 < hi
    assert lo > 1.5  # clearly separated: the interval excludes "no difference"
    assert bootstrap_ratio_ci(a, b) == (ratio, lo, hi)  # seeded: reproducible


def test_bootstrap_ci_with_one_sample_per_side_is_the_point() -> None:
    assert tuple(bootstrap_ratio_ci([3.0], [2.0])) == (1.5, 1.5, 1.5)


def test_bootstrap_rejects_zero_reference() -> None:
    with pytest.raises(ValueError):
        bootstrap_ratio_ci([1.0], [0.0, 0.0])


def test_significance_verdicts() -> None:
    lo, hi = [100.0, 101, 102, 103, 104, 105], [200.0, 201, 202, 203, 204, 205]
    s = significance(hi, lo)
    assert s.verdict == "significant" and s.p_value < 0.01
    assert s.effect == pytest.approx(202.5 / 102.5 - 1)
    # separated, so p < 0.01, but the effect is below 5 %
    small = significance([105.5, 105.6, 105.7, 105.8, 105.9, 106.0], lo)
    assert small.p_value < 0.01 and small.verdict == "not significant"
    # large effect but overlapping samples: p too high
    mixed = significance([100.0, 300, 101, 301, 102, 302], lo)
    assert mixed.p_value >= 0.01 and mixed.verdict == "not significant"
    # 5 vs 5 is the smallest equal n where p < 0.01 is reachable
    assert significance(hi[:5], lo[:5]).verdict == "significant"


@pytest.mark.parametrize("n", [2, 3, 4])
def test_significance_says_when_n_is_too_small(n: int) -> None:
    s = significance([200.0 + i for i in range(n)], [100.0 + i for i in range(n)])
    assert s.verdict == "n too small"
    assert "cannot be reached" in s.reason
    assert min_two_sided_p(n, n) >= 0.01


# --- report ---------------------------------------------------------------------------

@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return fx.make_run(tmp_path)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> str:
    """report.md of the fixture run, written once for the tests that only read it."""
    run_dir = fx.make_run(tmp_path_factory.mktemp("report"))
    write_report(run_dir)
    return (run_dir / "report.md").read_text()


def test_load_run_reads_parquet_and_jsonl_alike(tmp_path: Path) -> None:
    done = load_run(fx.make_run(tmp_path / "a"))
    going = load_run(fx.make_run(tmp_path / "b", finalize=False))
    assert (done.run_dir / "samples.parquet").exists()
    assert not (going.run_dir / "samples.parquet").exists()
    assert len(done.table) == len(going.table) > 0
    assert done.modes == list(fx.MODES) and done.levels == list(fx.LEVELS)
    idle = done.resources[done.resources["phase"] == "idle"]
    assert set(idle["level"]) == {0}


def test_failed_cell_rows_are_kept_out(run_dir: Path) -> None:
    run = load_run(run_dir)
    assert run.failed_cells == {fx.FAILED}
    assert fx.FAILED_VALUE in set(run.table["value"])  # the store has them ...
    assert fx.FAILED_VALUE not in set(run.client["value"])  # ... the statistics do not


def test_report_sections_in_order(report: str) -> None:
    headings = ["# meshbench report: " + fx.RUN_ID, "## Latency", "## Overhead vs baseline",
                "## CV warnings", "## Resources", "## Failed cells", "## Probes",
                "## Run metadata", "## Simplifications"]
    positions = [report.index(h) for h in headings]
    assert positions == sorted(positions)
    assert "fixture (hash `abc123def456`)" in report
    assert ("Local backend: Envoy 1.40 in network namespaces on one host; these figures "
            "show architecture costs, not Istio release figures.") in report


def test_report_latency_rows_have_expected_medians(report: str) -> None:
    assert ("| sidecar | 100 | 815 [800–830] | 1015 [1000–1030] | 2445 [2400–2490] "
            "| 4890 [4800–4980] | 3 | 99 [99–99] | 0 | 0/3 |") in report
    assert "| sidecar | 1000 | 960 [950–1000] |" in report
    assert "| 990 [900–990] | 0 | 1/3 |" in report  # one saturated cell of three
    assert "| ambient | 100 | 570 [560–585] |" in report
    assert "| 99 [99–99] | 3 | 0/3 |" in report  # errors are summed
    # the failed repetition is out: n = 2, and its absurd value appears nowhere
    assert ("| waypoint | 1000 | 1125 [1100–1150] | 1325 [1300–1350] | 3375 [3300–3450] "
            "| 6750 [6600–6900] | 2 |") in report
    assert "99999" not in report


def test_report_overhead_rows(report: str) -> None:
    assert ("| sidecar | 100 | 3 | 305 [300–310] | +59.8 [+59.6–+60.0] "
            "| 915 [900–930] | +59.8 [+59.6–+60.0] |") in report
    assert "| waypoint | 1000 | 2 | 505 [500–510] |" in report


def test_report_ratios_are_paired_by_repetition(report: str) -> None:
    # sidecar / baseline p50 at 100 rps, per repetition: 800/500, 830/520, 815/510
    ratios = report[report.index("## Ratios between modes"):report.index("## CV warnings")]
    row = next(ln for ln in ratios.splitlines()
               if ln.startswith("| 100 | p50 | sidecar / baseline |"))
    assert row.startswith("| 100 | p50 | sidecar / baseline | 1.598 [1.59")
    assert row.endswith("| n=3 | higher |")
    # the failed waypoint cell at 1000 rps leaves 2 pairs
    assert "| 1000 | p50 | waypoint / baseline |" in ratios
    assert "| n=2 |" in ratios


def test_report_warns_about_noisy_cell(report: str) -> None:
    cv = report[report.index("## CV warnings"):report.index("## Resources")]
    assert "- ambient at 1000 rps, p99: CV 18.3 % (n=3, 1900 [1800–2500] µs)" in cv
    assert cv.count("\n- ") == 1


def test_report_resources(report: str) -> None:
    res = report[report.index("## Resources"):report.index("## Failed cells")]
    assert "| sidecar | 1000 | 0.502 [0.500–0.504] | 0.509 [0.505–0.558] | 40 [40–40] " \
           "| 60 [60–60] | 3 |" in res
    assert "No data-plane proxy in: baseline." in res
    assert "| waypoint | data plane (total) | 0.00900 [0.00900–0.00900] | 84 [84–84] " \
           "| 130 [130–130] | 1 |" in res  # idle


def test_report_lists_failed_cells_and_probes(report: str) -> None:
    assert "| r2-waypoint-1000rps | waypoint | 1000 | 2 | failed | waypoint not ready after 60 s |" \
        in report
    assert "| bcc | skipped | not root |" in report
    assert "  - repetition 1: ambient, waypoint, baseline, sidecar" in report


def test_run_without_resource_rows_says_so(tmp_path: Path) -> None:
    run_dir = fx.make_run(tmp_path, resources=False)
    written = write_report(run_dir)
    text = (run_dir / "report.md").read_text()
    assert ("No resource samples in this run (probe status: resources skipped: "
            f"{fx.RESOURCE_SKIP_REASON}).") in text
    assert not (run_dir / "resources.png").exists()
    assert [p.name for p in written] == ["claims.png", "latency.png", "report.md"]


def test_one_repetition_run_claims_no_spread(tmp_path: Path) -> None:
    run_dir = fx.make_run(tmp_path, reps=(0,))
    write_report(run_dir)
    text = (run_dir / "report.md").read_text()
    assert "| sidecar | 100 | 800 [800–800] | " in text and "| 1 | 99 [99–99] |" in text
    assert "| 100 | p50 | sidecar / baseline | 1.600 | n=1 | no CI (one repetition) |" in text
    assert "No cell has n >= 2 repetitions, so no CV could be computed." in text
    assert "CV not computable (n < 2) for: baseline at 100 rps," in text


def test_latency_png_is_written(run_dir: Path) -> None:
    written = write_report(run_dir)
    png = run_dir / "latency.png"
    assert png in written and (run_dir / "resources.png") in written
    data = png.read_bytes()
    assert data.startswith(b"\x89PNG") and len(data) > 10_000


def test_main_prints_paths(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(run_dir)]) == 0
    out = capsys.readouterr().out.split()
    assert out[-1] == str(run_dir / "report.md")


def test_main_on_a_directory_without_manifest(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path)]) == 2
    assert "no manifest.json" in capsys.readouterr().err
