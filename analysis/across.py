"""Verdicts across runs: each primary claim's ratio in this run and in the earlier
compatible runs beside it (same key metadata: scenario, backend, versions, CPU model,
kernel; finished green), as one sample per run (analysis.claimtests.across_runs).

A run's own CI covers the noise between its repetitions, not a shift of the whole run (two
quiet runs of one commit differ by 5-20 % on latency here, docs/noise.md); the spread of
the runs' ratios is that shift, so a verdict across runs carries it. With 2 runs the t
quantile is 12.7: the interval is honest about how little two runs show.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from analysis.claims import ClaimRow, claim_rows
from analysis.claimtests import NON_INFERIORITY, SUPERIORITY, Outcome, across_runs
from analysis.metadata import differing_keys
from analysis.rundata import Run, load_run
from bench.errors import BenchError

MAX_RUNS = 10  # this run and up to 9 before it


@dataclass(frozen=True)
class Across:
    """One primary row's verdict across `runs` (run ids, oldest first, this run last)."""

    runs: tuple[str, ...]
    result: Outcome

    def text(self) -> str:
        r = self.result.ratio
        assert r is not None
        return (f"across {len(self.runs)} compatible runs: {r.ratio:.2f}x "
                f"[{r.lo:.2f}–{r.hi:.2f}], {self.result.verdict}")


def earlier_runs(run: Run, limit: int = MAX_RUNS - 1) -> tuple[list[Run], list[str]]:
    """The green runs beside `run` (in its parent directory) that started before it and
    share its key metadata, newest `limit`, oldest first; and the directories that could
    not be read, named so the report can say so."""
    from analysis.gate import is_green
    from analysis.trend import find_runs, started

    here = started(run)
    out, unreadable = [], []
    for path in find_runs([run.run_dir.parent]):
        if path.resolve() == run.run_dir.resolve():
            continue
        try:
            other = load_run(path, run.include_noisy)
        except BenchError as e:
            unreadable.append(f"{path.name}: {e.one_line()}")
            continue
        if (is_green(other.manifest) and started(other) < here
                and not differing_keys(run.manifest, other.manifest)):
            out.append(other)
    out.sort(key=started)
    return out[-limit:] if limit > 0 else [], unreadable


def _method(row: ClaimRow) -> tuple[str, str]:
    """The test and its scale, without the repetition count: rows of two runs compare
    when these agree."""
    parts = row.result.test.split(";")
    return parts[0], parts[1].split(",")[0] if len(parts) > 1 else ""


def _key(row: ClaimRow) -> tuple[str, str, int | None]:
    return row.claim, row.tested, row.level


def across(rows: Sequence[ClaimRow], runs: Sequence[Run],
           run_id: str) -> dict[tuple[str, str, int | None], Across]:
    """Per primary row of this run with a ratio > 0 and a statistical test (not exact
    counts): the verdict over this run and the `runs` where the same row has one."""
    earlier = [(r.run_id, {_key(x): x for x in claim_rows(r) if x.primary}) for r in runs]
    out = {}
    for row in rows:
        ratio = row.result.ratio
        if (not row.primary or ratio is None or not ratio.ratio > 0
                or row.result.test.startswith("exact") or not row.result.test):
            continue
        ids, values = [], []
        for rid, by_key in earlier:
            other = by_key.get(_key(row))
            if other is not None and other.result.ratio is not None and \
                    other.result.ratio.ratio > 0 and _method(other) == _method(row):
                ids.append(rid)
                values.append(other.result.ratio.ratio)
        if not values:
            continue
        kind = NON_INFERIORITY if row.result.test.startswith("non-inferiority") else SUPERIORITY
        out[_key(row)] = Across((*ids, run_id), across_runs([*values, ratio.ratio], kind))
    return out
