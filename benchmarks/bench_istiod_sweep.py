"""The real-istiod fan-out sweep against its goal (a benchmark, not a test): 10,000 pods per
mode, every change measured, the whole sweep within 30 minutes and the machine's memory.

Runs `meshbench istiod sweep -s fanout-istiod` timed from here, or summarises a sweep made
earlier (--from RUN_DIR [--wall-s S]), and records per (mode, pods): status (and why not),
wall time, proxies, what the initial connect cost istiod (CPU-s, peak RSS) and the simulated
proxies, the peak memory of the control plane's cgroup, and the largest size each mode
reached.

    .venv/bin/python benchmarks/bench_istiod_sweep.py [--sizes 10,100,1000,10000]
    .venv/bin/python benchmarks/bench_istiod_sweep.py --from results/<id>-fanout-istiod [--wall-s S]

Appends to benchmarks/results/istiod-sweep.json, with the git commit it measured.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = Path(__file__).resolve().parent / "results" / "istiod-sweep.json"
sys.path.insert(0, str(ROOT))

from bench.meta import cpu_model, git_state  # noqa: E402

GOAL_S = 1800.0


def summarise(run_dir: Path, wall_s: float | None) -> dict[str, Any]:
    m = json.loads((run_dir / "manifest.json").read_text())
    points = []
    for p in m.get("points", []):
        c = (p.get("summary") or {}).get("connect") or {}
        points.append({"mode": p["mode"], "pods": p["pods"], "proxies": p.get("proxies"),
                       "status": p["status"], "reason": p.get("reason", ""),
                       "wall_s": (p.get("timings") or {}).get("total_s"),
                       "write_cluster_s": (p.get("timings") or {}).get("write_cluster_s"),
                       "connect": c, "memory": (p.get("summary") or {}).get("memory")})
    reached = {}
    for p in points:
        if p["status"] == "ok":
            reached[p["mode"]] = max(reached.get(p["mode"], 0), p["pods"])
    total = sum(p["wall_s"] or 0 for p in points)
    return {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "run": run_dir.name,
            "git": git_state(), "cpu": cpu_model(), "nproc": os.cpu_count(),
            "istiod": m.get("istiod"), "wall_s_measured_outside": wall_s,
            "points_wall_s_sum": round(total, 1), "goal_s": GOAL_S,
            "largest_size_reached": reached, "points": points}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--from", dest="from_dir", help="summarise this sweep instead of running")
    ap.add_argument("--wall-s", type=float, help="with --from: its wall time, timed outside")
    ap.add_argument("--sizes", default="", help="sizes to run (default: the sweep file's)")
    args = ap.parse_args()
    if args.from_dir:
        entry = summarise(Path(args.from_dir), args.wall_s)
    else:
        cmd = [sys.executable, "-m", "bench", "istiod", "sweep", "-s", "fanout-istiod"]
        cmd += ["--sizes", args.sizes] if args.sizes else []
        t0 = time.monotonic()
        out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        wall = time.monotonic() - t0
        run_dir = Path(out.stdout.strip().splitlines()[-1])
        entry = summarise(run_dir, round(wall, 1))
    history = json.loads(OUT.read_text()) if OUT.exists() else []
    history.append(entry)
    OUT.write_text(json.dumps(history, indent=1) + "\n")
    print(json.dumps({k: entry[k] for k in ("run", "largest_size_reached", "points_wall_s_sum",
                                            "wall_s_measured_outside")}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
