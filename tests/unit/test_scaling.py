"""The scaling fit on a fabricated sweep with known slopes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from analysis.scaling import fit, points, write_scaling
from bench.store import Cell, RunStore, Sample

# cost = a + b * pods: sidecar pays a proxy per pod, ambient a fixed per-node cost
TRUE = {"sidecar": (20.0, 40.0), "ambient": (80.0, 0.5), "waypoint": (120.0, 0.5)}


def _sweep(tmp_path: Path, sizes: tuple[int, ...] = (1, 4, 8, 16), reps: int = 2) -> Path:
    d = tmp_path / "sw"
    d.mkdir()
    runs = []
    for i, size in enumerate(sizes, start=1):
        st = RunStore.create(d, f"{i:02d}-p{size}",
                             {"scenario": {"name": "t", "topology": {"services": 2}}})
        pods = 2 * size + 1
        for rep in range(1, reps + 1):
            for mode, (a, b) in TRUE.items():
                noise = 1.0 + (0.01 if rep % 2 else -0.01)
                st.append([
                    Sample.for_cell(Cell(rep, mode, 0), source="resources", metric="pss_mib",
                                    unit="MiB", value=(a + b * pods) * noise, entity="dataplane",
                                    labels={"phase": "idle"}),
                    Sample.for_cell(Cell(rep, mode, 300), source="resources",
                                    metric="cpu_cores", unit="cores",
                                    value=(0.05 + 0.01 * pods) if mode == "sidecar" else 0.06,
                                    entity="dataplane", labels={"phase": "load"}),
                ])
        st.finalize()
        runs.append({"pods_per_service": size, "dir": st.dir.name, "exit": 0})
    (d / "sweep.json").write_text(json.dumps({"scenario": "t", "scenario_hash": "h",
                                              "sizes": list(sizes), "runs": runs}))
    return d


def test_fit_recovers_known_slopes_with_ci(tmp_path: Path) -> None:
    d = _sweep(tmp_path)
    fits = {(f.mode, f.phase, f.metric): f for f in fit(points(d))}
    side = fits[("sidecar", "idle", "pss_mib")]
    amb = fits[("ambient", "idle", "pss_mib")]
    assert side.slope == pytest.approx(40.0, rel=0.05)
    assert side.slope_lo < 40.0 < side.slope_hi
    assert amb.slope == pytest.approx(0.5, abs=0.5)
    assert side.n == 8 and side.sizes == 4
    assert fits[("sidecar", "load", "cpu_cores")].slope == pytest.approx(0.01, rel=0.05)


def test_write_scaling_makes_table_and_figure(tmp_path: Path) -> None:
    d = _sweep(tmp_path)
    paths = write_scaling(d)
    assert {p.name for p in paths} == {"scaling.md", "scaling.png"}
    md = (d / "scaling.md").read_text()
    assert "| sidecar | idle | pss_mib (MiB) |" in md
    assert (d / "scaling.png").stat().st_size > 1000


def test_one_size_gives_no_fit_and_says_so(tmp_path: Path) -> None:
    d = _sweep(tmp_path, sizes=(4,))
    write_scaling(d)
    assert "No fit" in (d / "scaling.md").read_text()
