"""Does `make compare` pass two runs of one commit and fail a 50 % regression?
(a benchmark, not a test)

1. Real: two `make bench REPETITIONS=5` runs of one commit, back to back on this machine
   (`--pair A B`): `analysis.compare` of A against B (expected: exit 0), and of A against a
   copy of B with one gate metric inflated by 50 % (each of the sidecar mode's data-plane
   cores, p50 overhead and p99 overhead in turn; expected: exit 1), and which metrics
   `compare` then calls worse.
2. Synthetic: comparisons drawn with the pair's own spreads (each headline metric's
   per-repetition log-sd, pooled over the two runs) and the night-to-night drift measured
   for the gate (benchmarks/results/gate.json; 0.05 for families the gate does not
   measure), through the same code (claimtests.shift + holm):
   - false alarms: the share of comparisons of an unchanged commit with any "worse",
     without and with the run-to-run drift;
   - detection: one gate metric inflated by d; the share of comparisons that say "worse".

    .venv/bin/python benchmarks/bench_compare.py --pair results/A results/B

Writes benchmarks/results/compare.json. CPU only, ~1 minute.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
OUT = Path(__file__).resolve().parent / "results" / "compare.json"
sys.path.insert(0, str(ROOT))

from analysis import compare  # noqa: E402
from analysis.claimtests import holm, shift  # noqa: E402
from analysis.headline import KEY, headline  # noqa: E402
from analysis.rundata import load_run  # noqa: E402
from bench.meta import cpu_model  # noqa: E402

GATE = ROOT / "benchmarks" / "results" / "gate.json"
INFLATE = {"dataplane_cores": ("resources", "cpu_cores"),
           "overhead_p50": ("latency", "latency_p50"),
           "overhead_p99": ("latency", "latency_p99")}
FACTORS = [1.15, 1.25, 1.5, 2.0]


def run_compare(a: Path, b: Path) -> dict[str, Any]:
    out = Path(tempfile.mkdtemp(prefix="mb-compare-")) / "c.json"
    code = compare.main([str(a), str(b), "--json", str(out)])
    outcome = json.loads(out.read_text())
    shutil.rmtree(out.parent)
    return {"exit_code": code, "counts": outcome["counts"], "worse": outcome["worse"]}


def inflated_copy(run: Path, family: str, mode: str, factor: float, into: Path) -> Path:
    """A copy of `run` in which `mode`'s `family` is `factor` times what it was: the
    data-plane CPU rows multiplied; for an overhead, each latency row moved to
    baseline + factor x (latency - baseline), against the baseline's row of the same
    source, level and repetition."""
    dst = into / run.name
    shutil.copytree(run, dst)
    df = pd.read_parquet(dst / "samples.parquet")
    _, metric = INFLATE[family]
    sel = (df["metric"] == metric) & (df["mode"] == mode)
    if family == "dataplane_cores":
        sel &= df["entity"] == "dataplane"
        df.loc[sel, "value"] = df.loc[sel, "value"] * factor
    else:
        keys = ["source", "level", "repetition"]
        base = (df[(df["metric"] == metric) & (df["mode"] == "baseline")]
                .groupby(keys)["value"].median())
        b = base.reindex(pd.MultiIndex.from_frame(df.loc[sel, keys])).to_numpy()
        sel_idx = df.index[sel][~np.isnan(b)]
        b = b[~np.isnan(b)]
        df.loc[sel_idx, "value"] = b + factor * (df.loc[sel_idx, "value"].to_numpy() - b)
    if not sel.any():
        raise SystemExit(f"{run}: no {metric} rows of {mode} to inflate")
    df.to_parquet(dst / "samples.parquet")
    (dst / "samples.jsonl").unlink(missing_ok=True)
    return dst


def per_metric_sd(dirs: list[Path]) -> dict[tuple, float]:
    """Each headline metric's per-repetition log-sd, pooled over the runs."""
    parts: dict[tuple, list[float]] = {}
    for d in dirs:
        for key, g in headline(load_run(d)).groupby(KEY):
            v = g["value"].to_numpy(dtype=float)
            if v.size >= 2 and (v > 0).all():
                parts.setdefault(tuple(key), []).append(float(np.var(np.log(v), ddof=1)))
    return {k: math.sqrt(float(np.mean(v))) for k, v in parts.items()}


