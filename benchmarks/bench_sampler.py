"""How much CPU does the resource sampler cost? (a benchmark script, not a test)

Starts 200 idle /bin/sleep children, runs the real sampler process over them at 10 Hz
for 10 s, without PSS and with PSS at 1 Hz, and reports the sampler's own CPU as a
percentage of one core (from its own rows: CPU clock delta over monotonic time between
its first and last sweep, so interpreter start-up is excluded), its sweep durations and
gaps. Also times one sweep's worth of raw /proc reads against psutil's oneshot() in this
process, to back the choice of raw reads.

    .venv/bin/python benchmarks/bench_sampler.py [--children 200] [--seconds 10] [--repeat 3]

Writes benchmarks/results/sampler.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from bench.probes.processes import Target, write_targets
from bench.probes.resources import ResourceSampler, _Watched

OUT = Path(__file__).resolve().parent / "results" / "sampler.json"


def run_sampler(targets: Path, out: Path, seconds: float, pss_interval: float) -> dict[str, Any]:
    with ResourceSampler(targets, out, interval=0.1, pss_interval=pss_interval):
        time.sleep(seconds)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    own = [r for r in rows if r.get("role") == "sampler"]
    sweeps = sorted(r["sweep_s"] for r in own[1:])
    return {
        "cpu_pct_of_core": round(100 * (own[-1]["cpu_ns"] - own[0]["cpu_ns"]) / 1e9
                                 / (own[-1]["mono"] - own[0]["mono"]), 3),
        "sweeps": len(own),
        "sweep_ms_p50": round(1000 * statistics.median(sweeps), 3),
        "sweep_ms_max": round(1000 * sweeps[-1], 3),
        "gaps": sum("gap_s" in r for r in rows),
        "rows": len(rows),
        "pss_rows": sum("pss_bytes" in r for r in rows),
    }


def per_sweep_cost_ms(pids: list[int], sweeps: int = 20) -> dict[str, float]:
    """CPU ms per sweep over all pids: the sampler's raw reads vs psutil oneshot()."""
    watched = [_Watched(Target(pid, "app", str(pid))) for pid in pids]
    procs = [psutil.Process(pid) for pid in pids]
    c = time.process_time()
    for seq in range(sweeps):
        for w in watched:
            w.sample(f'"ts":0,"mono":0,"seq":{seq}', False)
    raw = (time.process_time() - c) / sweeps
    c = time.process_time()
    for _ in range(sweeps):
        for p in procs:
            with p.oneshot():
                p.cpu_times(), p.memory_info(), p.num_threads()
    ps = (time.process_time() - c) / sweeps
    c = time.process_time()
    for _ in range(max(1, sweeps // 4)):
        for w in watched:
            w.sample('"ts":0,"mono":0,"seq":0', True)
    raw_pss = (time.process_time() - c) / max(1, sweeps // 4)
    c = time.process_time()
    for _ in range(max(1, sweeps // 4)):
        for p in procs:
            p.memory_full_info()
    ps_full = (time.process_time() - c) / max(1, sweeps // 4)
    for w in watched:
        w.close()
    return {"raw_ms": round(raw * 1e3, 3), "psutil_oneshot_ms": round(ps * 1e3, 3),
            "raw_with_smaps_rollup_ms": round(raw_pss * 1e3, 3),
            "psutil_memory_full_info_ms": round(ps_full * 1e3, 3)}


def machine() -> dict[str, Any]:
    model = next((line.split(":", 1)[1].strip() for line in
                  Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), "")
    return {"cpu_model": model, "cpus": os.cpu_count(), "kernel": platform.release(),
            "python": platform.python_version(), "loadavg_at_start": os.getloadavg()}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--children", type=int, default=200)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    result: dict[str, Any] = {"machine": machine(), "children": args.children,
                              "interval_s": 0.1, "seconds": args.seconds}
    children: list[subprocess.Popen[bytes]] = []
    try:
        lifetime = str(int(2 * args.repeat * (args.seconds + 3) + 60))
        children = [subprocess.Popen(["/bin/sleep", lifetime]) for _ in range(args.children)]
        pids = [c.pid for c in children]
        with tempfile.TemporaryDirectory(prefix="mb-bench-sampler-") as d:
            targets = Path(d) / "targets.json"
            write_targets(targets, [Target(pid, "app", f"sleep/{i}") for i, pid in
                                    enumerate(pids)])
            for name, pss in (("no_pss", 0.0), ("pss_1hz", 1.0)):
                runs = [run_sampler(targets, Path(d) / f"{name}-{i}.jsonl", args.seconds, pss)
                        for i in range(args.repeat)]
                pct = [r["cpu_pct_of_core"] for r in runs]
                result[name] = {"cpu_pct_of_core_mean": round(statistics.mean(pct), 3),
                                "cpu_pct_of_core_stdev": round(statistics.pstdev(pct), 3),
                                "runs": runs}
                print(f"{name:8s} sampler CPU {statistics.mean(pct):.2f} % of one core "
                      f"(runs: {', '.join(f'{x:.2f}' for x in pct)}), sweep p50 "
                      f"{runs[0]['sweep_ms_p50']} ms, gaps {sum(r['gaps'] for r in runs)}")
            result["per_sweep_cpu_ms"] = per_sweep_cost_ms(pids)
            print("per sweep of", args.children, "pids:", result["per_sweep_cpu_ms"])
    finally:
        for c in children:
            if c.poll() is None:
                os.kill(c.pid, signal.SIGKILL)
            c.wait()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {OUT}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
