"""How much CPU taken by someone else moves the latency the harness reports: the curve the
contamination threshold (`timing.noise_threshold`) is chosen from (a benchmark, not a test).

A bounded CPU hog in a cgroup of its own (bench/load/hog.py, the stand-in for a
neighbour's steal) takes a set share of the machine for the whole of a run; per share, one
`meshbench run` of a scenario derived from quick (baseline, sidecar and ambient at 500 rps,
4 connections, 2 repetitions of 6 s windows, no experiments, no hop probe). Shares are run
in an interleaved order with the quiet point at both ends, so that drift is not read as
the hog's effect. Per cell it records the share the harness measured (lost_share: steal +
other processes, bench/probes/noise.py) beside the hog's own CPU from its cgroup (the
kernel's count, independent of the harness), and the p50 and p99 latency (the run's
headline timing). Per share and mode: the ratio of the median p50 and p99 to the quiet
runs', and of the p50 overhead over baseline.

    .venv/bin/python benchmarks/bench_noise_threshold.py [--shares 0 0.4 0.1 ...]
    .venv/bin/python benchmarks/bench_noise_threshold.py --from DIR...

Writes benchmarks/results/noise-threshold.json and noise-threshold.png. Needs root;
~15 minutes; waits for the local backend's lock.
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
OUT = Path(__file__).resolve().parent / "results" / "noise-threshold.json"
sys.path.insert(0, str(ROOT))

from analysis.rundata import load_run  # noqa: E402
from bench.load.hog import CpuHog  # noqa: E402
from bench.meta import cpu_model  # noqa: E402
from bench.scenario import Timing  # noqa: E402
from benchmarks.bench_latency import meshbench  # noqa: E402

SHARES = [0.0, 0.4, 0.1, 0.6, 0.2, 0.8, 0.3, 0.0]
MODES = ["baseline", "sidecar", "ambient"]


def scenario(path: Path) -> Path:
    raw = yaml.safe_load((ROOT / "workloads" / "scenarios" / "quick.yaml").read_text())
    raw.update(name="noise-threshold", modes=MODES, repetitions=2, experiments=[])
    raw["load"].update(levels=[500], connections=4)
    raw["timing"].update(warmup_s=2, window_s=6, idle_s=1, noise_threshold=1.0)
    raw["probes"]["hops"] = {"enabled": False}
    path.write_text(yaml.safe_dump(raw))
    return path


def cells(run_dir: Path, share: float, hog: dict[str, Any]) -> list[dict[str, Any]]:
    run = load_run(run_dir, include_noisy=True)
    lat = run.latency
    out = []
    for c in run.manifest.get("cells") or []:
        if c.get("status") != "ok" or not c.get("noise"):
            continue
        g = lat[(lat["mode"] == c["mode"]) & (lat["repetition"] == c["repetition"])
                & (lat["level"] == c["level"])]

        def val(metric: str, g: Any = g) -> float | None:
            v = g[g["metric"] == metric]["value"]
            return float(v.iloc[0]) if len(v) else None

        n = c["noise"]
        out.append({"run": run_dir.name, "share": share, "cell": c["cell"], "mode": c["mode"],
                    "repetition": c["repetition"], "p50_us": val("latency_p50"),
                    "p99_us": val("latency_p99"), "lost_share": n["lost_share"],
                    "foreign_share": n["foreign_share"], "steal_share": n["steal_share"],
                    "psi_some_share": n["psi_some_share"],
                    "hog_share_by_cgroup": (hog.get("cores", 0.0) / n["ncpu"]) if hog else 0.0,
                    "foreign_top": n.get("foreign_top", [])[:2]})
    return out


# bins of the measured lost share (the x axis is what the harness saw, not the hog's
# setting: a quiet run's cells that someone else did use land where they belong)
EDGES = [0.0, 0.01, 0.02, 0.04, 0.07, 0.10, 0.15, 0.25, 0.45, 1.01]
QUIET = 0.01  # cells below this measured lost share are the reference


def _med(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def reference(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per mode, the median p50 and p99 of the quiet cells, and how far the quiet cells
    themselves stray from it (the largest cell / median): the noise a threshold cannot be
    asked to remove."""
    out = {}
    for mode in MODES:
        q = [r for r in rows if r["mode"] == mode and r["lost_share"] < QUIET and r["p50_us"]]
        if not q:
            continue
        p50 = statistics.median(r["p50_us"] for r in q)
        p99 = statistics.median(r["p99_us"] for r in q)
        out[mode] = {"cells": len(q), "p50_us": p50, "p99_us": p99,
                     "p50_max_ratio": max(r["p50_us"] for r in q) / p50,
                     "p99_max_ratio": max(r["p99_us"] for r in q) / p99}
    return out


def curve(rows: list[dict[str, Any]], ref: dict[str, dict[str, float]]) -> list[dict[str, Any]]:
    """Per bin of measured lost share and mode: the cells' p50 and p99 over the quiet
    reference, median [min, max]."""
    out = []
    for lo, hi in zip(EDGES, EDGES[1:]):
        for mode in MODES:
            g = [r for r in rows if r["mode"] == mode and lo <= r["lost_share"] < hi
                 and r["p50_us"] and mode in ref]
            if not g:
                continue
            p50 = [r["p50_us"] / ref[mode]["p50_us"] for r in g]
            p99 = [r["p99_us"] / ref[mode]["p99_us"] for r in g]
            out.append({"lost_from": lo, "lost_to": min(hi, 1.0), "mode": mode,
                        "cells": len(g), "lost_share_median": _med([r["lost_share"] for r in g]),
                        "p50_ratio": _med(p50), "p50_ratio_min": min(p50),
                        "p50_ratio_max": max(p50), "p99_ratio": _med(p99),
                        "p99_ratio_min": min(p99), "p99_ratio_max": max(p99)})
    return out


