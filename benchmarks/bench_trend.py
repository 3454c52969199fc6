"""How often do trend's change points (analysis/trend.py) fire on a stable history, and how
often do they find a known step? (a benchmark, not a test)

Synthetic histories of per-run values, log-normal around a level with a run-to-run log-sd of
0.06 by default (benchmarks/results/gate.json measured 0.08-0.19 for the run medians of the
gate's metrics). Above the 2 % floor the false rates do not depend on the log-sd (the cost
and the penalty both scale with sigma^2); the detection rates do (a step counts in sigmas).
One history per seed:
- stable: no change; any change point found is a false one (per series);
- step: the level times (1 + d) from run `at` on; found = exactly one change point, within
  one run of `at`; also the share with any change point;
- outlier: a stable history with one run +50 %: any change point is a false one.
The rule in use (PENALTY_K x sigma^2 x ln n, sigma from the trimmed successive differences)
beside the alternatives it was chosen over (other k; sigma from the MAD of the differences).

    .venv/bin/python benchmarks/bench_trend.py [--seeds 200] [--sd 0.06]

Writes benchmarks/results/trend-changepoints.json. CPU only, ~1 minute.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import ruptures
from scipy.stats import median_abs_deviation

ROOT = Path(__file__).resolve().parent.parent
OUT = Path(__file__).resolve().parent / "results" / "trend-changepoints.json"
sys.path.insert(0, str(ROOT))

from analysis import gate, trend  # noqa: E402
from bench.meta import cpu_model  # noqa: E402

Detector = Callable[[np.ndarray], list[int]]


def mad_sd(logs: np.ndarray) -> float:
    return max(gate.SD_FLOOR,
               float(median_abs_deviation(np.diff(logs), scale="normal")) / math.sqrt(2))


def detector(k: float, sd: Callable[[np.ndarray], float]) -> Detector:
    def find(logs: np.ndarray) -> list[int]:
        pen = k * sd(logs) ** 2 * math.log(logs.size)
        algo = ruptures.Pelt(model="l2", min_size=trend.MIN_SEGMENT, jump=1)
        return [int(b) for b in algo.fit(logs.reshape(-1, 1)).predict(pen=pen)[:-1]]
    return find


def in_use(logs: np.ndarray) -> list[int]:
    return trend.change_indices(np.exp(logs).tolist())


CASES: list[dict[str, Any]] = [
    {"case": "stable, 10 runs", "n": 10},
    {"case": "stable, 20 runs", "n": 20},
    {"case": "stable, 30 runs", "n": 30},
    {"case": "stable, 20 runs, one run +50 %", "n": 20, "outlier": 7},
    {"case": "+15 % from run 12 of 20", "n": 20, "step": 0.15, "at": 12},
    {"case": "+30 % from run 12 of 20", "n": 20, "step": 0.30, "at": 12},
    {"case": "+15 % from run 20 of 30", "n": 30, "step": 0.15, "at": 20},
    {"case": "+30 % from run 26 of 30 (4 runs after)", "n": 30, "step": 0.30, "at": 26},
]


def history(case: dict[str, Any], seed: int, sd: float) -> np.ndarray:
    logs = np.random.default_rng(seed).normal(0.0, sd, case["n"])
    if "step" in case:
        logs[case["at"]:] += math.log1p(case["step"])
    if "outlier" in case:
        logs[case["outlier"]] += math.log(1.5)
    return logs


def rates(find: Detector, seeds: int, sd: float) -> dict[str, dict[str, float]]:
    out = {}
    for case in CASES:
        anything = found = 0
        for seed in range(seeds):
            cuts = find(history(case, seed, sd))
            anything += bool(cuts)
            found += "at" in case and len(cuts) == 1 and abs(cuts[0] - case["at"]) <= 1
        out[case["case"]] = ({"any_change_point": round(anything / seeds, 3),
                              "found_exactly_one_within_1_run": round(found / seeds, 3)}
                             if "at" in case else
                             {"false_change_point": round(anything / seeds, 3)})
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=200)
    ap.add_argument("--sd", type=float, default=0.06, help="log-sd of a run's value")
    ap.add_argument("--out", type=Path, default=OUT)
    a = ap.parse_args()
    alternatives = {f"k={k:g}, trimmed differences": detector(k, trend.noise_sd)
                    for k in (2, 3, 5, 6)}
    alternatives |= {f"k={k:g}, MAD of differences": detector(k, mad_sd) for k in (4, 5)}
    record = {"what": (__doc__ or "").split("\n\n")[0], "machine": cpu_model(),
              "measured": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "seeds": a.seeds, "log_sd": a.sd,
              "rule": {"algorithm": "ruptures.Pelt(model='l2', jump=1)",
                       "min_segment": trend.MIN_SEGMENT, "penalty_k": trend.PENALTY_K,
                       "penalty": "k x sigma^2 x ln(n)", "trim": trend.TRIM,
                       "sd_floor": gate.SD_FLOOR},
              "in_use": rates(in_use, a.seeds, a.sd),
              "alternatives": {name: rates(f, a.seeds, a.sd)
                               for name, f in alternatives.items()}}
    a.out.write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n")
    print(json.dumps(record["in_use"], indent=1, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
