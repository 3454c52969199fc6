"""One headline metric across many runs in time order (e.g. the nightly history): each run
held against the band of the runs before it, and the change points of each series.

    python -m analysis.trend [--metric latency_p50] [--mode sidecar] [--level 200]
                             [--png trend.png] DIR [DIR ...]
    meshbench trend ...        (make trend RUNS=... TREND_ARGS=...)

DIR is a run directory or a directory of runs (e.g. results/). Runs are ordered by their
manifest's start time. A series is one mode and level (and entity) of the metric; a run's
value in it is the median across the run's repetitions. Printed per run and series: median
[min–max], n, the band and where the value stands against it, and whether the run's key
metadata differ from the newest run's (a different machine, kernel, scenario or version: its
numbers are not comparable with it); then each series' change points. The PNG draws the same.

Band: the nightly gate's own rule (analysis/gate.py; `gate.judge` itself), rolled over the
runs. Each run is judged against the series' values in the last HISTORY (10) earlier green
runs (exit status ok), at least MIN_HISTORY (5) of them, else "too little history".
On the log scale the centre is their mean and the upper bound the one-sided prediction bound
centre + t(1 - ALPHA/m, n - 1) x sd x sqrt(1 + 1/n), sd floored at SD_FLOOR, m the series
judged at that run (Bonferroni, as the gate shares ALPHA between its metrics). "above band":
above the upper bound and at least PRACTICAL (10 %) above the centre, which is what the gate
would flag; such a value stays out of the later runs' bands, as a flagged metric stays out of
the gate's history, so a lasting step keeps reading "above band" until it is dealt with.

Change points, per series of at least MIN_RUNS (6) runs, else "too few runs for change
points": on the log values, the segmentation that minimizes the within-segment sum of squares
plus a penalty per change point, every segment at least MIN_SEGMENT (3) runs (ruptures' PELT,
model "l2", jump 1: the exact minimizer; Killick, Fearnhead & Eckley 2012). A change point is
the first run of the new level (Apache Otava's convention too), reported with the geometric
means of the segments before and after it and their ratio. The penalty:

    pen = PENALTY_K x sigma^2 x ln(n),  PENALTY_K = 4

- 2 sigma^2 ln(n) would be BIC for a shift in mean with known variance (two parameters per
  change point: where, and the new level). sigma is estimated from the same 6-30 runs and
  the best split is searched over all of them, so BIC finds a change in ~15 % of stable
  10-30-run histories; twice BIC keeps that to a few percent (measured below);
- sigma, the run-to-run noise, from successive differences (a step moves one difference, not
  the others): sqrt(mean of the squared differences without the largest tenth, at least
  one) / sqrt(2), divided by the trimmed normal's second moment (sqrt(1 - 2 c phi(c) /
  (1 - p)), c = Phi^-1(1 - p/2), p the share dropped) and floored at the gate's SD_FLOOR
  (2 %: a series that never varied still moves by 2 % without meaning anything);
- not the MAD of the differences / sqrt(2): at 37 % efficiency it is too noisy at 10-20
  runs (with the same k it found a change in 14.5 % of stable 10-run histories), and as a
  lone outlier night cannot move it, PELT then splits around the outlier (34 % of stable
  20-run histories with one +50 % night); the trimmed mean keeps one step out of sigma while
  an outlier's two large differences widen it (0 %).

Measured over 200 seeded histories per case, log-sd 0.06 (benchmarks/bench_trend.py,
benchmarks/results/trend-changepoints.json; above the 2 % floor the false rates hold for any
noise level, since the cost and the penalty both scale with sigma^2): a change point
in a stable history in 4 % (10 runs), 3 % (20) and 1.5 % (30) of histories, per series; a
step from run 12 of 20 found (exactly one change point, within one run of the step) in 80 %
of histories at +15 % and 99.5 % at +30 % (k = 3: 5.5 % false at 20 runs, 86 % at +15 %;
k = 5: 0.5 % and 73.5 %).

Read, not copied: E-Divisive (Matteson & James, JASA 2014, arXiv:1306.4933), which MongoDB
runs on its performance history (Daly et al., "Change Point Detection in Software
Performance Testing", ICPE 2020), and Hunter / Apache Otava (Fleming et al., ICPE 2023,
arXiv:2301.03034; apache/otava/docs/MATH.md), which replaced E-Divisive's permutation test with a
Student t-test to make the answer deterministic. Taken from them: a change point names the
first run of the new level, and the answer must not depend on a random draw (here the
penalty is a fixed function of the data). Not taken: E-Divisive's energy distance also
reacts to changes in spread and shape; on a series of medians the question is a change of
level, for which the penalized least squares above is exact and its false-alarm rate can be
set from the noise.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import ruptures
from scipy.stats import norm

from analysis import gate
from analysis.figures import MODE_COLORS
from analysis.fmt import num, spread, table
from analysis.headline import FAMILIES, headline
from analysis.metadata import differing_keys
from analysis.rundata import Run, load_run
from bench.errors import BenchError, UserError, fail

ABOVE, WITHIN, TOO_LITTLE, NOT_POSITIVE = ("above band", "within", "too little history",
                                           "value <= 0: no band")
MIN_SEGMENT = 3
MIN_RUNS = 2 * MIN_SEGMENT
PENALTY_K = 4.0
TRIM = 0.10  # share of the largest successive differences left out of the noise estimate
TOO_FEW = "too few runs for change points"


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


def series_name(mode: str, level: int, entity: str = "") -> str:
    return f"{mode} @{level}" + (f" {entity}" if entity else "")


def trend_rows(runs: list[Run], family: str, mode: str | None,
               level: int | None) -> list[dict[str, Any]]:
    """Per run (oldest first), mode, level and entity: median, min, max, n, the key
    metadata that differ from the newest run, whether the run is green, and the band (see
    `add_bands`)."""
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
                        "series": series_name(str(m), int(lv), str(entity)),
                        "median": float(np.median(v)), "min": float(v.min()),
                        "max": float(v.max()), "n": int(v.size), "differs": diffs,
                        "green": gate.is_green(run.manifest)})
    return add_bands(out)


def add_bands(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each row (oldest run first) with its rolling band by the gate's rule: "centre" and
    "upper" (None without one), "history" (earlier values it was judged on) and "band"
    (ABOVE, WITHIN, TOO_LITTLE or NOT_POSITIVE). The history is the earlier green runs,
    without the values their own band put above it (gate.without_flagged)."""
    history: list[dict[str, float]] = []
    out: list[dict[str, Any]] = []
    for run in dict.fromkeys(r["run"] for r in rows):
        mine = [r for r in rows if r["run"] == run]
        night = {r["series"]: r["median"] for r in mine}
        judged = {j.metric: j for j in gate.judge(history, night)}
        for r in mine:
            j = judged[r["series"]]
            verdict = (NOT_POSITIVE if j.value <= 0 else TOO_LITTLE if j.centre is None
                       else ABOVE if j.flagged else WITHIN)
            out.append({**r, "centre": j.centre, "upper": j.upper, "history": j.nights,
                        "band": verdict})
        if mine[0]["green"]:
            history.append(gate.without_flagged(
                night, {j.metric for j in judged.values() if j.flagged}))
    return out