def first_harm(points: list[dict[str, Any]], ref: dict[str, dict[str, float]]) -> float | None:
    """The lowest lost share from which some mode's median p99 or p50 leaves what its quiet
    cells themselves span (the largest quiet cell over their median, either way)."""
    for p in sorted(points, key=lambda p: p["lost_from"]):
        r = ref[p["mode"]]
        if p["lost_from"] < QUIET:
            continue
        if (p["p99_ratio"] > r["p99_max_ratio"] or p["p50_ratio"] > r["p50_max_ratio"]
                or p["p50_ratio"] < 1 / r["p50_max_ratio"]):
            return float(p["lost_from"])
    return None


def plot(points: list[dict[str, Any]], path: Path, threshold: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharex=True)
    for ax, key, title in ((axes[0], "p50_ratio", "p50 / quiet cells' median p50"),
                           (axes[1], "p99_ratio", "p99 / quiet cells' median p99")):
        for i, mode in enumerate(MODES):
            pts = sorted((p["lost_share_median"], p[key], p[f"{key}_min"], p[f"{key}_max"])
                         for p in points if p["mode"] == mode)
            if not pts:
                continue
            xs = [max(x, 0.002) * (1 + 0.04 * (i - 1)) for x, *_ in pts]
            ax.errorbar(xs, [y for _, y, _, _ in pts],
                        yerr=[[y - lo for _, y, lo, _ in pts], [hi - y for _, y, _, hi in pts]],
                        fmt="o-", ms=4, capsize=3, label=mode)
        ax.axhline(1.0, color="grey", lw=0.8)
        ax.axvline(threshold, color="k", ls="--", lw=0.8, label="threshold")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("share of the CPU taken by others in the window (measured)")
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=8)
    fig.suptitle("Latency against CPU taken by a hog: median [min-max] of the cells per bin "
                 "(500 rps, 4 connections, 2 vCPUs)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shares", type=float, nargs="+", default=None,
                    help=f"hog shares to run (default without --from: {SHARES})")
    ap.add_argument("--from", dest="dirs", nargs="+", type=Path, metavar="DIR",
                    help="runs made earlier (their share read from hog.json beside them); "
                         "with --shares, new runs are added to them")
    ap.add_argument("--results", type=Path, default=Path("/tmp/mb-bench-noise"))
    a = ap.parse_args()
    rows: list[dict[str, Any]] = []
    runs = []
    for d in a.dirs or []:
        meta = json.loads((d / "hog.json").read_text())
        rows += cells(d, meta["share"], meta.get("hog", {}))
        runs.append(meta)
    shares = a.shares if a.shares is not None else ([] if a.dirs else SHARES)
    if shares:
        with tempfile.TemporaryDirectory() as tmp:
            spec = scenario(Path(tmp) / "noise-threshold.yaml")
            for share in shares:
                hog = CpuHog(share, 900).start() if share > 0 else None
                try:
                    d, wall = meshbench("run", "-s", str(spec), "--no-report",
                                        "--wait-lock", "3600", results=a.results)
                finally:
                    got = hog.stop() if hog is not None else {}
                meta = {"share": share, "dir": str(d), "wall_s": round(wall, 1), "hog": got}
                (d / "hog.json").write_text(json.dumps(meta))
                runs.append(meta)
                print(f"share {share}: {wall:.0f} s, hog {got.get('cores', 0):.2f} cores "
                      f"-> {d}", file=sys.stderr)
                rows += cells(d, share, got)
    ref = reference(rows)
    points = curve(rows, ref)
    # the independent check: the share the harness measured against the hog's cgroup
    check = [{"share": s, "measured_lost_share": statistics.median(
        [r["lost_share"] for r in rows if r["share"] == s]),
        "hog_share_by_cgroup": next(r["hog_share_by_cgroup"] for r in rows if r["share"] == s)}
        for s in sorted({r["share"] for r in rows})]
    record = {"what": __doc__.split("\n\n")[0], "machine": cpu_model(),
              "measured": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "runs": runs, "reference": ref, "first_harm": first_harm(points, ref),
              "threshold_in_use": Timing().noise_threshold,
              "check": check, "curve": points, "cells": rows}
    OUT.write_text(json.dumps(record, indent=1) + "\n")
    plot(points, OUT.with_suffix(".png"), Timing().noise_threshold)
    print(json.dumps({"check": check, "reference": ref, "first_harm": record["first_harm"]},
                     indent=1))
    for p in points:
        print(f"lost {p['lost_from']:.2f}-{p['lost_to']:.2f} {p['mode']:9s} n={p['cells']:2d} "
              f"p50 x{p['p50_ratio']:.2f} [{p['p50_ratio_min']:.2f}-{p['p50_ratio_max']:.2f}] "
              f"p99 x{p['p99_ratio']:.2f} [{p['p99_ratio_min']:.2f}-{p['p99_ratio_max']:.2f}]")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
