"""Does the harness's latency agree with an independent client, and does it repeat?
(a benchmark, not a test)

1. Agreement. `meshbench calibrate -s quick --connections 1,4 --repetitions R` (--runs times,
   default 1): every mode at 200 and 500 rps with Locust (latency timed in the kernel at its
   sockets, the headline; and Locust's own timing), then mb-refclient, the independent C
   client, in the same client pod at the same rate, connections and arrival model, R
   interleaved repetitions. Per mode, level and connection count: p50 overhead over
   baseline (median of the paired repetitions) from each, and the ratio harness /
   reference. Goal: every mode within 15 % and the same order of modes.
2. Repeatability. --bench-runs `make bench`-equivalent runs in a row (`meshbench run -s
   quick`), each timed, with its verdicts counted: per mode and level, each run's p50
   overhead against the median of the runs. Goal: within 10 %; make bench in ~5 minutes.

    .venv/bin/python benchmarks/bench_latency.py [--runs 1] [--repetitions 3] [--bench-runs 3]
    .venv/bin/python benchmarks/bench_latency.py --calibrated DIR... --benched DIR...
        (summarise runs made earlier with `meshbench calibrate` / `meshbench run -s quick`,
        e.g. one at a time on a shared machine; wall times then come from their manifests)

Writes benchmarks/results/latency.json (after every step, so a stopped benchmark keeps what it
measured). Needs root and BCC; ~35 minutes with the defaults. Waits for the local backend's
lock; tears everything down after each run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = Path(__file__).resolve().parent / "results" / "latency.json"
sys.path.insert(0, str(ROOT))

from analysis.latency import AGREEMENT_TOLERANCE  # noqa: E402
from bench.meta import cpu_model  # noqa: E402

REPEAT_TOLERANCE = 0.10


def meshbench(*args: str, results: Path) -> tuple[Path, float]:
    """Run the CLI; return the directory it printed last and its wall time."""
    t0 = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "bench", *args, "--results", str(results)],
                          cwd=ROOT, capture_output=True, text=True)
    wall = time.monotonic() - t0
    sys.stderr.write(done.stderr[-3000:])
    if done.returncode not in (0, 3):  # 3: completed with failed cells (on record)
        raise SystemExit(f"meshbench {' '.join(args)} exited {done.returncode}")
    return Path(done.stdout.strip().splitlines()[-1]), wall


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=1, help="calibrate runs")
    ap.add_argument("--repetitions", type=int, default=3, help="repetitions per calibrate run")
    ap.add_argument("--bench-runs", type=int, default=3, help="timed default runs in a row")
    ap.add_argument("--results", default="/tmp/meshbench-bench-latency")
    ap.add_argument("--calibrated", nargs="*", default=[], help="calibrate dirs made earlier")
    ap.add_argument("--benched", nargs="*", default=[], help="quick run dirs made earlier")
    a = ap.parse_args()
    results = Path(a.results)
    if a.calibrated or a.benched:
        a.runs, a.bench_runs = 0, 0
    record: dict[str, Any] = {
        "machine": {"cpu_model": cpu_model(), "cpus": os.cpu_count(),
                    "kernel": os.uname().release, "loadavg_at_start": loadavg()},
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "goals": {"agreement": f"harness p50 overhead within {AGREEMENT_TOLERANCE:.0%} of the "
                               "reference, same order of modes",
                  "repeatability": f"per-run p50 overhead within {REPEAT_TOLERANCE:.0%} of "
                                   "the median of the runs",
                  "default_run": "make bench in about 5 minutes with reachable verdicts"},
        "calibrate": [],
    }
    for i in range(a.runs):
        out, wall = meshbench("calibrate", "-s", "quick", "--connections", "1,4",
                              "--repetitions", str(a.repetitions), results=results)
        cal = json.loads((out / "calibrate.json").read_text())
        record["calibrate"].append({"dir": str(out), "wall_s": round(wall, 1),
                                    "loadavg_after": loadavg(), "runs": cal["runs"]})
        print(f"calibrate {i + 1}/{a.runs}: {wall:.0f} s", file=sys.stderr)
        OUT.write_text(json.dumps(record, indent=1))
    for d in map(Path, a.calibrated):
        cal = json.loads((d / "calibrate.json").read_text())
        record["calibrate"].append({"dir": str(d), "wall_s": _manifest_wall(d / "c4"),
                                    "runs": [recompute(d, r) for r in cal["runs"]]})
    record["agreement"] = summarize_agreement(record["calibrate"])
    record["default_runs"] = [
        {"dir": str(d), "wall_s": _manifest_wall(d), "verdicts":
         count_verdicts((d / "report.md").read_text()), "overheads_us": run_overheads(d)}
        for d in map(Path, a.benched)]
    if record["default_runs"]:
        record["repeatability"] = repeatability(record["default_runs"])
    for i in range(a.bench_runs):
        out, wall = meshbench("run", "-s", "quick", results=results)
        report = (out / "report.md").read_text()
        record["default_runs"].append({
            "dir": str(out), "wall_s": round(wall, 1), "loadavg_after": loadavg(),
            "verdicts": count_verdicts(report), "overheads_us": run_overheads(out)})
        record["repeatability"] = repeatability(record["default_runs"])
        print(f"default run {i + 1}/{a.bench_runs}: {wall:.0f} s", file=sys.stderr)
        OUT.write_text(json.dumps(record, indent=1))
    record["machine"]["loadavg_at_end"] = loadavg()
    OUT.write_text(json.dumps(record, indent=1))
    print(json.dumps({k: record.get(k) for k in ("agreement", "repeatability")}, indent=1))
    return 0


def recompute(cal_dir: Path, entry: dict[str, Any]) -> dict[str, Any]:
    """A calibrate run's agreement rows computed again from its run directory with this
    analysis code (e.g. saturated cells marked, which older records lack)."""
    from analysis.latency import agreement, same_order
    from analysis.rundata import load_run

    rows = agreement(load_run(cal_dir / entry["dir"]))
    order = same_order(rows, "harness_us")
    return {**entry, "rows": rows, "same_order": {str(k): v for k, v in order.items()}}


def _manifest_wall(run_dir: Path) -> float | None:
    """The run's own start-to-end time from its manifest (s), when recorded."""
    try:
        m = json.loads((run_dir / "manifest.json").read_text())
        return round(float(m["ended"]) - float(m["started"]), 1)
    except (OSError, KeyError, TypeError, ValueError):
        return None


