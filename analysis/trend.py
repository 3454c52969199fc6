"""One headline metric across many runs in time order (e.g. the nightly history).

    python -m analysis.trend [--metric latency_p50] [--mode sidecar] [--level 200]
                             [--png trend.png] DIR [DIR ...]
    (meshbench trend ... once bench/cli.py delegates to analysis.compare.main_trend)

DIR is a run directory or a directory of runs (e.g. results/). Runs are ordered by their
manifest's start time. Prints a table (median [min–max] across repetitions, n) per run,
mode and level, and writes a PNG; runs whose key metadata differ from the newest run's
are marked (their numbers are not comparable with it: a different machine, kernel,
scenario or version).
"""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from analysis.figures import MODE_COLORS
from analysis.fmt import spread, table
from analysis.headline import FAMILIES, headline
from analysis.metadata import differing_keys
from analysis.rundata import Run, load_run
from bench.errors import BenchError, UserError, fail


def find_runs(paths: list[Path]) -> list[Path]:
    """Run directories named, or found one level under a directory of runs."""
    out: list[Path] = []
    for p in paths:
        if (p / "manifest.json").is_file():
            out.append(p)
        elif p.is_dir():
            out += sorted(m.parent for m in p.glob("*/manifest.json"))
        else:
            raise UserError(f"{p}: not a run directory nor a directory of runs")
    return list(dict.fromkeys(out))


def started(run: Run) -> float:
    """The run's start as epoch seconds (manifest "started", number or ISO text); else
    the time encoded at the front of its run id; else 0."""
    value: Any = run.manifest.get("started")
    if isinstance(value, (int, float)):
        return float(value)
    for text, fmt in ((value, None), (run.run_id[:16], "%Y%m%dT%H%M%SZ")):
        if not isinstance(text, str):
            continue
        try:
            when = (dt.datetime.fromisoformat(text) if fmt is None
                    else dt.datetime.strptime(text, fmt).replace(tzinfo=dt.UTC))
            return when.timestamp()
        except ValueError:
            continue
    return 0.0


def trend_rows(runs: list[Run], family: str, mode: str | None,
               level: int | None) -> list[dict[str, Any]]:
    """Per run (oldest first), mode, level and entity: median, min, max, n and the key
    metadata that differ from the newest run."""
    newest = runs[-1].manifest
    out = []
    for run in runs:
        diffs = [k for k, _, _ in differing_keys(run.manifest, newest)]
        h = headline(run, [family])
        if mode:
            h = h[h["mode"] == mode]
        if level is not None:
            h = h[h["level"] == level]
        for (m, lv, entity), g in h.groupby(["mode", "level", "entity"], sort=False):
            v = g["value"].to_numpy(dtype=float)
            out.append({"run": run.run_id, "started": started(run), "mode": str(m),
                        "level": int(lv), "entity": str(entity),
                        "median": float(np.median(v)), "min": float(v.min()),
                        "max": float(v.max()), "n": int(v.size), "differs": diffs})
    return out


def _when(epoch: float) -> str:
    if not epoch:
        return "not recorded"
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%d %H:%M")


def format_trend(rows: list[dict[str, Any]], family: str, newest: str) -> list[str]:
    f = FAMILIES[family]
    lines = [f"# meshbench trend: {f.label} ({f.unit})", ""]
    if not rows:
        return lines + ["No run has this metric.", ""]
    body = [[r["run"], _when(r["started"]), r["mode"], str(r["level"]),
             *([r["entity"]] if any(x["entity"] for x in rows) else []),
             spread(r["median"], r["min"], r["max"]), str(r["n"]),
             ("differs: " + ", ".join(r["differs"])) if r["differs"] else "same"]
            for r in rows]
    headers = ["run", "started (UTC)", "mode", "target (rps)",
               *(["entity"] if any(x["entity"] for x in rows) else []),
               f"{f.label}: median [min–max] ({f.unit})", "n", f"key metadata vs {newest}"]
    lines += table(headers, body)
    if any(r["differs"] for r in rows):
        lines += ["", ("Runs marked \"differs\" ran on other key metadata than the newest "
                       "(machine, kernel, scenario or versions): a step there may be the "
                       "setup, not the code.")]
    return lines + [""]


def trend_figure(rows: list[dict[str, Any]], family: str, path: Path) -> Path | None:
    """One panel per level: a line per mode (and entity) over the runs, median with
    min–max bars; hollow markers for runs whose key metadata differ from the newest."""
    if not rows:
        return None
    f = FAMILIES[family]
    runs = list(dict.fromkeys(r["run"] for r in rows))
    levels = sorted({r["level"] for r in rows})
    fig, axes = plt.subplots(1, len(levels), figsize=(max(6.0, 0.5 * len(runs) + 3) *
                                                      len(levels) ** 0.5, 4.6),
                             squeeze=False)
    for ax, level in zip(axes[0], levels):
        series: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for r in rows:
            if r["level"] == level:
                series.setdefault((r["mode"], r["entity"]), []).append(r)
        for i, ((mode, entity), pts) in enumerate(series.items()):
            color = MODE_COLORS.get(mode, f"C{i + 4}")
            x = [runs.index(p["run"]) for p in pts]
            med = [p["median"] for p in pts]
            err = [[p["median"] - p["min"] for p in pts], [p["max"] - p["median"] for p in pts]]
            label = f"{mode} {entity}".strip()
            ax.errorbar(x, med, yerr=err, color=color, lw=1.2, capsize=3, label=label)
            same = [(xi, m) for xi, m, p in zip(x, med, pts) if not p["differs"]]
            other = [(xi, m) for xi, m, p in zip(x, med, pts) if p["differs"]]
            if same:
                ax.plot(*zip(*same), "o", color=color, ms=5)
            if other:
                ax.plot(*zip(*other), "o", mfc="white", mec=color, ms=7)
        ax.set_title(f"target {level} rps")
        ax.set_xticks(range(len(runs)), [r[:15] for r in runs], rotation=45, ha="right",
                      fontsize=7)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel(f"{f.label} ({f.unit})")
    fig.suptitle(f"{f.label} across runs: median and min–max across repetitions; "
                 "hollow = key metadata differ from the newest run", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="meshbench trend", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dirs", nargs="+", type=Path, help="run directories or directories of runs")
    p.add_argument("--metric", default="latency_p50", choices=list(FAMILIES))
    p.add_argument("--mode", help="one mode (default: every mode)")
    p.add_argument("--level", type=int, help="one target rps (default: every level)")
    p.add_argument("--include-noisy", action="store_true",
                   help="count the cells the machine's noise contaminated (set aside by "
                        "default)")
    p.add_argument("--png", type=Path, default=Path("trend.png"),
                   help="figure to write (default: trend.png)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        paths = find_runs(args.dirs)
        if not paths:
            raise UserError("no run found", hint="pass run directories or results/")
        runs = sorted((load_run(p, args.include_noisy) for p in paths),
                      key=lambda r: (started(r), r.run_id))
        aside = sum(len(r.set_aside) for r in runs)
        if aside:
            print(f"{aside} cells set aside as contaminated by the machine's noise, over "
                  f"{sum(1 for r in runs if r.set_aside)} runs (--include-noisy counts them)")
        rows = trend_rows(runs, args.metric, args.mode, args.level)
        print("\n".join(format_trend(rows, args.metric, runs[-1].run_id)), end="")
        png = trend_figure(rows, args.metric, args.png)
        if png:
            print(f"\nwrote {png}")
    except BenchError as e:
        return fail(e, "meshbench trend")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
