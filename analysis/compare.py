"""Compare two runs metric by metric: is B better, worse, or not significantly different?

    python -m analysis.compare RUN_A RUN_B [--force] [--threshold PCT] [--metrics p50 cores]
    (meshbench compare ... once bench/cli.py delegates to `main`)

For each headline metric (analysis.headline: latency p50/p99 per mode and level, overhead
over baseline, data-plane cores and PSS per mode, hop p50 when present) it prints the
median [min–max] of A's and B's repetitions, the ratio B/A of medians with a 95 % bootstrap
CI, the Mann-Whitney p and a verdict: worse / better when p < 0.01 and |B/A - 1| >= the
threshold (default 5 %), "not significant" otherwise, "n too small" when no outcome of
these repetition counts could reach p < 0.01 (5 repetitions per run are needed).

Refuses runs whose key metadata differ (scenario hash, backend, Envoy and Istio versions,
CPU model, kernel) unless --force, naming the keys. Exit status: 2 refused (or not a run),
1 when any metric got significantly worse beyond the threshold, else 0.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from analysis.fmt import num, spread, table
from analysis.headline import FAMILIES, KEY, headline, select_families
from analysis.metadata import describe_differences, differing_keys
from analysis.rundata import Run, load_run
from analysis.stats import ALPHA, MIN_EFFECT, RatioCI, bootstrap_ratio_ci, significance
from bench.errors import BenchError, UserError, fail

WORSE, BETTER = "worse", "better"
NOT_SIGNIFICANT, N_TOO_SMALL, UNDEFINED = "not significant", "n too small", "undefined"


@dataclass(frozen=True)
class Change:
    """One headline metric of one (mode, level, entity) in runs A and B."""

    family: str
    mode: str
    level: int
    entity: str
    a: np.ndarray
    b: np.ndarray
    ratio: RatioCI | None
    p_value: float | None
    verdict: str

    @property
    def label(self) -> str:
        f = FAMILIES[self.family]
        return f"{f.label} ({self.entity})" if self.entity else f.label


def judge(a: np.ndarray, b: np.ndarray, threshold: float) -> tuple[RatioCI | None,
                                                                  float | None, str]:
    """(ratio B/A with CI, Mann-Whitney p, verdict) for lower-is-better values."""
    if a.size == 0:
        return None, None, "only in B"
    if b.size == 0:
        return None, None, "only in A"
    if np.median(a) <= 0:
        return None, None, f"{UNDEFINED} (median of A <= 0)"
    ci = bootstrap_ratio_ci(b, a)
    sig = significance(b, a, min_effect=threshold)
    if sig.verdict == "n too small":
        return ci, sig.p_value, N_TOO_SMALL
    if sig.verdict == "significant":
        return ci, sig.p_value, WORSE if sig.effect > 0 else BETTER
    return ci, sig.p_value, NOT_SIGNIFICANT


def compare_runs(a: Run, b: Run, threshold: float = MIN_EFFECT,
                 families: list[str] | None = None) -> list[Change]:
    """Every headline metric present in A or B, in family, mode, level order."""
    ha, hb = headline(a, families), headline(b, families)
    groups_a = {k: g["value"].to_numpy(dtype=float) for k, g in ha.groupby(KEY)}
    groups_b = {k: g["value"].to_numpy(dtype=float) for k, g in hb.groupby(KEY)}
    modes = list(dict.fromkeys(b.modes + a.modes))
    order = list(FAMILIES)

    def sort_key(k: tuple) -> tuple:
        family, mode, level, entity = k
        return (order.index(family), modes.index(mode) if mode in modes else len(modes),
                int(level), str(entity))

    out = []
    empty = np.array([], dtype=float)
    for key in sorted(set(groups_a) | set(groups_b), key=sort_key):
        xa, xb = groups_a.get(key, empty), groups_b.get(key, empty)
        ratio, p, verdict = judge(xa, xb, threshold)
        family, mode, level, entity = key
        out.append(Change(str(family), str(mode), int(level), str(entity), xa, xb, ratio, p,
                          verdict))
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
    if min(c.a.size, c.b.size) < 2:
        return f"{c.ratio.ratio:.3f} (no CI: n=1)"
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
                    "B: median [min–max] (n)", "B/A [95 % CI]", "Mann-Whitney p", "verdict"],
                   rows)
    counts: dict[str, int] = {}
    for c in changes:
        counts[c.verdict] = counts.get(c.verdict, 0) + 1
    lines += ["", (f"Lower is better for every metric. worse / better = p < {ALPHA} and "
                   f"|B/A - 1| >= {num(100 * threshold)} %; CI: percentile bootstrap over "
                   "repetitions; n too small = these repetition counts cannot reach "
                   f"p < {ALPHA} (5 per run are needed)."),
              "", "Summary: " + ", ".join(f"{n} {v}" for v, n in counts.items()) + "."]
    tested = sum(c.verdict in (WORSE, BETTER, NOT_SIGNIFICANT) for c in changes)
    if tested:
        lines += ["", (f"{tested} metrics were tested; when nothing changed, each shows as "
                       f"worse by chance with probability <= {100 * ALPHA / 2:g} % (before the "
                       f"effect threshold filters it), so up to ~{tested * ALPHA / 2:.2f} false "
                       "alarms per comparison: re-run before acting on a lone worse metric.")]
    worse = [c for c in changes if c.verdict == WORSE]
    if worse:
        lines += ["", "Significantly worse: " + "; ".join(
            f"{c.label}, {c.mode} at {c.level} rps ×{c.ratio.ratio:.3f}"
            for c in worse if c.ratio is not None) + "."]
    if counts.get(N_TOO_SMALL) == len(changes):
        lines += ["", "Nothing could be tested: run more repetitions (5 or more per run)."]
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
    p.add_argument("--threshold", type=float, default=100 * MIN_EFFECT, metavar="PCT",
                   help="smallest change in %% that counts (default: 5)")
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
              "ratio": c.ratio.ratio, "lo": c.ratio.lo, "hi": c.ratio.hi, "p": c.p_value}
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
