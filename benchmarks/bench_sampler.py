"""How much CPU does the resource sampler cost? (a benchmark script, not a test)

Starts 200 idle /bin/sleep children, runs the real sampler process over them at 10 Hz
for 10 s, without PSS and with PSS at 1 Hz, and reports the sampler's own CPU as a
percentage of one core (from its own rows: CPU clock delta over monotonic time between
its first and last sweep, so interpreter start-up is excluded), its sweep durations and
gaps. With --before REV, the sampler of that git revision runs too, in rounds interleaved
with the current one (the order flips every round), so that both see the same machine.
Also times one sweep's worth of raw /proc reads against psutil's oneshot() in this
process, to back the choice of raw reads, and each kind of read per process.

    .venv/bin/python benchmarks/bench_sampler.py [--children 200] [--seconds 10] [--repeat 3]
        [--before REV]

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
from bench.probes.resources import _Watched

OUT = Path(__file__).resolve().parent / "results" / "sampler.json"
REPO = Path(__file__).resolve().parent.parent
INTERVAL = 0.1


def run_sampler(root: Path, targets: Path, out: Path, seconds: float,
                pss_interval: float) -> dict[str, Any]:
    """The sampler process of the package under `root` (the same command line the
    ResourceSampler of either version runs), for `seconds`."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.probes.resources", "--targets", str(targets),
         "--out", str(out), "--interval", str(INTERVAL), "--pss-interval", str(pss_interval),
         "--parent-pid", str(os.getpid())],
        start_new_session=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        # `-m` puts the working directory first on sys.path: run from the version's root
        cwd=root, env={**os.environ, "PYTHONPATH": str(root)})
    try:
        deadline = time.monotonic() + 10
        while not (out.exists() and out.stat().st_size > 0):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"sampler under {root} did not start ({proc.poll()})")
            time.sleep(0.02)
        time.sleep(seconds)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
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
        "loadavg_after": os.getloadavg()[0],
        # which code ran: only the current sampler records its RSS and PSS sources
        "meta_sources": {k: v for k, v in rows[0]["meta"].items() if k.endswith("_source")},
    }


def _cpu_ms(fn: Any, n: int) -> float:
    c = time.process_time()
    for _ in range(n):
        fn()
    return round((time.process_time() - c) / n * 1e3, 3)


