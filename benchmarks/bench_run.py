"""How long `make bench` takes, and where the time goes (a benchmark, not a test).

Runs `meshbench run -s quick` (what `make bench` runs once set up) --runs times in a row, or
summarises runs made earlier (--from DIR...), and records per run: the wall time measured
here around the command (from the process start to the report written), the run's own
span from its manifest (started -> ended, before the report), and the seconds per phase
summed over every (repetition, mode) from the manifest's `phases` (provisioning, idle with
the probes' attach, warm-up, window, collect, experiment, teardown), with the share of the
window (the measured time itself) in the whole. Goal: make bench <= 300 s on this machine.

    .venv/bin/python benchmarks/bench_run.py [--runs 1] [--label TEXT]
    .venv/bin/python benchmarks/bench_run.py --from results/<run>... [--wall-s S...] [--label TEXT]

Appends to benchmarks/results/run.json (earlier entries are kept, each with the git commit
it measured, so a regression shows). Needs root and BCC; waits for the local backend's lock.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = Path(__file__).resolve().parent / "results" / "run.json"
sys.path.insert(0, str(ROOT))

from bench.meta import cpu_model, git_state  # noqa: E402
from benchmarks.bench_latency import meshbench  # noqa: E402

GOAL_S = 300.0


def run_quick(results: Path) -> tuple[Path, float]:
    """`meshbench run -s quick` (with its report), timed from here; the run directory."""
    return meshbench("run", "-s", "quick", "--wait-lock", "3600", results=results)


def summarize(run_dir: Path, wall_s: float | None) -> dict[str, Any]:
    m = json.loads((run_dir / "manifest.json").read_text())
    totals: dict[str, float] = {}
    for per in (m.get("phases") or {}).values():
        for phase, sec in per.items():
            totals[phase] = round(totals.get(phase, 0.0) + float(sec), 1)
    span = round(float(m["ended"]) - float(m["started"]), 1)
    phased = sum(totals.values())
    return {
        "dir": str(run_dir), "git": m.get("git", {}).get("sha", "")[:12],
        "wall_s": round(wall_s, 1) if wall_s is not None else None,
        "run_span_s": span,
        "phases_s": dict(sorted(totals.items(), key=lambda kv: -kv[1])),
        "phased_share_of_span": round(phased / span, 3) if span else None,
        "window_share": round(totals.get("window", 0.0) / span, 3) if span else None,
        "units": len(m.get("phases") or {}),
        "cells": len(m.get("cells") or []),
        "exit_status": m.get("exit_status"),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--from", dest="dirs", nargs="+", type=Path, metavar="DIR")
    ap.add_argument("--wall-s", nargs="+", type=float, default=[],
                    help="with --from: each run's wall time as timed around its command")
    ap.add_argument("--label", default="", help="what this measurement is (kept in the file)")
    ap.add_argument("--results", type=Path, default=Path("/tmp/mb-bench-run"))
    a = ap.parse_args()
    record = json.loads(OUT.read_text()) if OUT.exists() else {
        "what": "make bench (meshbench run -s quick) wall time split by phase",
        "goal_s": GOAL_S, "entries": []}
    entry: dict[str, Any] = {"label": a.label, "machine": cpu_model(),
                             "measured": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                             "code": git_state().get("sha", "")[:12], "runs": []}
    if a.dirs:
        walls_given = [*a.wall_s, *[None] * len(a.dirs)]
        entry["runs"] = [summarize(d, w) for d, w in zip(a.dirs, walls_given)]
    else:
        for i in range(a.runs):
            run_dir, wall = run_quick(a.results)
            entry["runs"].append(summarize(run_dir, wall))
            print(f"run {i + 1}/{a.runs}: {wall:.0f} s", file=sys.stderr)
    walls = [r["wall_s"] or r["run_span_s"] for r in entry["runs"]]
    entry["goal_met"] = bool(walls) and max(walls) <= GOAL_S
    record["entries"].append(entry)
    OUT.write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps(entry, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
