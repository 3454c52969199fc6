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
