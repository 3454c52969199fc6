"""What a run's manifest records about versions, and what the analysis refuses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import bench
from bench import meta
from bench.errors import UserError
from bench.store import SCHEMA_VERSION


def test_the_harness_version_is_the_package_version_and_the_git_commit() -> None:
    v = meta.versions("1.0")["harness"]
    sha = meta.git_state()["sha"]
    assert v.startswith(bench.__version__ + "+")
    if sha != "unknown":
        assert v.split("+g", 1)[1].split(".")[0] == sha[:12]


def test_analysis_refuses_an_unknown_schema_version_in_one_line(tmp_path: Path) -> None:
    from analysis.rundata import load_run

    run = tmp_path / "run"
    run.mkdir()
    (run / "manifest.json").write_text(json.dumps({"schema_version": SCHEMA_VERSION + 1,
                                                   "run_id": "x"}))
    with pytest.raises(UserError) as e:
        load_run(run)
    line = e.value.one_line()
    assert "\n" not in line and f"schema_version {SCHEMA_VERSION + 1}" in line
    assert f"({SCHEMA_VERSION})" in line


V1_LOCAL = Path(__file__).resolve().parents[1] / "fixtures" / "manifest_v1_local.json"


def test_a_v1_run_written_by_the_code_before_v2_is_read_migrated(tmp_path: Path) -> None:
    """The manifest of a real `make bench` run of 4828d66 (schema 1, the format before
    "emulated"), read through the migrations by the store and by the analysis."""
    from analysis.rundata import load_run
    from bench.store import RunStore, migrate, read_manifest

    raw = json.loads(V1_LOCAL.read_text())
    assert raw["schema_version"] == 1 and "emulated" not in raw and raw["backend"] == "local"
    run = tmp_path / raw["run_id"]
    run.mkdir()
    (run / "manifest.json").write_text(V1_LOCAL.read_text())
    m = read_manifest(run)
    assert m["schema_version"] == SCHEMA_VERSION == 2 and m["emulated"] is True
    assert {k: v for k, v in m.items() if k not in ("schema_version", "emulated")} == {
        k: v for k, v in raw.items() if k != "schema_version"}  # nothing else touched
    assert load_run(run).emulated
    # a kube run of schema 1 recorded no simplifications: not emulated
    assert migrate({**raw, "simplifications": [], "backend": "kind"})["emulated"] is False
    # reopened to add rows (resume), it is written back in the current format
    RunStore.reopen(run).save_manifest()
    assert json.loads((run / "manifest.json").read_text())["schema_version"] == SCHEMA_VERSION