def run_overheads(run_dir: Path) -> dict[str, float]:
    """Per "mode, level": the run's p50 overhead over baseline (median of its pairs)."""
    from analysis.latency import overhead_medians
    from analysis.rundata import load_run

    run = load_run(run_dir)
    return {f"{m}, {lv} rps": round(v, 1)
            for (m, lv), (v, _n) in overhead_medians(run.latency).items()}


def summarize_agreement(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per connection count, mode and level: the ratios over the runs, and the goal."""
    by: dict[str, dict[str, list[float]]] = {}
    order: dict[str, list[bool]] = {}
    saturated: set[str] = set()
    for run in runs:
        for cal in run["runs"]:
            c = str(cal["connections"])
            for r in cal["rows"]:
                key = f"{c} conn, {r['mode']}, {r['level']} rps"
                if r.get("saturated"):
                    saturated.add(key)
                d = by.setdefault(key, {"ratio": [], "locust_ratio": [], "reference_us": [],
                                        "harness_us": [], "reference_kernel_us": []})
                for k in d:
                    if r.get(k) is not None:
                        d[k].append(round(r[k], 3))
            for lv, ok in cal["same_order"].items():
                order.setdefault(f"{c} conn, {lv} rps", []).append(ok)
    out = {}
    for key, d in by.items():
        ratios = d["ratio"]
        out[key] = {**d, "ratio_median": statistics.median(ratios) if ratios else None,
                    "saturated": key in saturated,
                    "all_within": (None if key in saturated else bool(ratios) and all(
                        abs(x - 1) <= AGREEMENT_TOLERANCE for x in ratios))}
    return {"cells": out, "same_order": order,
            "met": all(v["all_within"] is not False for v in out.values())
            and all(all(v) for v in order.values())}


def repeatability(runs: list[dict[str, Any]]) -> dict[str, Any]:
    per: dict[str, list[float]] = {}
    for run in runs:
        for key, v in run["overheads_us"].items():
            per.setdefault(key, []).append(v)
    out = {}
    for key, vals in per.items():
        med = statistics.median(vals)
        dev = [abs(v - med) / med for v in vals] if med > 0 else []
        out[key] = {"overheads_us": [round(v, 1) for v in vals], "median_us": round(med, 1),
                    "max_deviation": round(max(dev), 3) if dev else None,
                    "within": bool(dev) and max(dev) <= REPEAT_TOLERANCE}
    return {"runs": len(runs), "cells": out,
            "met": len(runs) >= 3 and all(v["within"] for v in out.values())}


def count_verdicts(report: str) -> dict[str, int]:
    claims = report.split("## Claims", 1)[-1].split("\n## ", 1)[0]
    words = ("not supported", "supported", "inconclusive", "not measured")
    counts = dict.fromkeys(words, 0)
    for line in claims.splitlines():
        if not line.startswith("|"):
            continue
        cells = [c.strip().strip("*").lower() for c in line.split("|")]
        for c in cells:
            hit = next((w for w in words if c.startswith(w)), None)
            if hit:
                counts[hit] += 1
                break
    return counts


if __name__ == "__main__":
    raise SystemExit(main())