def drift_by_family(dirs: list[Path]) -> dict[str, float]:
    """Per headline family, the run-to-run log-sd that the runs' repetitions do not
    explain: per metric, the variance of the runs' mean logs minus the mean within-run
    variance over n; clipped at 0, pooled over the family's metrics."""
    means: dict[tuple, list[float]] = {}
    within: dict[tuple, list[float]] = {}
    for d in dirs:
        for key, g in headline(load_run(d)).groupby(KEY):
            v = g["value"].to_numpy(dtype=float)
            if v.size >= 2 and (v > 0).all():
                lv = np.log(v)
                means.setdefault(tuple(key), []).append(float(lv.mean()))
                within.setdefault(tuple(key), []).append(float(lv.var(ddof=1)) / v.size)
    per_family: dict[str, list[float]] = {}
    for key, m in means.items():
        if len(m) >= 3:
            between = float(np.var(m, ddof=1)) - float(np.mean(within[key]))
            per_family.setdefault(key[0], []).append(max(between, 0.0))
    return {f: math.sqrt(float(np.mean(v))) for f, v in per_family.items()}


def simulate(sds: dict[tuple, float], drift: dict[str, float], reps: int, sims: int,
             inflate: tuple | None, factor: float, with_drift: bool,
             rng: np.random.Generator) -> float:
    """Share of simulated comparisons with any "worse" (or, with `inflate`, with that
    metric "worse")."""
    keys = list(sds)
    hits = 0
    for _ in range(sims):
        pw = []
        for k in keys:
            sd = sds[k]
            d = drift.get(k[0], 0.05) if with_drift else 0.0
            a = rng.normal(rng.normal(0, d), sd, reps)
            b = rng.normal(rng.normal(0, d), sd, reps)
            if k == inflate:
                b = b + math.log(factor)
            pw.append(shift(np.exp(a), np.exp(b), compare.THRESHOLD).p_worse)
        worse = holm(pw, compare.FAMILY_ALPHA)
        hits += worse[keys.index(inflate)] if inflate is not None else any(worse)
    return hits / sims


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pair", nargs=2, type=Path, required=True, metavar="RUN")
    p.add_argument("--history", nargs="*", type=Path, default=[], metavar="RUN",
                   help="runs of one commit on this machine to measure the run-to-run "
                        "drift per family from (the pair is added); default: gate.json's")
    p.add_argument("--sims", type=int, default=400)
    p.add_argument("--seed", type=int, default=22)
    args = p.parse_args()
    a, b = args.pair
    t0 = time.time()
    real: dict[str, Any] = {"same_commit": run_compare(a, b), "inflated": {}}
    with tempfile.TemporaryDirectory(prefix="mb-inflate-") as tmp:
        for family in INFLATE:
            into = Path(tmp) / family
            into.mkdir()
            c = inflated_copy(b, family, "sidecar", 1.5, into)
            real["inflated"][family] = run_compare(a, c)
            print(f"{family} x1.5: exit {real['inflated'][family]['exit_code']}", flush=True)
    print(f"same commit: exit {real['same_commit']['exit_code']}", flush=True)

    sds = per_metric_sd([a, b])
    if args.history:
        drift = drift_by_family([*args.history, a, b])
        drift_from = [d.name for d in [*args.history, a, b]]
    else:
        gate = json.loads(GATE.read_text())["spreads"] if GATE.is_file() else {}
        drift = {f: v["drift_log_sd"] for f, v in gate.items()}
        drift_from = ["benchmarks/results/gate.json (gate families; 0.05 for the others)"]
    print("run-to-run drift (log-sd) per family:", {k: round(v, 3) for k, v in drift.items()})
    rng = np.random.default_rng(args.seed)
    reps = 5
    sim: dict[str, Any] = {
        "metrics": len(sds), "repetitions": reps, "sims": args.sims,
        "drift_log_sd": drift, "drift_from": drift_from,
        "false_alarm_no_drift": simulate(sds, drift, reps, args.sims, None, 1, False, rng),
        "false_alarm_with_drift": simulate(sds, drift, reps, args.sims, None, 1, True, rng),
        "detection": {}}
    for family in INFLATE:
        key = next((k for k in sds if k[0] == family and k[1] == "sidecar"), None)
        if key is None:
            continue
        sim["detection"][f"{family} sidecar @{key[2]} (rep log-sd {sds[key]:.3f})"] = {
            str(f): simulate(sds, drift, reps, args.sims, key, f, True, rng) for f in FACTORS}
    doc = {"what": "make compare on two runs of one commit and on a 50 % regression",
           "machine": cpu_model(), "pair": [a.name, b.name], "real": real,
           "simulated": sim, "threshold": compare.THRESHOLD,
           "family_alpha": compare.FAMILY_ALPHA, "seconds": round(time.time() - t0, 1)}
    OUT.write_text(json.dumps(doc, indent=1) + "\n")
    print(json.dumps(sim, indent=1))
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
