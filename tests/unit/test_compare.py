"""compare and trend on fabricated runs with known changes."""

from __future__ import annotations

import json
from pathlib import Path

import make_fixture as fx  # tests/fixtures, on sys.path via tests/conftest.py
import pytest

from analysis.compare import NOT_SIGNIFICANT, compare_runs, main, main_trend
from analysis.headline import headline, select_families
from analysis.metadata import differing_keys
from analysis.rundata import load_run


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A reference run, a run of the same distributions, a run where sidecar latency is
    20 % higher, and a run on another kernel and Envoy; 5 repetitions each."""
    root = tmp_path_factory.mktemp("runs")

    def make(name: str, seed: int, **kw: object) -> Path:
        return fx.make_series_run(root / name, run_id=f"2025010{seed}T000000Z-{name}",
                                  seed=seed, hops=True, hdr=False, **kw)

    return {
        "a": make("a", 1),
        "same": make("same", 3),
        "slower": make("slower", 2, latency_scale={"sidecar": 1.2}),
        "costly": make("costly", 4, cost_scale={"ambient": 1.3}),
        "other": make("other", 5, manifest_updates={
            "host": {"kernel": "6.9.0-other"}, "versions": {"envoy": "1.41.0"}}),
    }


def _table_rows(out: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip("|").split("|")] for line in out.splitlines()
            if line.startswith("| ") and not line.startswith(("| metric", "| run "))]


def test_a_20_percent_regression_is_detected(runs: dict[str, Path], tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    out_json = tmp_path / "c.json"
    assert main([str(runs["a"]), str(runs["slower"]), "--json", str(out_json)]) == 1
    out = capsys.readouterr().out
    rows = _table_rows(out)
    worse = {(r[0], r[1], r[2]) for r in rows if r[-1] == "worse"}
    for level in ("100", "1000"):
        assert ("latency p50", "sidecar", level) in worse
        assert ("latency p99", "sidecar", level) in worse
        assert ("p50 overhead vs baseline", "sidecar", level) in worse
        assert ("hop p50 (sidecar-client-0 request)", "sidecar", level) in worse
    assert all(mode == "sidecar" for _, mode, _ in worse)
    p50 = next(r for r in rows if r[:3] == ["latency p50", "sidecar", "100"])
    ratio = float(p50[5].split()[0])
    assert ratio == pytest.approx(1.2, abs=0.03)
    lo, hi = (float(x) for x in p50[5].split("[")[1].rstrip("]").split("–"))
    assert 1.0 < lo <= ratio <= hi
    # 20 % against a 10 % threshold, with ~1 % spread: far past it (Mann-Whitney's exact
    # floor at 5 vs 5 was 0.0079)
    assert float(p50[6]) < 1e-4
    assert "Worse beyond the threshold: latency p50, sidecar at 100 rps ×1.2" in out
    assert "Holm's correction across the" in out
    outcome = json.loads(out_json.read_text())
    assert outcome["status"] == "worse" and outcome["exit_code"] == 1
    assert {w["mode"] for w in outcome["worse"]} == {"sidecar"}


def test_same_distributions_are_not_significant(runs: dict[str, Path],
                                                capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(runs["a"]), str(runs["same"])]) == 0
    rows = _table_rows(capsys.readouterr().out)
    assert rows and {r[-1] for r in rows} == {NOT_SIGNIFICANT}


def test_threshold_sets_the_effect_that_counts(runs: dict[str, Path],
                                               capsys: pytest.CaptureFixture[str]) -> None:
    # the latency rises by 20 %; the overhead over baseline by ~48 %
    assert main([str(runs["a"]), str(runs["slower"]), "--threshold", "25",
                 "--metrics", "latency"]) == 0
    assert "worse" not in {r[-1] for r in _table_rows(capsys.readouterr().out)}
    assert main([str(runs["a"]), str(runs["slower"]), "--threshold", "25",
                 "--metrics", "overhead"]) == 1


def test_metrics_select_families(runs: dict[str, Path],
                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(runs["a"]), str(runs["costly"]), "--metrics", "cores,pss"]) == 1
    rows = _table_rows(capsys.readouterr().out)
    assert {r[0] for r in rows} == {"data-plane cores", "data-plane PSS"}
    assert {(r[0], r[1]) for r in rows if r[-1] == "worse"} == {
        ("data-plane cores", "ambient"), ("data-plane PSS", "ambient")}
    assert select_families(["p99"]) == ["latency_p99", "overhead_p99"]
    assert main([str(runs["a"]), str(runs["costly"]), "--metrics", "bogus"]) == 2
    assert "'bogus' matches none of" in capsys.readouterr().err


def test_mismatched_metadata_is_refused(runs: dict[str, Path], tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    out_json = tmp_path / "c.json"
    assert main([str(runs["a"]), str(runs["other"]), "--json", str(out_json)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    err = captured.err.strip()
    assert len(err.splitlines()) == 1
    assert "versions.envoy (1.40.0 vs 1.41.0)" in err
    assert "host.kernel (6.8.0-test vs 6.9.0-other)" in err
    assert "scenario_hash" not in err and "--force" in err
    outcome = json.loads(out_json.read_text())
    assert outcome["status"] == "refused"
    assert outcome["differing_keys"] == ["versions.envoy", "host.kernel"]


def test_force_compares_and_warns(runs: dict[str, Path],
                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(runs["a"]), str(runs["other"]), "--force"]) == 0
    out = capsys.readouterr().out
    assert "WARNING: key metadata differ (compared because of --force): versions.envoy" in out


def test_three_repetitions_resolve_a_large_change_and_one_cannot(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Welch's t on logs resolves 3 vs 3 (an exact rank test could not reach p < 0.01)
    a = fx.make_series_run(tmp_path / "a", reps=(0, 1, 2), hdr=False)
    b = fx.make_series_run(tmp_path / "b", reps=(0, 1, 2), seed=7, hdr=False,
                           latency_scale={"sidecar": 1.5})
    assert main([str(a), str(b)]) == 1
    worse = {(r[0], r[1]) for r in _table_rows(capsys.readouterr().out) if r[-1] == "worse"}
    assert ("latency p50", "sidecar") in worse and all(m == "sidecar" for _, m in worse)
    one_a = fx.make_series_run(tmp_path / "c", reps=(0,), hdr=False)
    one_b = fx.make_series_run(tmp_path / "d", reps=(0,), seed=7, hdr=False,
                               latency_scale={"sidecar": 1.5})
    assert main([str(one_a), str(one_b)]) == 0
    out = capsys.readouterr().out
    assert {r[-1] for r in _table_rows(out)} == {"n too small"}
    assert "Nothing could be tested: each run needs 2 or more repetitions" in out


def test_not_a_run_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path), str(tmp_path)]) == 2
    assert "no manifest.json" in capsys.readouterr().err


def test_differing_keys() -> None:
    base = {"scenario_hash": "h", "backend": "local", "versions": {"envoy": "1"},
            "host": {"cpu_model": "c", "kernel": "k"}}
    assert differing_keys(base, json.loads(json.dumps(base))) == []
    kind = {**base, "versions": {"envoy": "1", "istio": "1.27.3"}}
    assert differing_keys(base, kind) == [("versions.istio", None, "1.27.3")]
    moved = {**base, "backend": "kind", "scenario_hash": "x"}
    assert [k for k, _, _ in differing_keys(base, moved)] == ["scenario_hash", "backend"]


def test_headline_and_changes_cover_every_family(runs: dict[str, Path]) -> None:
    a = load_run(runs["a"])
    families = set(headline(a)["family"])
    assert families == {"latency_p50", "latency_p99", "overhead_p50", "overhead_p99",
                        "dataplane_cores", "dataplane_pss", "hop_p50"}
    changes = compare_runs(a, load_run(runs["same"]))
    assert all(c.a.size == c.b.size == 5 for c in changes)
    assert changes[0].family == "latency_p50" and changes[0].mode == "baseline"


def test_trend_orders_runs_and_marks_other_metadata(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "history"
    for day in (3, 1, 2):
        fx.make_series_run(root, run_id=f"2025010{day}T000000Z-nightly", seed=day, hdr=False,
                           started=fx.SERIES_STARTED + 86400 * day,
                           latency_scale={"sidecar": 1.2 if day == 3 else 1.0},
                           manifest_updates={"host": {"kernel": "6.1-old"}} if day == 1 else None)
    png = tmp_path / "trend.png"
    assert main_trend([str(root), "--mode", "sidecar", "--level", "100", "--png", str(png)]) == 0
    out = capsys.readouterr().out
    rows = _table_rows(out)
    assert [r[0] for r in rows] == [f"2025010{d}T000000Z-nightly" for d in (1, 2, 3)]
    assert rows[0][-1] == "differs: host.kernel" and rows[1][-1] == rows[2][-1] == "same"
    assert float(rows[2][4].split()[0]) > 1.15 * float(rows[1][4].split()[0])
    assert png.read_bytes().startswith(b"\x89PNG")
    assert main_trend([str(tmp_path / "nothing-here")]) == 2
