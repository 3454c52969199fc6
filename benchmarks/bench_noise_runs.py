"""Do noisy cells set aside make runs agree? Two back-to-back default runs of one commit, and
a third with a neighbour taking CPU for part of it (a benchmark, not a test).

Runs `meshbench run -s quick` (the default run: `make bench`) three times in a row: A and B
on the machine as it is, C with a bounded CPU hog (bench/load/hog.py, `--share` of the
machine) started `--hog-after` seconds into the run for `--hog-seconds`. Then, from each
run's clean cells (the analysis's default), and again with the contaminated ones included:

- the p50 overhead over baseline per mode and level (median of the paired repetitions),
  A against B: the harness's promise is that they agree within 10 %;
- the claims' verdicts and ratios [95 % CI], C against A: C's ratios should lie within A's
  own CI and give A's verdicts, with C's contaminated cells set aside (and need not with
  them included: that is what the flag is for);
- per run: cells measured, contaminated, re-run, set aside, and the worst window.

    .venv/bin/python benchmarks/bench_noise_runs.py [--share 0.3 --hog-after 60 --hog-seconds 90]
    .venv/bin/python benchmarks/bench_noise_runs.py --from A B C

Writes benchmarks/results/noise-runs.json. Needs root; ~15 minutes.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = Path(__file__).resolve().parent / "results" / "noise-runs.json"
sys.path.insert(0, str(ROOT))

from analysis.claims import claim_rows  # noqa: E402
from analysis.latency import overhead_medians  # noqa: E402
from analysis.rundata import Run, load_run  # noqa: E402
from analysis.stats import paired_deltas  # noqa: E402
from bench.load.hog import CpuHog  # noqa: E402
from bench.meta import cpu_model  # noqa: E402

AGREE = 0.10


def run_quick(results: Path, hog: tuple[float, float, float] | None) -> tuple[Path, dict]:
    """One `meshbench run -s quick`; with `hog` = (share, after_s, seconds) a hog runs for
    part of it (its report returned)."""
    proc = subprocess.Popen([sys.executable, "-m", "bench", "run", "-s", "quick",
                             "--no-report", "--wait-lock", "3600", "--results", str(results)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    got: dict[str, Any] = {}
    done = threading.Event()

    def neighbour() -> None:
        assert hog is not None
        share, after, seconds = hog
        if done.wait(after):
            return
        h = CpuHog(share, seconds).start()
        got["started"] = time.time()
        done.wait(seconds)
        got.update(h.stop(), ended=time.time())

    t = threading.Thread(target=neighbour) if hog else None
    if t is not None:
        t.start()
    out, err = proc.communicate()
    done.set()
    if t is not None:
        t.join()
    sys.stderr.write(err[-3000:])
    if proc.returncode not in (0, 3):
        raise SystemExit(f"meshbench run exited {proc.returncode}")
    return Path(out.strip().splitlines()[-1]), got


def overheads(run: Run) -> dict[str, dict[str, Any]]:
    """Per mode and level: the median p50 overhead over baseline, and the repetitions'
    own overheads with their spread (log-scale sd): the noise inside one run that no
    machine signal removes."""
    reps = paired_deltas(run.latency, "latency_p50")
    out = {}
    for (m, lv), (v, n) in overhead_medians(run.latency).items():
        d = sorted(float(x) for x in reps[(reps["mode"] == m) & (reps["level"] == lv)]["delta"])
        logs = [math.log(x) for x in d if x > 0]
        out[f"{m} {lv}"] = {"p50_overhead_us": round(v, 1), "pairs": n,
                            "repetitions_us": [round(x, 1) for x in d],
                            "log_sd": round(statistics.stdev(logs), 3) if len(logs) > 1
                            else None}
    return out


def expected_within(log_sd: float, n: int, tolerance: float = AGREE,
                    draws: int = 20000, seed: int = 1) -> float:
    """How often two runs' medians of n repetitions agree within `tolerance` when the
    repetitions scatter with `log_sd` and nothing else differs (simulated)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    a = np.median(rng.normal(0, log_sd, (draws, n)), axis=1)
    b = np.median(rng.normal(0, log_sd, (draws, n)), axis=1)
    return float(np.mean(np.abs(np.exp(a - b) - 1) <= tolerance))


def claims(run: Run) -> dict[str, dict[str, Any]]:
    out = {}
    for row in claim_rows(run):
        r = row.result
        key = f"{row.claim} | {row.tested}" + (f" @ {row.level}" if row.level else "")
        ratio = r.ratio
        ci = ratio is not None and ratio.has_ci
        out[key] = {"verdict": r.verdict,
                    "ratio": None if ratio is None or not math.isfinite(ratio.ratio)
                    else round(ratio.ratio, 4),
                    "lo": round(ratio.lo, 4) if ratio is not None and ci else None,
                    "hi": round(ratio.hi, 4) if ratio is not None and ci else None}
    return out


def speed_of(run: Run) -> dict[str, Any]:
    """The machine's speed after each cell (bench.probes.noise.speed): median [min-max]
    per run, and per cell beside the baseline's p50."""
    cells = [c for c in run.manifest.get("cells") or [] if (c.get("noise") or {}).get(
        "cpu_mibps")]
    if not cells:
        return {}
    cpu = sorted(c["noise"]["cpu_mibps"] for c in cells)
    mem = sorted(c["noise"]["mem_gibps"] for c in cells)
    lat = run.latency[run.latency["metric"] == "latency_p50"]
    base = {(int(r), int(lv)): v for r, lv, v, m in zip(
        lat["repetition"], lat["level"], lat["value"], lat["mode"]) if m == "baseline"}
    return {"cpu_mibps": [round(cpu[0]), round(statistics.median(cpu)), round(cpu[-1])],
            "mem_gibps": [round(mem[0], 2), round(statistics.median(mem), 2),
                          round(mem[-1], 2)],
            "baseline_cells": [{"cell": c["cell"], "cpu_mibps": round(c["noise"]["cpu_mibps"]),
                                "mem_gibps": round(c["noise"]["mem_gibps"], 2),
                                "p50_us": base.get((c["repetition"], c["level"]))}
                               for c in cells if c["mode"] == "baseline"]}