def per_sweep_cost_ms(pids: list[int], sweeps: int = 20) -> dict[str, float]:
    """CPU ms (this process, user + kernel) for one read of every pid, by kind of read."""
    watched = [_Watched(Target(pid, "app", str(pid))) for pid in pids]
    procs = [psutil.Process(pid) for pid in pids]
    stamp = '"ts":0,"mono":0,"seq":0'

    def oneshot() -> None:
        for p in procs:
            with p.oneshot():
                p.cpu_times(), p.memory_info(), p.num_threads()

    out = {
        "raw_clock_statm_ms": _cpu_ms(lambda: [w.sample(stamp, False, False) for w in watched],
                                      sweeps),
        "raw_clock_statm_stat_ms": _cpu_ms(
            lambda: [w.sample(stamp, False, True) for w in watched], sweeps),
        "raw_clock_statm_smaps_rollup_ms": _cpu_ms(
            lambda: [w.sample(stamp, True, False) for w in watched], max(1, sweeps // 4)),
        "psutil_oneshot_ms": _cpu_ms(oneshot, sweeps),
        # the floor: the system calls alone, on the files sample() holds open
        "syscall_clock_only_ms": _cpu_ms(
            lambda: [time.clock_gettime_ns(w.clock) for w in watched], sweeps),
        "syscall_statm_pread_only_ms": _cpu_ms(
            lambda: [os.pread(w.statm_fd, 128, 0) for w in watched], sweeps),
        "syscall_stat_pread_only_ms": _cpu_ms(
            lambda: [os.pread(w.stat_fd, 4096, 0) for w in watched], sweeps),
        "syscall_smaps_rollup_pread_only_ms": _cpu_ms(
            lambda: [os.pread(w.smaps_fd, 4096, 0) for w in watched], max(1, sweeps // 4)),
        "psutil_memory_full_info_ms": _cpu_ms(
            lambda: [p.memory_full_info() for p in procs], max(1, sweeps // 4)),
    }
    for w in watched:
        w.close()
    return out


def machine() -> dict[str, Any]:
    model = next((line.split(":", 1)[1].strip() for line in
                  Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), "")
    return {"cpu_model": model, "cpus": os.cpu_count(), "kernel": platform.release(),
            "python": platform.python_version(), "loadavg_at_start": os.getloadavg()}


def export(rev: str, into: Path) -> Path:
    """The `bench` package of git revision `rev`, unpacked under `into`."""
    archive = subprocess.run(["git", "-C", str(REPO), "archive", rev, "bench"],
                             check=True, capture_output=True).stdout
    into.mkdir(parents=True, exist_ok=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def spread(values: list[float]) -> dict[str, Any]:
    return {"median": round(statistics.median(values), 3), "min": round(min(values), 3),
            "max": round(max(values), 3), "mean": round(statistics.mean(values), 3),
            "stdev": round(statistics.pstdev(values), 3), "n": len(values)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--children", type=int, default=200)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--before", metavar="REV", help="also run this revision's sampler")
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args()
    result: dict[str, Any] = {
        "machine": machine(), "children": args.children, "interval_s": INTERVAL,
        "seconds": args.seconds, "repeat": args.repeat,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "method": ("sampler CPU = its own CPU clock delta / monotonic time between its first "
                   "and last sweep; rounds of the versions interleaved, order flipped every "
                   "round; shared 2-core VM (see loadavg)")}
    children: list[subprocess.Popen[bytes]] = []
    versions = 2 if args.before else 1
    try:
        lifetime = str(int(2 * versions * args.repeat * (args.seconds + 3) + 90))
        children = [subprocess.Popen(["/bin/sleep", lifetime]) for _ in range(args.children)]
        pids = [c.pid for c in children]
        with tempfile.TemporaryDirectory(prefix="mb-bench-sampler-") as d:
            roots = {"after": REPO}
            if args.before:
                roots["before"] = export(args.before, Path(d) / "before")
                result["before_rev"] = args.before
            result["after_rev"] = subprocess.run(
                ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                text=True).stdout.strip() + (" (+ working tree)" if subprocess.run(
                    ["git", "-C", str(REPO), "diff", "--quiet", "HEAD", "--", "bench"]
                ).returncode else "")
            targets = Path(d) / "targets.json"
            write_targets(targets, [Target(pid, "app", f"sleep/{i}") for i, pid in
                                    enumerate(pids)])
            for name, pss in (("no_pss", 0.0), ("pss_1hz", 1.0)):
                runs: dict[str, list[dict[str, Any]]] = {v: [] for v in roots}
                for i in range(args.repeat):
                    order = list(roots) if i % 2 == 0 else list(roots)[::-1]
                    for v in order:
                        runs[v].append(run_sampler(roots[v], targets,
                                                   Path(d) / f"{name}-{v}-{i}.jsonl",
                                                   args.seconds, pss))
                result[name] = {}
                for v, rs in runs.items():
                    pct = [r["cpu_pct_of_core"] for r in rs]
                    result[name][v] = {"cpu_pct_of_core": spread(pct), "runs": rs}
                    print(f"{name:8s} {v:6s} sampler CPU median {statistics.median(pct):.2f} % "
                          f"of one core (runs: {', '.join(f'{x:.2f}' for x in pct)}), sweep "
                          f"p50 {rs[0]['sweep_ms_p50']} ms, gaps {sum(r['gaps'] for r in rs)}",
                          flush=True)
            # the fixed cost of a 10 Hz sampler: waking up, its own row, the write
            empty = Path(d) / "empty.json"
            write_targets(empty, [])
            idle = [run_sampler(REPO, empty, Path(d) / f"idle-{i}.jsonl", args.seconds, 0)
                    for i in range(args.repeat)]
            result["no_targets"] = {"cpu_pct_of_core": spread(
                [r["cpu_pct_of_core"] for r in idle]), "runs": idle}
            print("no targets: sampler CPU", [r["cpu_pct_of_core"] for r in idle], flush=True)
            result["per_sweep_cpu_ms"] = per_sweep_cost_ms(pids)
            print("per sweep of", args.children, "pids:", result["per_sweep_cpu_ms"])
    finally:
        for c in children:
            if c.poll() is None:
                os.kill(c.pid, signal.SIGKILL)
            c.wait()
    result["machine"]["loadavg_at_end"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