# --- change points ----------------------------------------------------------------------------

def noise_sd(logs: Sequence[float] | np.ndarray) -> float:
    """The run-to-run noise of a series of log values, from its successive differences
    without the largest TRIM of them (at least one), floored at gate.SD_FLOOR (see the
    module docstring)."""
    d = np.sort(np.abs(np.diff(np.asarray(logs, dtype=float))))
    if d.size < 2:
        return gate.SD_FLOOR
    drop = min(d.size - 1, max(1, int(TRIM * d.size)))
    p = drop / d.size
    c = float(norm.ppf(1 - p / 2))
    second_moment = 1 - 2 * c * float(norm.pdf(c)) / (1 - p)
    var = float(np.mean(d[:d.size - drop] ** 2)) / (2 * second_moment)
    return max(gate.SD_FLOOR, math.sqrt(var))


def penalty(logs: Sequence[float] | np.ndarray) -> float:
    """PENALTY_K x sigma^2 x ln(n): twice BIC for a shift in mean (module docstring)."""
    return PENALTY_K * noise_sd(logs) ** 2 * math.log(len(logs))


def change_indices(values: Sequence[float]) -> list[int]:
    """Where each new level starts (indices into `values`, which must be > 0 and at least
    MIN_RUNS long): PELT on the log values with `penalty`."""
    logs = np.log(np.asarray(values, dtype=float))
    if logs.size < MIN_RUNS:
        raise ValueError(f"{logs.size} values: at least {MIN_RUNS} needed")
    algo = ruptures.Pelt(model="l2", min_size=MIN_SEGMENT, jump=1).fit(logs.reshape(-1, 1))
    return [int(b) for b in algo.predict(pen=penalty(logs))[:-1]]


