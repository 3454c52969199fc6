"""A small pod-count sweep end to end: runs per size, then the fit and its figure."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.backends.local import netns

pytestmark = [pytest.mark.root, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]

SCENARIO = """
name: tiny-sweep
modes: [sidecar, ambient]
topology: {nodes: 2, services: 1, pods_per_service: 1}
load: {levels: [100], connections: 2}
timing: {warmup_s: 1, window_s: 2}
repetitions: 1
probes:
  resources: {interval_s: 0.5, pss_interval_s: 1.0}
  hops: {enabled: false}
experiments: [new_service]
sweep: {pods_per_service: [1, 2, 4]}
"""


def test_sweep_fits_sidecar_growing_faster_than_ambient(tmp_path: Path) -> None:
    scen = tmp_path / "tiny.yaml"
    scen.write_text(SCENARIO)
    proc = subprocess.run([sys.executable, "-m", "bench", "sweep", "-s", str(scen),
                           "--results", str(tmp_path / "res")], cwd=REPO, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    sweep_dir = Path(proc.stdout.strip().splitlines()[-1])
    record = json.loads((sweep_dir / "sweep.json").read_text())
    assert [r["pods_per_service"] for r in record["runs"]] == [1, 2, 4]
    md = (sweep_dir / "scaling.md").read_text()
    assert "| sidecar | idle | pss_mib (MiB) |" in md
    assert (sweep_dir / "scaling.png").exists()
    import pandas as pd

    pts = pd.read_csv(sweep_dir / "scaling_points.csv")
    idle = pts[(pts.phase == "idle") & (pts.metric == "rss_mib")]
    side = idle[idle["mode"] == "sidecar"].sort_values("pods")["value"].tolist()
    amb = idle[idle["mode"] == "ambient"].sort_values("pods")["value"].tolist()
    # a sidecar per pod: from 2 to 5 pods adds three Envoys; ambient keeps two ztunnels
    assert side[-1] - side[0] > 2 * (amb[-1] - amb[0]) + 50
    # fan-out: every sidecar takes a new service, so the count grows with pods
    push = pts[(pts.phase == "push:new_service") & (pts.metric == "proxies_updated")]
    side_push = push[push["mode"] == "sidecar"].sort_values("pods")["value"].tolist()
    amb_push = push[push["mode"] == "ambient"].sort_values("pods")["value"].tolist()
    assert side_push == [2, 3, 5] and amb_push == [2, 2, 2]  # client + server sidecars
    assert "| new_service | sidecar | 2, 3, 5 |" in md  # the push table, counts per size
    assert netns.list_ours() == []
