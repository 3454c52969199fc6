"""meshbench found its own files wherever it is installed (bench.paths): `pip install .`
into a fresh venv runs `meshbench plan` from another directory, as a checkout does."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench import paths

ROOT = Path(__file__).resolve().parents[2]


def test_a_workloads_directory_of_ones_own_is_used(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "scenarios").mkdir()
    monkeypatch.setenv(paths.ENV, str(tmp_path))
    assert paths.workloads() == tmp_path
    monkeypatch.setenv(paths.ENV, str(tmp_path / "missing"))  # no scenarios/: the checkout's
    assert paths.workloads() == ROOT / "workloads"
    assert paths.results_root() == ROOT / "results"  # a checkout keeps its results/


@pytest.mark.slow
def test_pip_install_into_a_fresh_venv_runs_plan(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", paths.ENV)}
    install = subprocess.run([str(venv / "bin" / "pip"), "install", "-q",
                              "--disable-pip-version-check", str(ROOT)],
                             capture_output=True, text=True, timeout=900, env=env,
                             cwd=tmp_path)
    assert install.returncode == 0, install.stderr[-2000:]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    plan = subprocess.run([str(venv / "bin" / "meshbench"), "plan", "-s", "quick"],
                          capture_output=True, text=True, timeout=120, env=env, cwd=elsewhere)
    assert plan.returncode == 0, plan.stderr
    assert plan.stdout.startswith("# scenario quick (") and "ip netns add mb-node0" in plan.stdout
    where = subprocess.run([str(venv / "bin" / "python"), "-c",
                            "import bench.paths as p; print(p.workloads()); "
                            "print(p.results_root())"],
                           capture_output=True, text=True, timeout=60, env=env, cwd=elsewhere)
    lines = where.stdout.split()
    assert lines == [str(venv / "share" / "meshbench" / "workloads"),
                     str(elsewhere / "results")]
