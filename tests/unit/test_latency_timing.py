"""Which timing the report's latency uses, and the agreement table against the reference
client, on fabricated runs with known numbers."""

from __future__ import annotations

from pathlib import Path

import pytest

from analysis.latency import agreement, reference_section, same_order, timing_section
from analysis.rundata import load_run
from bench.store import Cell, RunStore, Sample

# p50 (µs) per mode: Locust adds ~600 µs of its own in every cell; the reference agrees
# with the kernel timing for sidecar and is 30 % lower for ambient
LOCUST = {"baseline": 900.0, "sidecar": 1600.0, "ambient": 1300.0}
KERNEL = {"baseline": 300.0, "sidecar": 1000.0, "ambient": 700.0}
REFERENCE = {"baseline": 320.0, "sidecar": 1020.0, "ambient": 600.0}


def _rows(cell: Cell, source: str, p50: float) -> list[Sample]:
    return [Sample.for_cell(cell, source=source, metric=m, unit="us", value=v,
                            entity="client", ts=1.0)
            for m, v in (("latency_p50", p50), ("latency_p99", 2 * p50))]


def _make(root: Path, *, kernel_cells: int | None = None, reference: bool = True) -> Path:
    store = RunStore.create(root, "20260101T000000Z-timing-1", {
        "scenario": {"name": "t", "modes": list(LOCUST), "load": {"levels": [500],
                                                                   "arrivals": "uniform"}},
        "backend": "local", "probes": {"kernel_latency": {"status": "ok", "reason": ""}}})
    rows: list[Sample] = []
    n = 0
    for rep in (1, 2):
        for mode in LOCUST:
            cell = Cell(rep, mode, 500)
            rows += _rows(cell, "load", LOCUST[mode])
            rows.append(Sample.for_cell(cell, source="load", metric="achieved_rps", unit="rps",
                                        value=500.0, entity="client", ts=1.0))
            if kernel_cells is None or n < kernel_cells:
                rows += _rows(cell, "load_kernel", KERNEL[mode])
                rows.append(Sample.for_cell(cell, source="load_kernel", metric="burst_share",
                                            unit="ratio", value=0.0, entity="client", ts=1.0))
            if reference:
                rows += _rows(cell, "reference", REFERENCE[mode])
            n += 1
    store.append(rows)
    store.finalize()
    return store.dir


def test_kernel_timing_is_the_headline_when_every_cell_has_it(tmp_path: Path) -> None:
    run = load_run(_make(tmp_path))
    assert run.latency_source() == "load_kernel"
    p50 = run.latency[run.latency["metric"] == "latency_p50"]
    assert set(p50["value"]) == set(KERNEL.values())
    # the client rows stay Locust's
    assert (run.client["metric"] == "achieved_rps").sum() == 6
    text = "\n".join(timing_section(run))
    assert "timed in the kernel" in text and "`uniform`" in text
    assert "| sidecar | 500 | 1000 | 1600 | 600 (+60" in text


def test_a_run_never_mixes_timings(tmp_path: Path) -> None:
    run = load_run(_make(tmp_path, kernel_cells=4))
    assert run.latency_source() == "load"
    p50 = run.latency[run.latency["metric"] == "latency_p50"]
    assert set(p50["value"]) == set(LOCUST.values())
    assert "did not cover every cell" in "\n".join(timing_section(run))


def test_agreement_with_the_reference_flags_modes_outside_15_percent(tmp_path: Path) -> None:
    rows = {r["mode"]: r for r in agreement(load_run(_make(tmp_path)))}
    assert set(rows) == {"sidecar", "ambient"}
    # sidecar: kernel overhead 700 vs reference 700 -> 1.00; ambient 400 vs 280 -> 1.43
    assert rows["sidecar"]["ratio"] == pytest.approx(1.0)
    assert rows["sidecar"]["within"]
    assert rows["ambient"]["ratio"] == pytest.approx(400 / 280)
    assert not rows["ambient"]["within"]
    # Locust's own overheads agree here too: its extra 600 µs is in baseline as well
    assert rows["sidecar"]["locust_ratio"] == pytest.approx(1.0)
    assert same_order(list(rows.values()), "harness_us") == {500: True}
    text = "\n".join(reference_section(load_run(tmp_path / "20260101T000000Z-timing-1")))
    assert "Outside the agreement goal: ambient at 500 rps (1.43)" in text


def test_no_reference_no_agreement_section(tmp_path: Path) -> None:
    run = load_run(_make(tmp_path, reference=False))
    assert agreement(run) == [] and reference_section(run) == []


def test_order_counts_only_where_the_reference_separates_modes() -> None:
    def row(mode: str, ref: float, harness: float) -> dict:
        return {"mode": mode, "level": 500, "reference_us": ref, "harness_us": harness}

    # sidecar and waypoint 3 % apart in the reference: a tie, their order is noise
    close = [row("ambient", 400, 380), row("sidecar", 900, 950), row("waypoint", 870, 980)]
    assert same_order(close, "harness_us") == {500: True}
    # ambient clearly below sidecar in the reference but above it in the harness
    swapped = [row("ambient", 400, 990), row("sidecar", 900, 950)]
    assert same_order(swapped, "harness_us") == {500: False}
    # a saturated cell is left out
    swapped[0]["saturated"] = True
    assert same_order(swapped, "harness_us") == {500: True}
