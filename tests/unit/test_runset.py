"""Reports combined from single-mode runs (make bench-sidecar, then make bench-ambient),
refusal of incompatible runs, and the latency source the claims read."""

from __future__ import annotations

import json
from pathlib import Path

import make_fixture as fx  # tests/fixtures, on sys.path via tests/conftest.py
import pytest

from analysis import claims as cl
from analysis.report import write_outputs
from analysis.rundata import load_run
from analysis.runset import SCENARIO_KEY, combine_differences, discover, explicit
from bench.cli import main as cli_main
from bench.errors import UserError

REPS = (0, 1, 2)


def _pair(root: Path, **ambient_updates: dict) -> tuple[Path, Path]:
    """A baseline+sidecar run, then a later baseline+ambient run of the same scenario."""
    side = fx.make_series_run(root, run_id="20250102T000000Z-series-sidecar", seed=1,
                              reps=REPS, modes=("baseline", "sidecar"), hdr=False,
                              started=fx.SERIES_STARTED)
    amb = fx.make_series_run(root, run_id="20250102T010000Z-series-ambient", seed=2,
                             reps=REPS, modes=("baseline", "ambient"), hdr=False,
                             started=fx.SERIES_STARTED + 3600,
                             manifest_updates=ambient_updates or None)
    return side, amb


def _row(rows: list[cl.ClaimRow], claim: str, *words: str) -> cl.ClaimRow:
    found = [r for r in rows if r.claim == claim and all(w in r.tested for w in words)]
    assert len(found) == 1, [r.tested for r in rows]
    return found[0]


def test_a_report_combines_the_sidecar_and_ambient_runs(tmp_path: Path) -> None:
    side, amb = _pair(tmp_path)
    rs = discover(load_run(amb))
    assert rs.combined and rs.run_for("sidecar").run_dir == side
    assert rs.run_for("ambient").run_dir == amb and not rs.paired("ambient", "sidecar")
    rows = cl.claim_rows(rs)
    cpu = _row(rows, cl.A_RES, "CPU", "ambient")
    assert cpu.verdict == cl.SUPPORTED and "unpaired (Welch), n=3 vs 3" in cpu.result.test
    assert cpu.result.ratio is not None
    assert cpu.result.ratio.ratio == pytest.approx(0.04 / 0.10, rel=0.05)
    mem = _row(rows, cl.A_RES, "memory", "ambient")
    assert mem.verdict == cl.SUPPORTED
    for p in ("p50", "p99"):
        lat = _row(rows, cl.D_LATENCY, p, "ztunnels")
        # each over its own run's baseline: two runs' latencies are not compared directly
        assert lat.tested.startswith(f"{p} overhead")
        assert lat.verdict == cl.SUPPORTED, lat.result.text()
        assert "unpaired (Welch)" in lat.result.test and "mean(a) - k x mean(b)" in lat.result.test
        assert lat.result.ratio is not None
        assert lat.result.ratio.ratio == pytest.approx(100 / 400, abs=0.06)
    # waypoint was in neither run
    assert _row(rows, cl.D_LATENCY, "p50", "waypoint").verdict == cl.NOT_MEASURED

    text = (write_outputs(amb).markdown).read_text()
    runs = text[text.index("## Runs drawn from"):text.index("## Latency")]
    assert "`20250102T010000Z-series-ambient` (this run): baseline, ambient" in runs
    assert ("`20250102T000000Z-series-sidecar`: sidecar (overheads over this run's own "
            "baseline)") in runs
    assert "over the baseline of that mode's own run" in runs
    assert "the claims also draw on the other runs" in text
    assert "- (a) **supported** in this run: ambient's data plane used 0.4" in text
    assert "3 repetitions, unpaired: the modes come from two runs" in text


def test_a_report_of_one_run_stays_single_when_asked(tmp_path: Path) -> None:
    _, amb = _pair(tmp_path)
    text = write_outputs(amb, combine=False).markdown.read_text()
    assert "no sidecar data-plane rows in the runs drawn from" in text
    assert _row(cl.claim_rows(load_run(amb)), cl.A_RES, "CPU", "ambient").verdict \
        == cl.NOT_MEASURED
    assert "series-sidecar" not in text


def test_an_incompatible_run_is_refused_naming_the_key(tmp_path: Path) -> None:
    side, amb = _pair(tmp_path, host={"kernel": "6.9.0-other"})
    with pytest.raises(UserError, match=r"host\.kernel \(6\.8\.0-test vs 6\.9\.0-other\)"):
        explicit(load_run(side), [load_run(amb)])
    # the default search passes it over and says why
    rs = discover(load_run(side))
    assert not rs.combined
    assert rs.passed_over == (("20250102T010000Z-series-ambient",
                               "differs: host.kernel (6.8.0-test vs 6.9.0-other)"),)


def test_an_interrupted_run_is_not_drawn_on(tmp_path: Path) -> None:
    side, amb = _pair(tmp_path, exit_status="interrupted")
    rs = discover(load_run(side))
    assert not rs.combined
    assert rs.passed_over == (("20250102T010000Z-series-ambient", "exit status interrupted"),)


