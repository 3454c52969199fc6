"""`meshbench run --resume RUN_DIR`: run what an interrupted run did not finish, in the same
directory, then rebuild its report from all of its cells.

A (repetition, mode) is finished when all its cells and experiments are recorded in the
manifest (ok, failed or skipped). Of an unfinished one, only the cells not recorded run
again; its idle footprint and experiments run again in full (the experiments apply on top
of each other, so a half-done sequence cannot be continued on a fresh deployment). Rows the
interrupted attempt left for work that runs again are moved, not deleted, to
samples.discarded.jsonl (and partial HDR files to hdr/discarded/), so that no row counts
twice and none is lost. The run's scenario must hash as recorded: a run is never continued
under another scenario.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from bench import scenario as scen
from bench.errors import UserError
from bench.run.runner import mode_orders, unit_done
from bench.store import Cell, RunStore, read_manifest


def load_manifest(run_dir: Path) -> dict[str, Any]:
    """The run's manifest through the store (an older format migrated, a newer refused)."""
    try:
        return read_manifest(run_dir)
    except FileNotFoundError:
        raise UserError(f"--resume {run_dir}: no manifest.json there",
                        hint="pass a results/<run id> directory of an earlier run") from None
    except json.JSONDecodeError as e:
        raise UserError(f"--resume {run_dir}: manifest.json is not readable ({e})") from None


def scenario_of(run_dir: Path, manifest: dict[str, Any],
                given: scen.Scenario | None) -> scen.Scenario:
    """The run's own scenario; refused (one line) if it, or the one given on the command
    line, does not hash as the run recorded."""
    recorded = manifest.get("scenario_hash")
    s = scen.from_dict(manifest["scenario"], source=f"{run_dir}/manifest.json")
    if s.hash != recorded:
        raise UserError(f"refusing to resume {run_dir}: its scenario hashes to {s.hash} with "
                        f"this version of meshbench, the run recorded {recorded}",
                        hint="resume with the meshbench version that started it")
    if given is not None and given.hash != recorded:
        raise UserError(f"refusing to resume {run_dir}: scenario {given.name} ({given.hash}) "
                        f"is not the run's ({recorded})",
                        hint=f"meshbench run --resume {run_dir} (without -s, --modes, "
                             "--levels, ...) continues it with its own scenario")
    return s


def unfinished(s: scen.Scenario, manifest: dict[str, Any]) -> list[tuple[int, str]]:
    # a run that stopped before its first mode recorded no order: the runner's own then
    orders = manifest.get("mode_order") or mode_orders(s.modes, s.repetitions, s.seed)
    return [(rep, mode) for rep, order in enumerate(orders, start=1) for mode in order
            if not unit_done(s, manifest, rep, mode)]


def prepare(run_dir: Path, s: scen.Scenario, manifest: dict[str, Any]) -> RunStore:
    """Set the run directory aside for the rest of the run; returns its store, open for
    appending. Call it holding the backend's lock."""
    units = set(unfinished(s, manifest))
    recorded = {c["cell"] for c in manifest.get("cells", [])}
    todo = [Cell(rep, mode, lvl).id for rep, mode in sorted(units) for lvl in s.load.levels
            if Cell(rep, mode, lvl).id not in recorded]
    moved = _set_rows_aside(run_dir, recorded, units)
    hdr_aside = run_dir / "hdr" / "discarded"
    for cell in todo:
        for f in [*(run_dir / "hdr").glob(f"{cell}.jsonl*"),  # and re-run attempts'
                  *(run_dir / "hdr").glob(f"{cell}-a[0-9]*.jsonl*")]:
            hdr_aside.mkdir(exist_ok=True)
            os.replace(f, hdr_aside / f"{f.name}.{int(time.time())}")
    (run_dir / "samples.parquet").unlink(missing_ok=True)
    manifest["experiments"] = [e for e in manifest.get("experiments", [])
                               if (e["repetition"], e["mode"]) not in units]
    manifest["resumed"] = [*manifest.get("resumed", []), {
        "at": time.time(), "previous_exit_status": manifest.get("exit_status"),
        "units": [f"r{r}-{m}" for r, m in sorted(units)], "cells": todo,
        "rows_set_aside": moved}]
    manifest.update(exit_status="running", finalized=False, current={})
    store = RunStore(run_dir, manifest)
    store.save_manifest()
    return store


def _set_rows_aside(run_dir: Path, recorded: set[str], units: set[tuple[int, str]]) -> int:
    """Rewrite samples.jsonl without the rows of work that runs again (to the side file)."""
    path = run_dir / "samples.jsonl"
    if not path.exists():
        return 0
    keep: list[str] = []
    aside: list[str] = []
    for line in path.read_text().splitlines(keepends=True):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            rep, mode, level = int(row["repetition"]), str(row["mode"]), int(row["level"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            aside.append(line if line.endswith("\n") else line + "\n")  # a cut line
            continue
        if level > 0:
            ok = Cell(rep, mode, level).id in recorded
        else:
            ok = (rep, mode) not in units
        (keep if ok else aside).append(line)
    if aside:
        with open(run_dir / "samples.discarded.jsonl", "a") as f:
            f.writelines(aside)
        tmp = path.with_name(".tmp-samples.jsonl")
        tmp.write_text("".join(keep))
        os.replace(tmp, path)
    return len(aside)