@dataclass(frozen=True)
class ChangePoint:
    run: str  # the first run of the new level
    index: int  # its position in the series
    before: float  # geometric mean of the segment before
    after: float  # and of the segment from it
    metadata: tuple[str, ...] = ()  # key metadata that differ from the run before

    @property
    def ratio(self) -> float:
        return self.after / self.before


@dataclass(frozen=True)
class SeriesChanges:
    series: str
    mode: str
    level: int
    entity: str
    runs: int
    sigma: float | None = None  # run-to-run noise (log sd), None when not analysed
    points: tuple[ChangePoint, ...] = ()
    note: str = ""  # why there is no analysis


def series_changes(rows: Sequence[dict[str, Any]],
                   manifests: Mapping[str, dict[str, Any]] | None = None
                   ) -> list[SeriesChanges]:
    """Change points of every series in `rows` (oldest run first). With the runs'
    manifests, each change point also names the key metadata that changed at it."""
    out = []
    for name in dict.fromkeys(r["series"] for r in rows):
        pts = [r for r in rows if r["series"] == name]
        first = pts[0]
        base = dict(series=name, mode=first["mode"], level=first["level"],
                    entity=first["entity"], runs=len(pts))
        values = [p["median"] for p in pts]
        if len(pts) < MIN_RUNS:
            out.append(SeriesChanges(**base, note=f"{TOO_FEW} ({len(pts)} of {MIN_RUNS})"))
            continue
        if min(values) <= 0:
            out.append(SeriesChanges(**base, note="values <= 0: no log scale"))
            continue
        logs = np.log(values)
        cuts = change_indices(values)
        bounds = [0, *cuts, len(values)]
        seg = [float(np.exp(logs[a:b].mean())) for a, b in zip(bounds, bounds[1:])]
        points = []
        for i, cut in enumerate(cuts):
            meta: tuple[str, ...] = ()
            if manifests is not None:
                meta = tuple(k for k, _, _ in differing_keys(
                    manifests[pts[cut - 1]["run"]], manifests[pts[cut]["run"]]))
            points.append(ChangePoint(pts[cut]["run"], cut, seg[i], seg[i + 1], meta))
        out.append(SeriesChanges(**base, sigma=noise_sd(logs), points=tuple(points)))
    return out


def _when(epoch: float) -> str:
    if not epoch:
        return "not recorded"
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%d %H:%M")


def _band_text(r: dict[str, Any]) -> str:
    if r["centre"] is None:
        return (f"{r['history']} of {gate.MIN_HISTORY} earlier runs" if r["band"] == TOO_LITTLE
                else "–")
    return f"{num(r['centre'])} / {num(r['upper'])} ({r['history']} runs)"


def format_changes(changes: Sequence[SeriesChanges], unit: str) -> list[str]:
    if not changes:
        return []
    lines = ["## Change points", ""]
    if all(c.note.startswith(TOO_FEW) for c in changes):
        most = max(c.runs for c in changes)
        return lines + [f"{TOO_FEW}: {most} runs at most in a series, at least {MIN_RUNS} "
                        "needed.", ""]
    entity = any(c.entity for c in changes)
    body = []
    for c in changes:
        lead = [c.mode, str(c.level), *([c.entity] if entity else []), str(c.runs),
                "–" if c.sigma is None else f"{100 * c.sigma:.1f} %" + (
                    " (floor)" if c.sigma <= gate.SD_FLOOR else "")]
        if c.note:
            body.append([*lead, c.note, "–", "–", ""])
        elif not c.points:
            body.append([*lead, "none", "–", "–", ""])
        for p in c.points:
            body.append([*lead, p.run, f"{num(p.before)} → {num(p.after)}",
                         f"x{p.ratio:.2f}",
                         ("key metadata changed: " + ", ".join(p.metadata)) if p.metadata
                         else ""])
    headers = ["mode", "target (rps)", *(["entity"] if entity else []), "runs",
               "run-to-run noise", "new level from run", f"level before → after ({unit})",
               "ratio", "note"]
    lines += table(headers, body)
    lines += ["", (f"PELT on the log of each run's median, every level at least {MIN_SEGMENT} "
                   f"runs, penalty {PENALTY_K:g} x noise² x ln(runs); levels are geometric "
                   "means of the runs between change points.")]
    return lines + [""]