def noise_of(run: Run) -> dict[str, Any]:
    return {**(run.manifest.get("noise") or {}), "speed": speed_of(run),
            "set_aside": len(run.set_aside),
            "set_aside_cells": [f"r{r}-{m}-{lv}rps: {why}"
                                for (m, lv, r), why in run.set_aside.items()]}


def agreement(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """p50 overheads of B against A: each within AGREE, and which are not."""
    rows = {}
    for k in sorted(set(a) & set(b)):
        va, vb = a[k]["p50_overhead_us"], b[k]["p50_overhead_us"]
        if va > 0:
            rows[k] = {"a": va, "b": vb, "ratio": round(vb / va, 3),
                       "within": abs(vb / va - 1) <= AGREE}
    sds = [x[k]["log_sd"] for x in (a, b) for k in rows if x[k].get("log_sd")]
    pooled = math.sqrt(statistics.mean(s * s for s in sds)) if sds else None
    n = min((a[k]["pairs"] for k in rows), default=0)
    return {"rows": rows, "within": sum(r["within"] for r in rows.values()),
            "of": len(rows), "missing": sorted(set(a) ^ set(b)),
            "pooled_log_sd": None if pooled is None else round(pooled, 3),
            "expected_share_within": None if pooled is None or n < 1 else round(
                expected_within(pooled, n), 3)}


def claims_against(ref: dict[str, Any], other: dict[str, Any]) -> dict[str, Any]:
    """Each of `other`'s claims against `ref`'s: same verdict, ratio inside ref's CI."""
    rows = {}
    for k, r in ref.items():
        o = other.get(k)
        if o is None:
            continue
        inside = (None if r["ratio"] is None or o["ratio"] is None or r["lo"] is None
                  else r["lo"] <= o["ratio"] <= r["hi"])
        rows[k] = {"ref": r, "other": o, "same_verdict": r["verdict"] == o["verdict"],
                   "ratio_inside_ref_ci": inside}
    ratios = [v for v in rows.values() if v["ratio_inside_ref_ci"] is not None]
    return {"rows": rows, "same_verdict": sum(v["same_verdict"] for v in rows.values()),
            "of": len(rows), "ratios_inside": sum(v["ratio_inside_ref_ci"] for v in ratios),
            "ratios_of": len(ratios)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--share", type=float, default=0.3)
    ap.add_argument("--hog-after", type=float, default=60.0)
    ap.add_argument("--hog-seconds", type=float, default=90.0)
    ap.add_argument("--from", dest="dirs", nargs=3, type=Path, metavar=("A", "B", "C"))
    ap.add_argument("--results", type=Path, default=Path("/tmp/mb-bench-noise-runs"))
    a = ap.parse_args()
    hogs: list[dict[str, Any]] = [{}, {}, {}]
    if a.dirs:
        dirs = list(a.dirs)
        meta = dirs[2] / "hog.json"
        if meta.exists():
            hogs[2] = json.loads(meta.read_text())
    else:
        dirs = []
        for i in range(3):
            d, got = run_quick(a.results, (a.share, a.hog_after, a.hog_seconds) if i == 2
                               else None)
            dirs.append(d)
            hogs[i] = got
            if got:
                (d / "hog.json").write_text(json.dumps(got))
            print(f"run {'ABC'[i]}: {d}", file=sys.stderr)
    record: dict[str, Any] = {
        "what": __doc__.split("\n\n")[0], "machine": cpu_model(),
        "measured": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "runs": {k: str(d) for k, d in zip("ABC", dirs)}, "hog": hogs[2],
        "agreement_tolerance": AGREE}
    for include in (False, True):
        runs = {k: load_run(d, include_noisy=include) for k, d in zip("ABC", dirs)}
        over = {k: overheads(r) for k, r in runs.items()}
        cl = {k: claims(r) for k, r in runs.items()}
        key = "with_noisy_cells" if include else "clean_cells"
        record[key] = {
            "noise": {k: noise_of(r) for k, r in runs.items()},
            "p50_overheads": over,
            "a_vs_b_p50_overheads": agreement(over["A"], over["B"]),
            "c_vs_a_p50_overheads": agreement(over["A"], over["C"]),
            "c_claims_vs_a": claims_against(cl["A"], cl["C"]),
            "b_claims_vs_a": claims_against(cl["A"], cl["B"])}
    OUT.write_text(json.dumps(record, indent=1) + "\n")
    for key in ("clean_cells", "with_noisy_cells"):
        r = record[key]
        ab = r["a_vs_b_p50_overheads"]
        print(f"{key}: A vs B p50 overheads within {100 * AGREE:.0f} %: "
              f"{ab['within']}/{ab['of']} (expected from the repetitions' own spread, log-sd "
              f"{ab['pooled_log_sd']}: {ab['expected_share_within']}); "
              f"C vs A: {r['c_vs_a_p50_overheads']['within']}/"
              f"{r['c_vs_a_p50_overheads']['of']}; C's claims: same verdict "
              f"{r['c_claims_vs_a']['same_verdict']}/{r['c_claims_vs_a']['of']}, ratio in A's CI "
              f"{r['c_claims_vs_a']['ratios_inside']}/{r['c_claims_vs_a']['ratios_of']}; "
              f"set aside A/B/C: {[r['noise'][k]['set_aside'] for k in 'ABC']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
