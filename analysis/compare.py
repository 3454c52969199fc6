"""Compare two runs metric by metric: is B worse, better, or not different beyond noise?

    python -m analysis.compare RUN_A RUN_B [--force] [--threshold PCT] [--metrics p50 cores]
    (meshbench compare; the nightly job's gate is analysis.gate, on the history)

For each headline metric (analysis.headline: latency p50/p99 per mode and level, overhead
over baseline, data-plane cores and PSS per mode, hop p50 when present) it prints the
median [min–max] of A's and B's repetitions and the ratio B/A with its 95 % CI, from the
claims' own machinery (analysis.claimtests.shift): each run's values are per repetition
(overheads over the baseline of the same repetition), and between two runs, whose
repetitions are not blocks of one run, Welch's t on the logs (on b - k a when a value is
<= 0). Worse means B is more than `threshold` (default 10 %, asv's default factor) above
A: the one-sided test of log(B/A) > log(1 + threshold), the threshold applied to the
interval, not the point. Across the metrics compared, Holm's step-down keeps the chance of
any false "worse" at 5 % per comparison (and of any false "better" likewise); "n too small"
when a side has fewer than 2 repetitions.

This is a within-run test: the difference between two runs of one commit on a shared
machine (5-20 % on latency, docs/noise.md) is not in its interval, which is why the nightly
job fails on analysis.gate (history, confirmation) and prints this as information.

Refuses runs whose key metadata differ (scenario hash, backend, Envoy and Istio versions,
CPU model, kernel) unless --force, naming the keys. Exit status: 2 refused (or not a run),
1 when any metric got worse beyond the threshold (after Holm), else 0.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from analysis.claimtests import Ratio, holm, shift
from analysis.fmt import num, spread, table
from analysis.headline import FAMILIES, KEY, headline, select_families
from analysis.metadata import describe_differences, differing_keys
from analysis.rundata import Run, load_run
from bench.errors import BenchError, UserError, fail

WORSE, BETTER = "worse", "better"
NOT_SIGNIFICANT, N_TOO_SMALL, UNDEFINED = "no change beyond the threshold", "n too small", \
    "undefined"
THRESHOLD = 0.10  # asv's default factor (`asv compare --factor 1.1`); the gate's PRACTICAL
FAMILY_ALPHA = 0.05  # per comparison and direction, across the metrics (Holm)


@dataclass(frozen=True)
class Change:
    """One headline metric of one (mode, level, entity) in runs A and B; p values one-sided
    and before Holm's correction."""

    family: str
    mode: str
    level: int
    entity: str
    a: np.ndarray
    b: np.ndarray
    ratio: Ratio | None
    p_worse: float | None
    p_better: float | None
    verdict: str

    @property
    def label(self) -> str:
        f = FAMILIES[self.family]
        return f"{f.label} ({self.entity})" if self.entity else f.label

    @property
    def p_value(self) -> float | None:
        """The p value of the direction B moved in."""
        if self.p_worse is None or self.p_better is None or self.ratio is None:
            return None
        return self.p_worse if self.ratio.ratio >= 1 else self.p_better


