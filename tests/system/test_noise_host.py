"""The machine's noise on this host: the measured CPU of other processes against a hog's
own cgroup count, and a whole run under a hog: its cell flagged, run again, every attempt
kept, set aside by the analysis, and the report's first screen says so."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from analysis.rundata import load_run
from bench.load.hog import PREFIX, CpuHog
from bench.probes import noise

pytestmark = [pytest.mark.root]
REPO = Path(__file__).resolve().parents[2]


def _no_hog_cgroups() -> list[str]:
    return [d for sub in ("cpu", "cpuacct") if (Path("/sys/fs/cgroup") / sub).is_dir()
            for d in os.listdir(Path("/sys/fs/cgroup") / sub) if d.startswith(PREFIX)]


def test_other_processes_cpu_matches_the_hogs_cgroup() -> None:
    hog = CpuHog(0.3, 60).start()
    try:
        time.sleep(0.5)  # its busy processes are up
        a = noise.mark()
        time.sleep(4.0)
        b = noise.mark()
    finally:
        report = hog.stop()
    got = noise.summarize(a, b, own={os.getpid()})
    assert not isinstance(got, str), got
    # the hog's quota is 0.3 x 2 CPUs; its cgroup counted its real use over its whole life
    # (stop() waits for its report). Tolerance: 15 % (start-up, and the CFS quota is
    # enforced per 100 ms period)
    assert report["usage_s"] > 0
    assert got.foreign_cores == pytest.approx(report["cores"], rel=0.15)
    assert got.foreign_share == pytest.approx(got.foreign_cores / got.ncpu)
    assert got.contaminated(0.10) and "python" in got.reason(0.10)
    assert _no_hog_cgroups() == []


def test_a_run_under_a_hog_flags_reruns_and_sets_the_cell_aside(tmp_path: Path) -> None:
    raw = yaml.safe_load((REPO / "workloads" / "scenarios" / "smoke.yaml").read_text())
    raw.update(name="noise-hog", modes=["baseline"], experiments=[])
    raw["timing"].update(warmup_s=1, window_s=3, rerun_noisy=1, noise_threshold=0.10)
    spec = tmp_path / "noise-hog.yaml"
    spec.write_text(yaml.safe_dump(raw))
    with CpuHog(0.5, 300):  # bounded: it ends by itself after 300 s
        done = subprocess.run([sys.executable, "-m", "bench", "run", "-s", str(spec),
                               "--results", str(tmp_path / "results")],
                              cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    run_dir = Path(done.stdout.strip().splitlines()[-1])
    m = json.loads((run_dir / "manifest.json").read_text())
    [cell] = m["cells"]
    assert cell["status"] == "ok" and cell["attempt"] == 2
    assert cell["noisy"] and cell["attempts"][0]["noisy"]  # both attempts stolen from
    assert cell["noise"]["foreign_share"] > 0.10
    assert m["noise"]["contaminated"] == 1 and m["noise"]["rerun"] == 1
    assert "contaminated" in done.stderr and "attempt 2 of 2" in done.stderr
    assert sorted(p.name.split(".jsonl")[0] for p in (run_dir / "hdr").iterdir()) == [
        "r1-baseline-100rps", "r1-baseline-100rps-a2"]
    run = load_run(run_dir)
    assert set(run.set_aside) == {("baseline", 100, 1)}
    assert run.latency.empty  # its only cell is set aside
    assert not load_run(run_dir, include_noisy=True).latency.empty
    report = (run_dir / "report.md").read_text()
    assert "Most cells were contaminated" in report.split("## ")[0]  # the first screen
    assert "## The machine's noise" in report
    assert _no_hog_cgroups() == []
