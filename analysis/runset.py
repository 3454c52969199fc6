"""The runs one report draws its claims from.

`make bench-sidecar` and `make bench-ambient` each write a run of one mesh mode and the
baseline. A report answers the claims from several runs when they measured the same
thing: by default the newest run of each mesh mode the current run lacks, among the runs
under the same results root that are compatible with it; or an explicit list
(`meshbench report RUN --runs OTHER...`, `make report RUNS="results/a results/b"`).

Compatible = the same scenario apart from its modes (a hash of the manifest's scenario
without `modes`), backend, Envoy and Istio versions, CPU model and kernel: the keys of
`compare` (analysis.metadata.KEY_METADATA) with the scenario hash replaced by the
scenario-apart-from-modes hash. An explicit run that differs is refused, naming the keys;
in the default search it is passed over and the report says so.

Each mode's numbers come from one run; overheads are over that run's own baseline. Two
modes from the same run are compared paired by repetition, from different runs unpaired.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from analysis.metadata import KEY_METADATA, describe_differences, dotted
from analysis.rundata import Run, load_run
from bench.errors import UserError
from bench.scenario import MESH_MODES

SCENARIO_KEY = "scenario (apart from modes)"
PASSED_OVER_SHOWN = 5
COMBINE_KEYS = tuple(k for k in KEY_METADATA if k != "scenario_hash")


def scenario_key(manifest: dict[str, Any]) -> str | None:
    """Hash of the manifest's scenario without its modes (None when none is recorded);
    canonical JSON as bench.scenario.Scenario.hash."""
    scenario = manifest.get("scenario")
    if not isinstance(scenario, dict) or not scenario:
        return None
    rest = {k: v for k, v in scenario.items() if k != "modes"}
    canon = json.dumps(rest, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canon.encode()).hexdigest()[:16]


def combine_differences(a: dict[str, Any], b: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """(key, value in a, value in b) for each key that keeps two runs from being combined.
    A key neither run recorded is not a difference."""
    out = []
    ka, kb = scenario_key(a), scenario_key(b)
    if ka != kb:
        out.append((SCENARIO_KEY, ka, kb))
    for key in COMBINE_KEYS:
        va, vb = dotted(a, key), dotted(b, key)
        if (va is not None or vb is not None) and va != vb:
            out.append((key, va, vb))
    return out


@dataclass(frozen=True, eq=False)
class RunSet:
    """The primary run (the report is written into its directory) and the runs that
    supply the modes it lacks. `sources` maps each mode to the run its numbers come from;
    `passed_over` lists (run id, reason) of runs the default search did not use."""

    primary: Run
    sources: dict[str, Run] = field(default_factory=dict)
    passed_over: tuple[tuple[str, str], ...] = ()

    @property
    def runs(self) -> list[Run]:
        """The primary run first, then each other run that supplies a mode."""
        out = [self.primary]
        for run in self.sources.values():
            if all(run is not r for r in out):
                out.append(run)
        return out

    @property
    def combined(self) -> bool:
        return len(self.runs) > 1

    def run_for(self, mode: str) -> Run:
        """The run whose numbers stand for `mode` (the primary when no run has it)."""
        return self.sources.get(mode, self.primary)

    def paired(self, a: str, b: str) -> bool:
        """Whether modes a and b come from the same run (then paired by repetition)."""
        return self.run_for(a) is self.run_for(b)

    def modes_of(self, run: Run) -> list[str]:
        return [m for m, r in self.sources.items() if r is run]


def _measured_modes(run: Run) -> list[str]:
    return [m for m in run.modes if (run.table["mode"] == m).any()]


def single(run: Run) -> RunSet:
    return RunSet(run, {m: run for m in _measured_modes(run)})


def _started(run_dir: Path, manifest: dict[str, Any]) -> float:
    started = manifest.get("started")
    if isinstance(started, (int, float)):
        return float(started)
    return (run_dir / "manifest.json").stat().st_mtime


def discover(primary: Run, root: Path | None = None) -> RunSet:
    """The primary run plus, for each mesh mode it did not measure, the newest compatible
    run under `root` (default: the primary's parent directory) that declares that mode.
    Runs still going, interrupted or ended by an error (exit_status "running",
    "interrupted", "error: ...") are not used; runs with some failed cells are (their
    failed cells are left out as everywhere)."""
    sources = {m: primary for m in _measured_modes(primary)}
    needed = [m for m in MESH_MODES if m not in sources]
    root = primary.run_dir.parent if root is None else root
    if not needed or not root.is_dir():
        return RunSet(primary, sources)
    candidates = []
    for path in root.glob("*/manifest.json"):
        run_dir = path.parent
        if run_dir.resolve() == primary.run_dir.resolve():
            continue
        try:
            manifest = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        candidates.append((_started(run_dir, manifest), run_dir, manifest))
    passed: list[tuple[str, str]] = []
    for _, run_dir, manifest in sorted(candidates, key=lambda c: c[0], reverse=True):
        declared = [str(m) for m in (manifest.get("scenario") or {}).get("modes", [])]
        offers = [m for m in needed if m in declared]
        if not offers:
            continue
        run_id = str(manifest.get("run_id", run_dir.name))
        status = manifest.get("exit_status")
        if isinstance(status, str) and (status in ("running", "interrupted")
                                        or status.startswith("error")):
            passed.append((run_id, f"exit status {status}"))
            continue
        diffs = combine_differences(primary.manifest, manifest)
        if diffs:
            passed.append((run_id, f"differs: {describe_differences(diffs)}"))
            continue
        run = load_run(run_dir, primary.include_noisy)
        got = [m for m in offers if (run.table["mode"] == m).any()]
        for m in got:
            sources[m] = run
            needed.remove(m)
        if not needed:
            break
    return RunSet(primary, sources, tuple(passed))


def explicit(primary: Run, others: Sequence[Run]) -> RunSet:
    """The primary run and `others`; each mode from the first of them (primary first)
    that measured it. Raises UserError naming the differing keys when a run is not
    compatible with the primary."""
    sources = {m: primary for m in _measured_modes(primary)}
    passed: list[tuple[str, str]] = []
    for run in others:
        if run.run_dir.resolve() == primary.run_dir.resolve():
            continue
        diffs = combine_differences(primary.manifest, run.manifest)
        if diffs:
            raise UserError(f"refusing to combine {primary.run_id} with {run.run_id}: "
                            f"{describe_differences(diffs)}",
                            hint="combine runs of the same scenario, backend, versions "
                                 "and machine, or report them one by one")
        used = [m for m in _measured_modes(run) if m not in sources]
        for m in used:
            sources[m] = run
        if not used:
            passed.append((run.run_id, "every mode it measured comes from a run listed "
                                       "before it"))
    return RunSet(primary, sources, tuple(passed))


def sources_section(rs: RunSet) -> list[str]:
    """Which runs the claims draw from, with the modes each supplies."""
    lines = ["## Runs drawn from", ""]
    for run in rs.runs:
        modes = [m for m in rs.modes_of(run)]
        status = run.manifest.get("exit_status", "not recorded")
        own_base = (run is not rs.primary and "baseline" not in modes
                    and (run.table["mode"] == "baseline").any())
        used = ", ".join(modes) or "no mode used"
        if own_base:
            used += " (overheads over this run's own baseline)"
        lines.append(f"- `{run.run_id}`{' (this run)' if run is rs.primary else ''}: "
                     f"{used}; scenario hash "
                     f"`{run.manifest.get('scenario_hash', 'not recorded')}`; exit status "
                     f"{status}")
    if rs.combined:
        lines += ["", ("The claims combine runs: each mode's numbers come from the run "
                       "listed for it, and every overhead is over the baseline of that "
                       "mode's own run. Two modes from the same run are compared paired "
                       "by repetition; modes from different runs are compared unpaired "
                       "(Welch), and drift of the machine between the runs is not "
                       "cancelled. The sections after the claims describe this run only.")]
    shown = rs.passed_over[:PASSED_OVER_SHOWN]
    if shown:
        lines += [""] + [f"- not used: `{run_id}`: {why}" for run_id, why in shown]
        more = len(rs.passed_over) - len(shown)
        if more:
            lines.append(f"- not used: {more} more runs (older)")
    return lines + [""]