def test_a_different_scenario_is_refused_but_not_different_modes(tmp_path: Path) -> None:
    side, amb = _pair(tmp_path)
    a, b = (json.loads((d / "manifest.json").read_text()) for d in (side, amb))
    assert a["scenario"]["modes"] != b["scenario"]["modes"]
    assert combine_differences(a, b) == []
    b["scenario"]["repetitions"] = 5
    assert [k for k, _, _ in combine_differences(a, b)] == [SCENARIO_KEY]


def test_cli_report_runs_refuses_with_exit_2(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    side, amb = _pair(tmp_path, versions={"envoy": "1.41.0"})
    assert cli_main(["report", str(amb), "--runs", str(side)]) == 2
    err = capsys.readouterr().err
    assert "refusing to combine" in err and "versions.envoy (1.41.0 vs 1.40.0)" in err
    assert cli_main(["report", str(amb), "--runs", str(tmp_path / "nope")]) == 2
    assert "no run found at" in capsys.readouterr().err


def test_cli_report_runs_combines_an_explicit_set(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    side, amb = _pair(tmp_path)
    assert cli_main(["report", "--runs", str(side), str(amb)]) == 0
    text = (side / "report.md").read_text()  # the first of --runs is the primary
    assert "`20250102T000000Z-series-sidecar` (this run): baseline, sidecar" in text
    assert "`20250102T010000Z-series-ambient`: ambient (overheads over" in text
    # a run listed twice, or one that adds no mode, is named as not used
    rs = explicit(load_run(side), [load_run(amb), load_run(amb)])
    assert [m for m in rs.sources] == ["baseline", "sidecar", "ambient"]
    assert explicit(load_run(side), [load_run(side)]).passed_over == ()


def test_a_run_that_adds_no_mode_is_named(tmp_path: Path) -> None:
    full = fx.make_series_run(tmp_path, run_id="20250102T000000Z-series-full", reps=REPS,
                              hdr=False)
    side, _ = _pair(tmp_path / "pair")
    rs = explicit(load_run(full), [load_run(side)])
    assert not rs.combined
    assert rs.passed_over == (("20250102T000000Z-series-sidecar",
                               "every mode it measured comes from a run listed before it"),)


# --- latency source -------------------------------------------------------------------------

def _with_kernel_latency(root: Path, factor: float) -> Path:
    """The 3-repetition fixture run plus "load_kernel" rows: every latency of "load"
    times `factor`, and the sidecar's p50 shifted so the sources disagree visibly."""
    from bench.store import Cell, RunStore, Sample

    run_dir = fx.make_run(root, finalize=False)
    run = load_run(run_dir)
    rows = run.rows("load", entity="client")
    rows = rows[rows["metric"].str.startswith("latency_")]
    store = RunStore(run_dir, json.loads((run_dir / "manifest.json").read_text()))
    store.append([Sample.for_cell(Cell(int(r.repetition), str(r.mode), int(r.level)),
                                  source="load_kernel", metric=str(r.metric), unit="us",
                                  value=float(r.value) * factor, entity="client")
                  for r in rows.itertuples()])
    return run_dir


def test_latency_source_prefers_the_kernel_rows(tmp_path: Path) -> None:
    plain = load_run(fx.make_run(tmp_path / "plain"))
    assert plain.latency_source() == "load"
    assert set(plain.latency["source"]) == {"load"}
    kernel = load_run(_with_kernel_latency(tmp_path / "kernel", 0.5))
    assert kernel.latency_source() == "load_kernel"
    assert set(kernel.latency["source"]) == {"load_kernel"}
    # achieved rps, saturation and errors stay with the load generator's rows
    assert "achieved_rps" in set(kernel.client["metric"])
    assert "achieved_rps" not in set(kernel.latency["metric"])
    # the failed cell's rows stay out of both
    assert not ((kernel.latency["mode"] == "waypoint") & (kernel.latency["level"] == 1000)
                & (kernel.latency["repetition"] == 2)).any()


def test_claims_and_report_read_latency_from_the_kernel_source(tmp_path: Path) -> None:
    run_dir = _with_kernel_latency(tmp_path, 0.5)
    rows = cl.claim_rows(load_run(run_dir))
    p50 = _row(rows, cl.D_LATENCY, "p50", "ztunnels")
    # fixture overheads at 1000 rps: ambient +80 us, sidecar +350 us; halved by the source
    assert p50.measured.startswith("ambient +0.0400, sidecar +0.175 ms over baseline;")
    text = write_outputs(run_dir).markdown.read_text()
    assert 'read from the source "load_kernel" (timed in the kernel' in text
    latency = text[text.index("## Latency"):text.index("## Overhead vs baseline")]
    assert 'Latency source: "load_kernel"' in latency
    # baseline p50 at 100 rps: 500/520/510 us from Locust, halved in the kernel rows
    assert "| baseline | 100 | 255 [250–260] |" in latency