def compare_runs(a: Run, b: Run, threshold: float = THRESHOLD,
                 families: list[str] | None = None) -> list[Change]:
    """Every headline metric present in A or B, in family, mode, level order; verdicts
    after Holm's correction across the metrics tested."""
    ha, hb = headline(a, families), headline(b, families)
    groups_a = {k: g["value"].to_numpy(dtype=float) for k, g in ha.groupby(KEY)}
    groups_b = {k: g["value"].to_numpy(dtype=float) for k, g in hb.groupby(KEY)}
    modes = list(dict.fromkeys(b.modes + a.modes))
    order = list(FAMILIES)

    def sort_key(k: tuple) -> tuple:
        family, mode, level, entity = k
        return (order.index(family), modes.index(mode) if mode in modes else len(modes),
                int(level), str(entity))

    empty = np.array([], dtype=float)
    keys = sorted(set(groups_a) | set(groups_b), key=sort_key)
    pairs = [(groups_a.get(k, empty), groups_b.get(k, empty)) for k in keys]
    shifts = [shift(xa, xb, threshold) if min(xa.size, xb.size) >= 2 else None
              for xa, xb in pairs]
    nan = float("nan")
    worse = holm([sh.p_worse if sh else nan for sh in shifts], FAMILY_ALPHA)
    better = holm([sh.p_better if sh else nan for sh in shifts], FAMILY_ALPHA)
    out = []
    for i, (key, (xa, xb), sh) in enumerate(zip(keys, pairs, shifts)):
        family, mode, level, entity = key
        if xa.size == 0 or xb.size == 0:
            verdict = "only in B" if xa.size == 0 else "only in A"
        elif sh is None:
            verdict = N_TOO_SMALL
        else:
            verdict = WORSE if worse[i] else BETTER if better[i] else NOT_SIGNIFICANT
        ratio = sh.ratio if sh else (Ratio(float(np.median(xb) / np.median(xa)), nan, nan)
                                     if xa.size and xb.size and np.median(xa) > 0 else None)
        out.append(Change(str(family), str(mode), int(level), str(entity), xa, xb, ratio,
                          sh.p_worse if sh else None, sh.p_better if sh else None, verdict))
    return out


def comparable(a: Run, b: Run, force: bool) -> list[tuple[str, object, object]]:
    """The key metadata that differ. Raises UserError naming them unless `force`."""
    diffs = differing_keys(a.manifest, b.manifest)
    if diffs and not force:
        raise UserError(f"refusing to compare {a.run_id} with {b.run_id}: key metadata "
                        f"differ: {describe_differences(diffs)}",
                        hint="pass --force to compare anyway")
    return diffs


def _values(x: np.ndarray) -> str:
    if x.size == 0:
        return "—"
    return f"{spread(float(np.median(x)), float(x.min()), float(x.max()))} (n={x.size})"


def _ratio(c: Change) -> str:
    if c.ratio is None:
        return "—"
    if not c.ratio.has_ci:
        return f"{c.ratio.ratio:.3f} (no CI)"
    return f"{c.ratio.ratio:.3f} [{c.ratio.lo:.3f}–{c.ratio.hi:.3f}]"


def format_changes(changes: list[Change], a: Run, b: Run, threshold: float,
                   diffs: list[tuple[str, object, object]]) -> list[str]:
    """The comparison as Markdown lines (readable in a terminal and a CI summary)."""
    lines = [f"# meshbench compare: A = {a.run_id}, B = {b.run_id}", ""]
    lines += set_aside_lines(a, b)
    if diffs:
        lines += [(f"WARNING: key metadata differ (compared because of --force): "
                   f"{describe_differences(diffs)}"), ""]
    rows = [[c.label, c.mode, str(c.level), _values(c.a), _values(c.b), _ratio(c),
             "—" if c.p_value is None else f"{c.p_value:.3g}", c.verdict] for c in changes]
    if not rows:
        return lines + ["No headline metric in either run.", ""]
    lines += table(["metric", "mode", "target (rps)", "A: median [min–max] (n)",
                    "B: median [min–max] (n)", "B/A [95 % CI]",
                    f"p (one-sided, beyond {num(100 * threshold)} %)", "verdict"], rows)
    tested = sum(c.p_worse is not None for c in changes)
    lines += ["", (f"Lower is better for every metric. worse = B more than "
                   f"{num(100 * threshold)} % above A (one-sided Welch t on the logs of the "
                   f"repetitions, the threshold applied to the interval), better likewise "
                   f"below; Holm's correction across the {tested} metrics tested keeps the "
                   f"chance of any false worse at {100 * FAMILY_ALPHA:g} % per comparison. The "
                   "interval holds the repetition-to-repetition noise of each run, not a "
                   "shift of a whole run: the nightly job fails on `make gate` (history, "
                   "confirmation), not on this.")]
    worse = [c for c in changes if c.verdict == WORSE]
    if worse:
        lines += ["", "Worse beyond the threshold: " + "; ".join(
            f"{c.label}, {c.mode} at {c.level} rps ×{c.ratio.ratio:.3f}"
            for c in worse if c.ratio is not None) + "."]
    if not tested:
        lines += ["", "Nothing could be tested: each run needs 2 or more repetitions."]
    return lines + [""]


