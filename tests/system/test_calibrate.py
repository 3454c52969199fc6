"""`meshbench calibrate` end to end on all four modes: the reference client runs in the
client pod after each cell and the agreement table comes out with every mode's figures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bench.backends.local import netns

pytestmark = [pytest.mark.root, pytest.mark.bcc, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]


def test_calibrate_runs_on_all_four_modes(tmp_path: Path) -> None:
    # smoke, with a contaminated cell run again (up to twice): a busy CI machine should not
    # take the agreement away, and when it does, the record must say so
    raw = yaml.safe_load((REPO / "workloads" / "scenarios" / "smoke.yaml").read_text())
    raw["timing"]["rerun_noisy"] = 2
    spec = tmp_path / "smoke-rerun.yaml"
    spec.write_text(yaml.safe_dump(raw))
    done = subprocess.run(
        [sys.executable, "-m", "bench", "calibrate", "-s", str(spec), "--connections", "2",
         "--warmup", "1", "--window", "3", "--results", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    out_dir = Path(done.stdout.strip().splitlines()[-1])
    record = json.loads((out_dir / "calibrate.json").read_text())
    [run] = record["runs"]
    assert run["connections"] == 2
    rows = {r["mode"]: r for r in run["rows"]}
    aside = run["set_aside"]
    # a mode without an agreement row is one whose cell (or baseline's) was set aside as
    # contaminated by the machine's noise, on record with why
    missing = {"sidecar", "ambient", "waypoint"} - set(rows)
    assert not missing or aside, (missing, run)
    assert all("taken by others" in why for why in aside.values())
    if not rows:
        pytest.skip(f"every cell contaminated by the machine's noise here: {aside}")
    for mode, r in rows.items():
        # every figure measured: the reference's, the headline (kernel-timed), Locust's,
        # and the kernel timing of the reference client's own requests
        for key in ("reference_us", "harness_us", "locust_us", "reference_kernel_us"):
            assert r[key] is not None, (mode, key)
        assert r["reference_us"] > 0 and r["harness_us"] > 0, (mode, r)
        assert r["ratio"] == pytest.approx(r["harness_us"] / r["reference_us"])
    assert "p50 overhead over baseline" in done.stdout
    report = (out_dir / "c2" / "report.md").read_text()
    assert "## Agreement with the independent reference client" in report
    manifest = json.loads((out_dir / "c2" / "manifest.json").read_text())
    assert manifest["scenario"]["load"]["reference"] is True
    assert manifest["probes"]["kernel_latency"]["status"] == "ok"
    assert netns.list_ours() == [], "calibrate left namespaces behind"
