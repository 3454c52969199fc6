from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.store import SCHEMA_VERSION, Cell, RunStore, Sample, load_table


def _store(tmp_path: Path) -> RunStore:
    return RunStore.create(tmp_path, "run-1", {"scenario": {"name": "t"}})


def test_rows_survive_without_finalize_and_torn_last_line(tmp_path: Path) -> None:
    st = _store(tmp_path)
    cell = Cell(1, "sidecar", 200)
    st.append([Sample.for_cell(cell, source="load", metric="latency_p50", unit="us",
                               value=812.5, entity="client")])
    # a crash mid-write leaves half a line: everything before it must still load
    with open(st.dir / "samples.jsonl", "a") as f:
        f.write('{"run_id": "run-1", "mo')
    df = load_table(st.dir)
    assert len(df) == 1
    row = df.iloc[0]
    assert (row["mode"], row["level"], row["repetition"]) == ("sidecar", 200, 1)
    assert row["value"] == 812.5 and row["unit"] == "us"


def test_finalize_writes_parquet_with_tidy_columns(tmp_path: Path) -> None:
    st = _store(tmp_path)
    cell = Cell(2, "ambient", 500)
    st.append([
        Sample.for_cell(cell, source="load", metric="latency_p99", unit="us", value=1234.0,
                        entity="client", labels={"k": "v"}),
        Sample(source="resources", metric="pss_mib", unit="MiB", value=22.0, entity="ztunnel"),
    ])
    out = st.finalize()
    assert out.name == "samples.parquet"
    df = load_table(st.dir)
    assert list(df.columns) == ["run_id", "mode", "level", "repetition", "source", "metric",
                                "unit", "ts", "value", "entity", "labels"]
    assert json.loads(df.iloc[0]["labels"]) == {"k": "v"}
    assert set(df["run_id"]) == {"run-1"}
    assert RunStore.open(st.dir).manifest["finalized"] is True


def test_non_finite_values_are_refused(tmp_path: Path) -> None:
    st = _store(tmp_path)
    with pytest.raises(ValueError, match="non-finite"):
        st.append([Sample(source="x", metric="m", unit="us", value=float("nan"))])


def test_manifest_updates_are_atomic_and_persist(tmp_path: Path) -> None:
    st = _store(tmp_path)
    st.update(exit_status="ok", cells=[{"cell": "r1-baseline-200rps", "status": "ok"}])
    m = json.loads((st.dir / "manifest.json").read_text())
    assert m["schema_version"] == SCHEMA_VERSION and m["exit_status"] == "ok"
    assert not list(st.dir.glob(".tmp-*"))


def test_cell_ids_are_unique_and_ordered() -> None:
    cells = sorted([Cell(2, "sidecar", 500), Cell(1, "waypoint", 200), Cell(1, "ambient", 200)])
    assert [c.id for c in cells] == ["r1-ambient-200rps", "r1-waypoint-200rps",
                                     "r2-sidecar-500rps"]