def format_trend(rows: list[dict[str, Any]], family: str, newest: str,
                 changes: Sequence[SeriesChanges] = ()) -> list[str]:
    f = FAMILIES[family]
    lines = [f"# meshbench trend: {f.label} ({f.unit})", ""]
    if not rows:
        return lines + ["No run has this metric.", ""]
    entity = any(x["entity"] for x in rows)
    body = [[r["run"], _when(r["started"]), r["mode"], str(r["level"]),
             *([r["entity"]] if entity else []),
             spread(r["median"], r["min"], r["max"]), str(r["n"]), _band_text(r), r["band"],
             ("differs: " + ", ".join(r["differs"])) if r["differs"] else "same"]
            for r in rows]
    headers = ["run", "started (UTC)", "mode", "target (rps)", *(["entity"] if entity else []),
               f"{f.label}: median [min–max] ({f.unit})", "n",
               "band: centre / upper (earlier runs)", "vs band", f"key metadata vs {newest}"]
    lines += table(headers, body)
    lines += ["", (f"Band: the nightly gate's rule on the earlier green runs (the last "
                   f"{gate.HISTORY}, at least {gate.MIN_HISTORY}): \"above band\" is above "
                   f"their one-sided prediction bound and at least {100 * gate.PRACTICAL:.0f} % "
                   "above their centre (geometric mean), what the gate would flag; such a "
                   "value stays out of the later bands.")]
    if any(not r["green"] for r in rows):
        red = list(dict.fromkeys(r["run"] for r in rows if not r["green"]))
        lines += ["", f"Not green (kept out of every band): {', '.join(red)}."]
    if any(r["differs"] for r in rows):
        lines += ["", ("Runs marked \"differs\" ran on other key metadata than the newest "
                       "(machine, kernel, scenario or versions): a step there may be the "
                       "setup, not the code.")]
    return lines + [""] + format_changes(changes, f.unit)


def trend_figure(rows: list[dict[str, Any]], family: str, path: Path,
                 changes: Sequence[SeriesChanges] = ()) -> Path | None:
    """One panel per level: a line per mode (and entity) over the runs, median with
    min–max bars; hollow markers for runs whose key metadata differ from the newest; the
    rolling band (centre dashed, up to the upper bound shaded, the practical threshold
    dotted), red rings on runs above it; a vertical line before each change point."""
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
            centre = np.array([np.nan if p["centre"] is None else p["centre"] for p in pts])
            upper = np.array([np.nan if p["upper"] is None else p["upper"] for p in pts])
            has = np.isfinite(centre)
            if has.any():
                ax.fill_between(x, centre, upper, where=has, step="mid", color=color,
                                alpha=0.15, lw=0)
                ax.step(x, centre, where="mid", color=color, lw=0.8, ls="--")
                ax.step(x, centre * (1 + gate.PRACTICAL), where="mid", color=color, lw=0.8,
                        ls=":")
            above = [(xi, m) for xi, m, p in zip(x, med, pts) if p["band"] == ABOVE]
            if above:
                ax.plot(*zip(*above), "o", mfc="none", mec="red", mew=1.5, ms=11)
            for c in changes:
                if (c.mode, c.level, c.entity) != (mode, level, entity):
                    continue
                for cp in c.points:
                    xc = runs.index(cp.run) - 0.5
                    ax.axvline(xc, color=color, lw=1.2, ls="-.", alpha=0.8)
                    ax.annotate(f"x{cp.ratio:.2f}", (xc, 1.0), xycoords=("data", "axes fraction"),
                                xytext=(2, -10), textcoords="offset points", fontsize=7,
                                color=color)
        ax.set_title(f"target {level} rps")
        ax.set_xticks(range(len(runs)), [r[:15] for r in runs], rotation=45, ha="right",
                      fontsize=7)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel(f"{f.label} ({f.unit})")
    title = (f"{f.label} across runs: median and min–max across repetitions; hollow = key "
             "metadata differ from the newest run. Band from the earlier green runs (the "
             f"gate's rule): centre dashed, up to the upper bound shaded, +{100 * gate.PRACTICAL:.0f}"
             " % dotted; red ring = above band; dash-dot line = change point")
    fig.suptitle(textwrap.fill(title, int(fig.get_figwidth() * 15)), fontsize=8)
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
        changes = series_changes(rows, {r.run_id: r.manifest for r in runs})
        print("\n".join(format_trend(rows, args.metric, runs[-1].run_id, changes)), end="")
        png = trend_figure(rows, args.metric, args.png, changes)
        if png:
            print(f"\nwrote {png}")
    except BenchError as e:
        return fail(e, "meshbench trend")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
