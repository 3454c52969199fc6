"""How often would the nightly gate (analysis/gate.py) cry wolf, and what would it catch?
(a benchmark, not a test)

1. This machine's spreads, from default runs of one commit (`--runs`, e.g. the six quick
   runs of benchmarks/results/noise-runs*.json): per gate metric family, the log-scale
   spread of one repetition inside a run (pooled), and of the runs' medians.
2. Synthetic nights drawn with those spreads: a night's value is exp(drift + median of
   `--repetitions` repetition draws), the drift a night-to-night term (the part of the
   runs' spread their repetitions do not explain). Every night runs the gate against the
   rolling history of the last green nights, as the nightly job would.
   - False alarms: the share of nights of an unchanged commit that fail (hard limit 5 %).
   - Detection: a regression of size d from one night on, in one metric; the share of
     sequences that fail within two nights; the smallest d caught 80 % of the time.

    .venv/bin/python benchmarks/bench_gate.py --runs DIR... [--repetitions 5]

Writes benchmarks/results/gate.json. CPU only, ~1 minute.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
OUT = Path(__file__).resolve().parent / "results" / "gate.json"
sys.path.insert(0, str(ROOT))

from analysis import gate  # noqa: E402
from analysis.headline import headline  # noqa: E402
from analysis.rundata import load_run  # noqa: E402
from bench.meta import cpu_model  # noqa: E402

SHIFTS = [0.05, 0.10, 0.15, 0.20, 0.30, 0.40, 0.50, 0.75, 1.0]


def spreads(dirs: list[Path], repetitions_measured: int = 3) -> dict[str, dict[str, float]]:
    """Per gate family: pooled per-repetition log-sd inside runs, the log-sd of the runs'
    medians, and the night-to-night drift that the repetitions do not explain."""
    rep_sds: dict[str, list[float]] = {}
    medians: dict[str, dict[str, list[float]]] = {}
    for d in dirs:
        h = headline(load_run(d), list(gate.GATE_FAMILIES))
        h = h[(h["entity"] == "") & (h["mode"].isin(gate.MESH_MODES))]
        for (family, mode, level), g in h.groupby(["family", "mode", "level"]):
            logs = [math.log(v) for v in g["value"] if v > 0]
            if len(logs) < 2:
                continue
            rep_sds.setdefault(family, []).append(statistics.stdev(logs))
            medians.setdefault(family, {}).setdefault(f"{mode} @{level}", []).append(
                statistics.median(logs))
    out = {}
    for family, sds in rep_sds.items():
        rep = math.sqrt(statistics.mean(s * s for s in sds))
        between = [statistics.stdev(v) for v in medians[family].values() if len(v) >= 2]
        run_sd = math.sqrt(statistics.mean(s * s for s in between)) if between else rep
        # the sd of a median of n normal draws is ~1.2 sd / sqrt(n)
        explained = 1.2 * rep / math.sqrt(repetitions_measured)
        out[family] = {"repetition_log_sd": round(rep, 4),
                       "run_median_log_sd": round(run_sd, 4),
                       "drift_log_sd": round(math.sqrt(max(0.0, run_sd ** 2 - explained ** 2)),
                                             4),
                       "metrics": len(medians[family])}
    return out


def nights(rng: np.random.Generator, n: int, rep_sd: float, drift_sd: float,
           repetitions: int) -> np.ndarray:
    """n nights' values of one metric whose true value is 1."""
    reps = rng.normal(0.0, rep_sd, (n, repetitions))
    return np.exp(rng.normal(0.0, drift_sd, n) + np.median(reps, axis=1))


def run_sequence(values: dict[str, np.ndarray], warmup: int) -> list[bool]:
    """The gate night by night over the sequences `values` (metric -> nights); a failing
    night does not enter the history. Returns, per night after warm-up, whether it
    failed."""
    keys = list(values)
    n = len(next(iter(values.values())))
    green: list[dict[str, float]] = []
    before: set[str] = set()
    failed = []
    for i in range(n):
        night = {k: float(values[k][i]) for k in keys}
        if i < warmup:
            green.append(night)
            continue
        judged = gate.judge(green, night, before)
        before = {j.metric for j in judged if j.flagged}
        fail = any(j.confirmed for j in judged)
        failed.append(fail)
        if not fail:
            green.append(gate.without_flagged(night, before))
    return failed


def simulate(sp: dict[str, dict[str, float]], repetitions: int, seed: int = 1,
             sequences: int = 200, length: int = 40) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    metrics = [(f"{fam} {i}", s) for fam, s in sp.items() for i in range(int(s["metrics"]))]
    warmup = gate.HISTORY
    fails = 0
    total = 0
    for _ in range(sequences):
        vals = {k: nights(rng, length, s["repetition_log_sd"], s["drift_log_sd"], repetitions)
                for k, s in metrics}
        got = run_sequence(vals, warmup)
        fails += sum(got)
        total += len(got)
    false_alarm = fails / total
    detection: dict[str, dict[str, Any]] = {}
    for fam in sp:
        rows = {}
        for d in SHIFTS:
            hit = 0
            for _ in range(sequences):
                vals = {k: nights(rng, warmup + 2, s["repetition_log_sd"],
                                  s["drift_log_sd"], repetitions) for k, s in metrics}
                target = f"{fam} 0"
                vals[target][warmup:] *= 1 + d
                hit += any(run_sequence(vals, warmup))
            rows[f"{d:.2f}"] = hit / sequences
        caught = [d for d in SHIFTS if rows[f"{d:.2f}"] >= 0.8]
        detection[fam] = {"within_two_nights": rows,
                          "smallest_caught_80pct": min(caught) if caught else None}
    return {"false_alarm_share_of_nights": round(false_alarm, 4), "nights": total,
            "detection": detection}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", nargs="+", type=Path, required=True)
    ap.add_argument("--repetitions", type=int, default=5, help="the nightly's repetitions")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--alphas", type=float, nargs="*", default=[],
                    help="also simulate these per-night alphas (the rule's is gate.ALPHA)")
    a = ap.parse_args()
    sp = spreads(a.runs)
    alternatives = {}
    chosen = gate.ALPHA
    for alpha in a.alphas:
        gate.ALPHA = alpha
        alternatives[str(alpha)] = simulate(sp, a.repetitions, sequences=100)
        print(f"alpha {alpha}: false alarms {alternatives[str(alpha)]['false_alarm_share_of_nights']}, "
              + ", ".join(f"{f} {d['smallest_caught_80pct']}"
                          for f, d in alternatives[str(alpha)]["detection"].items()),
              file=sys.stderr)
    gate.ALPHA = chosen
    record = {"what": __doc__.split("\n\n")[0], "machine": cpu_model(),
              "measured": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "runs": [str(d) for d in a.runs], "spreads": sp,
              "rule": {"history": gate.HISTORY, "min_history": gate.MIN_HISTORY,
                       "alpha": gate.ALPHA, "practical": gate.PRACTICAL,
                       "sd_floor": gate.SD_FLOOR, "confirm": "two nights in a row"},
              "nightly_repetitions": a.repetitions,
              "simulated": simulate(sp, a.repetitions),
              "other_alphas": alternatives}
    a.out.write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps({"spreads": sp, **record["simulated"]}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