def set_aside_lines(*runs: Run) -> list[str]:
    """One line per run with cells set aside as contaminated by the machine's noise."""
    out = []
    for name, run in zip("AB", runs):
        if run.set_aside:
            why = next(iter(run.set_aside.values()))
            out.append(f"- {name}: {len(run.set_aside)} cells set aside as contaminated by the "
                       f"machine's noise (e.g. {why}); --include-noisy counts them")
    return out + [""] if out else []


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="meshbench compare", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_a", help="the reference run directory (e.g. last night's)")
    p.add_argument("run_b", help="the run to judge against it")
    p.add_argument("--force", action="store_true",
                   help="compare even when key metadata differ (a warning is printed)")
    p.add_argument("--threshold", type=float, default=100 * THRESHOLD, metavar="PCT",
                   help="smallest change in %% that counts (default: 10, asv's default "
                        "factor)")
    p.add_argument("--metrics", nargs="+", metavar="NAME",
                   help=f"families to compare, by name or part of one: {', '.join(FAMILIES)}")
    p.add_argument("--include-noisy", action="store_true",
                   help="count the cells the machine's noise contaminated (set aside by "
                        "default: bench/probes/noise.py)")
    p.add_argument("--json", type=Path, metavar="FILE",
                   help="also write the outcome as JSON (status ok / worse / refused / error, "
                        "exit code, the worse metrics): for CI, where `make` turns every "
                        "failing exit status into 2")
    return p


def summary(changes: list[Change], status: str, code: int, **extra: Any) -> dict[str, Any]:
    """The outcome as a JSON-able dict (see --json)."""
    counts: dict[str, int] = {}
    for c in changes:
        counts[c.verdict] = counts.get(c.verdict, 0) + 1
    worse = [{"metric": c.family, "mode": c.mode, "level": c.level, "entity": c.entity,
              "ratio": c.ratio.ratio, "lo": c.ratio.lo, "hi": c.ratio.hi, "p": c.p_worse}
             for c in changes if c.verdict == WORSE and c.ratio is not None]
    return {"status": status, "exit_code": code, "counts": counts, "worse": worse, **extra}


def main(argv: list[str] | None = None) -> int:
    """CLI; see the module docstring for the exit status."""
    args = parser().parse_args(argv)
    outcome: dict[str, Any] | None = None
    try:
        if args.threshold < 0:
            raise UserError(f"--threshold {args.threshold}: give a percentage >= 0")
        try:
            families = select_families(args.metrics)
        except ValueError as e:
            raise UserError(str(e)) from None
        a = load_run(args.run_a, args.include_noisy)
        b = load_run(args.run_b, args.include_noisy)
        try:
            diffs = comparable(a, b, args.force)
        except UserError as e:
            outcome = summary([], "refused", e.exit_code, message=e.one_line(),
                              differing_keys=[k for k, _, _ in
                                              differing_keys(a.manifest, b.manifest)])
            raise
        threshold = args.threshold / 100
        changes = compare_runs(a, b, threshold, families)
        print("\n".join(format_changes(changes, a, b, threshold, diffs)), end="")
        code = 1 if any(c.verdict == WORSE for c in changes) else 0
        outcome = summary(changes, "worse" if code else "ok", code, run_a=a.run_id,
                          run_b=b.run_id, threshold_pct=args.threshold,
                          differing_keys=[k for k, _, _ in diffs])
    except BenchError as e:
        code = fail(e, "meshbench compare")
        if outcome is None:
            outcome = summary([], "error", e.exit_code, message=e.one_line())
    if args.json:
        args.json.write_text(json.dumps(outcome, indent=2) + "\n")
    return code


def main_trend(argv: list[str] | None = None) -> int:
    """`meshbench trend`: see analysis.trend."""
    from analysis.trend import main as trend_main

    return trend_main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
