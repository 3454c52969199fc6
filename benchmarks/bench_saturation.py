"""Does the saturation flag agree with the kernel's view of when requests left?
(a benchmark, not a test)

The flag (bench.load.hdr.is_saturated) is raised from Locust's own figures: achieved rate,
CPU, and the median send lag its recorder measures against each user's schedule. Held
against a view that does not come from Locust: the send times of the same requests, timed in
the kernel at Locust's sockets (bench/probes/client_latency.py), as `gap_cv` (std/mean of
the gaps between consecutive sends) and the achieved rate from the kernel's count. The
agreement is counted on the rate: a cell is off its schedule by the kernel when its
requests came at under 95 % or over 105 % of the target. gap_cv is recorded but does not
separate: a saturated single user sends evenly, back to back, and gaps of 1 ms at 1000 rps
vary by the sender's own jitter.

Runs `meshbench run` on a scenario derived from quick (baseline and sidecar, levels
200/500/1000 rps, 2 repetitions of 5 s windows, no experiments, no hop probe) with 1 and
with 4 connections, and records per cell: the flag, Locust's send-lag p50 and a user's
period, the kernel's gap_cv and achieved rps; then the agreement.

    .venv/bin/python benchmarks/bench_saturation.py [--connections 1 4]
    .venv/bin/python benchmarks/bench_saturation.py --from DIR...

Writes benchmarks/results/saturation.json. Needs root and BCC; ~6 minutes; waits for the
local backend's lock.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
OUT = Path(__file__).resolve().parent / "results" / "saturation.json"
sys.path.insert(0, str(ROOT))

from analysis.rundata import load_run  # noqa: E402
from bench.meta import cpu_model  # noqa: E402
from benchmarks.bench_latency import meshbench  # noqa: E402

LEVELS = [200, 500, 1000]


def scenario(connections: int, path: Path) -> Path:
    raw = yaml.safe_load((ROOT / "workloads" / "scenarios" / "quick.yaml").read_text())
    raw.update(name=f"saturation-c{connections}", modes=["baseline", "sidecar"],
               repetitions=2, experiments=[])
    raw["load"].update(levels=LEVELS, connections=connections)
    raw["probes"]["hops"] = {"enabled": False}
    path.write_text(yaml.safe_dump(raw))
    return path


def cells(run_dir: Path) -> list[dict[str, Any]]:
    run = load_run(run_dir)
    df = run.table
    conns = int(run.scenario["load"]["connections"])
    out = []
    for (mode, level, rep), g in df.groupby(["mode", "level", "repetition"]):
        def val(source: str, metric: str, g: Any = g) -> float | None:
            v = g[(g["source"] == source) & (g["metric"] == metric)]["value"]
            return float(v.iloc[0]) if len(v) else None

        if int(level) == 0:  # idle rows
            continue
        level = int(level)
        out.append({
            "cell": f"r{rep}-{mode}-{level}rps", "mode": str(mode), "level": level,
            "connections": conns,
            "saturated": val("load", "saturated"),
            "locust_send_lag_p50_us": val("load_intended", "send_lag_p50"),
            "user_period_us": 1e6 * conns / level,
            "locust_achieved_rps": val("load", "achieved_rps"),
            "loadgen_cpu_percent": val("load", "loadgen_cpu"),
            "kernel_gap_cv": val("load_kernel", "gap_cv"),
            "kernel_achieved_rps": val("load_kernel", "achieved_rps"),
        })
    return out


def split(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Agreement of the flag with the kernel's count: a cell is off its schedule by the
    kernel when the requests seen at Locust's sockets came at under 95 % or over 105 % of
    the target rate; and the kernel's gap_cv of flagged and unflagged cells, as shown."""
    seen = [r for r in rows if r["kernel_achieved_rps"] is not None and r["saturated"] is not None]
    off = [r for r in seen if not 0.95 <= r["kernel_achieved_rps"] / r["level"] <= 1.05]
    agree = sum(1 for r in seen if bool(r["saturated"]) == (r in off))
    out: dict[str, Any] = {"cells": len(seen), "flagged": sum(1 for r in seen if r["saturated"]),
                           "kernel_off_schedule": len(off), "agree": agree,
                           "disagree": [r["cell"] + f" c{r['connections']}" for r in seen
                                        if bool(r["saturated"]) != (r in off)]}
    for name, group in (("flagged", [r for r in seen if r["saturated"]]),
                        ("unflagged", [r for r in seen if not r["saturated"]])):
        cvs = [r["kernel_gap_cv"] for r in group if r["kernel_gap_cv"] is not None]
        if cvs:
            out[f"{name}_gap_cv"] = {"min": min(cvs), "median": statistics.median(cvs),
                                     "max": max(cvs)}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--connections", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--from", dest="dirs", nargs="+", type=Path, metavar="DIR")
    ap.add_argument("--results", type=Path, default=Path("/tmp/mb-bench-saturation"))
    a = ap.parse_args()
    dirs = list(a.dirs or [])
    if not dirs:
        with tempfile.TemporaryDirectory() as tmp:
            for c in a.connections:
                d, wall = meshbench("run", "-s", str(scenario(c, Path(tmp) / f"sat-{c}.yaml")),
                                    "--no-report", "--wait-lock", "3600", results=a.results)
                print(f"{c} connections: {wall:.0f} s -> {d}", file=sys.stderr)
                dirs.append(d)
    rows = [r for d in dirs for r in cells(d)]
    record = {"what": __doc__.split("\n\n")[0], "machine": cpu_model(),
              "measured": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "runs": [str(d) for d in dirs], "cells": rows, "split": split(rows)}
    OUT.write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps(record["split"], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
