"""The nightly gate on history (issue #22): a handful of declared metrics, each night's value
held against the rolling history of green nights, flagged only outside the history's
prediction interval *and* past a practical threshold, and failing the job only when the
next night (or a rerun) flags the same metric again.

Why not `compare` against last night: two runs of one commit differ by more than any fixed
threshold surprisingly often on a shared machine (docs/noise.md: two quiet default runs
agree within 10 % on p50 overheads about half of the time), and a pairwise test over ~70
metrics false-alarms most nights. The gate instead learns each metric's night-to-night
spread from the history itself.

Rule, per gate metric (lower is better; on the log scale):
- history: the last `HISTORY` green nights' values (each night's value is the median of its
  repetitions, contaminated cells set aside); at least `MIN_HISTORY` of them;
- centre = mean, spread = standard deviation (floored at `SD_FLOOR`): under normal
  night-to-night scatter the interval below is exact, where a robust estimate from 5-10
  nights is not (measured: more false alarms); a failing night never enters the history;
- upper = centre + t(1 - ALPHA / m, n - 1) x spread x sqrt(1 + 1/n): a one-sided
  prediction interval, Bonferroni over the m gate metrics judged tonight;
- flagged: above `upper` and at least `PRACTICAL` (10 %, asv's default factor) above the
  centre; confirmed: flagged tonight and on the night before (the previous gate.json);
  the job fails only on a confirmed regression.

    python -m analysis.gate NIGHT_RUN HISTORY_DIR [--json gate.json]

Measured on synthetic histories drawn with this machine's spreads:
benchmarks/bench_gate.py, benchmarks/results/gate.json.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from scipy.stats import t as student_t

from analysis.claims import reference_level
from analysis.headline import headline
from analysis.rundata import Run, load_run
from bench.errors import BenchError, UserError, fail
from bench.scenario import MESH_MODES

HISTORY = 10
MIN_HISTORY = 5
# per night, shared by the gate metrics (Bonferroni); with the second night's confirmation
# the simulated false alarms stay at ~1.4 % of nights (benchmarks/results/gate.json), where
# 0.01 left ~0.03 % and caught nothing below a doubling
ALPHA = 0.2
PRACTICAL = 0.10
SD_FLOOR = 0.02  # a metric that never varied still moves by 2 % without meaning anything
GATE_FAMILIES = ("dataplane_cores", "overhead_p50", "overhead_p99")


def night_values(run: Run) -> dict[str, float]:
    """The gate metrics of one night: per mesh mode at the reference level (closest to
    1000 rps), the median over repetitions of data-plane cores and the p50 and p99
    overheads; and per change and mode, the bytes pushed."""
    h = headline(run, list(GATE_FAMILIES))
    out: dict[str, float] = {}
    if not h.empty:
        ref = reference_level(sorted({int(v) for v in h["level"]}))
        for (family, mode), g in h[(h["level"] == ref) & (h["entity"] == "")].groupby(
                ["family", "mode"]):
            if mode in MESH_MODES and len(g):
                out[f"{family} {mode} @{ref}"] = float(g["value"].median())
    xds = run.without_failed(run.rows("xds", "push_bytes_total", entity="mesh"))
    if not xds.empty:
        exp = run.label("experiment").loc[xds.index]
        for (e, mode), g in xds.assign(experiment=exp).groupby(["experiment", "mode"]):
            if mode in MESH_MODES:
                out[f"push_bytes {mode} {e}"] = float(g["value"].median())
    return out


@dataclass(frozen=True)
class Judged:
    metric: str
    value: float
    nights: int  # history nights with the metric
    centre: float | None = None
    upper: float | None = None
    ratio: float | None = None  # value / centre
    flagged: bool = False
    confirmed: bool = False
    note: str = ""


def judge_metric(history: Sequence[float], value: float, m: int
                 ) -> tuple[float | None, float | None, bool, str]:
    """(centre, upper, flagged, note) of one metric against its history (see the module
    docstring); `m` gate metrics share ALPHA tonight."""
    hist = [math.log(x) for x in history if x > 0]
    if len(hist) < MIN_HISTORY:
        return None, None, False, f"{len(hist)} of {MIN_HISTORY} history nights"
    if value <= 0:
        return None, None, False, "value <= 0: no ratio"
    n = len(hist)
    centre = sum(hist) / n
    sd = max(SD_FLOOR, math.sqrt(sum((x - centre) ** 2 for x in hist) / (n - 1)))
    q = float(student_t.ppf(1 - ALPHA / max(1, m), n - 1))
    upper = centre + q * sd * math.sqrt(1 + 1 / n)
    v = math.log(value)
    flagged = v > upper and math.exp(v - centre) - 1 >= PRACTICAL
    return math.exp(centre), math.exp(upper), flagged, ""


def judge(history: Sequence[Mapping[str, float]], night: Mapping[str, float],
          flagged_before: set[str] | frozenset[str] = frozenset()) -> list[Judged]:
    """Every metric of `night` against the last HISTORY nights of `history` (oldest
    first)."""
    recent = list(history)[-HISTORY:]
    judged_n = sum(1 for k in night if sum(1 for h in recent if k in h) >= MIN_HISTORY)
    out = []
    for k, v in sorted(night.items()):
        past = [h[k] for h in recent if k in h]
        centre, upper, flagged, note = judge_metric(past, v, judged_n)
        out.append(Judged(k, v, len(past), centre, upper,
                          v / centre if centre else None, flagged,
                          flagged and k in flagged_before, note))
    return out


def flags_of(run: Run) -> set[str]:
    """The metrics the gate flagged on `run`'s night (its gate.json; none without one)."""
    path = run.run_dir / "gate.json"
    return set(json.loads(path.read_text()).get("flagged", [])) if path.is_file() else set()


def without_flagged(values: Mapping[str, float], flagged: set[str]) -> dict[str, float]:
    """A night as history: a metric flagged that night stays out of its history (else one
    regressed night widens the band enough to hide the next)."""
    return {k: v for k, v in values.items() if k not in flagged}


def is_green(manifest: Mapping[str, Any]) -> bool:
    """A run that finished without failing: the only kind the history takes."""
    return manifest.get("exit_status") in ("ok", 0)


def _history(paths: Sequence[Path], exclude: Path) -> list[Run]:
    from analysis.trend import find_runs, started

    runs = [load_run(p) for p in find_runs(list(paths)) if p.resolve() != exclude.resolve()]
    green = [r for r in runs if is_green(r.manifest)]
    return sorted(green, key=lambda r: (started(r), r.run_id))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m analysis.gate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("night", type=Path, help="tonight's run directory")
    p.add_argument("history", nargs="+", type=Path,
                   help="earlier runs, or directories of runs (green ones are used)")
    p.add_argument("--json", type=Path, help="write the outcome (gate.json) here too")
    args = p.parse_args(argv)
    try:
        night = load_run(args.night)
        past = _history(args.history, args.night)
        history = [without_flagged(night_values(r), flags_of(r)) for r in past]
        before = flags_of(past[-1]) if past else set()  # the previous night's flags
        judged = judge(history, night_values(night), before)
    except BenchError as e:
        return fail(e, "meshbench gate")
    except (OSError, ValueError) as e:
        return fail(UserError(f"gate: {e}"), "meshbench gate")
    flagged = [j.metric for j in judged if j.flagged]
    confirmed = [j.metric for j in judged if j.confirmed]
    outcome: dict[str, Any] = {"night": night.run_id, "history": [r.run_id for r in past],
                               "flagged": flagged, "confirmed": confirmed,
                               "metrics": [asdict(j) for j in judged]}
    for path in [night.run_dir / "gate.json", *([args.json] if args.json else [])]:
        path.write_text(json.dumps(outcome, indent=1) + "\n")
    for j in judged:
        state = ("CONFIRMED REGRESSION" if j.confirmed else "flagged (needs a second night)"
                 if j.flagged else "ok" if j.centre else j.note)
        band = f" (history {j.centre:.4g}, upper {j.upper:.4g}, x{j.ratio:.2f})" if (
            j.centre and j.upper and j.ratio) else ""
        print(f"{j.metric}: {j.value:.4g}{band}: {state}")
    print(f"gate: {len(judged)} metrics, {len(past)} history nights, {len(flagged)} flagged, "
          f"{len(confirmed)} confirmed")
    return 1 if confirmed else 0


if __name__ == "__main__":
    raise SystemExit(main())
