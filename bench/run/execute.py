"""One run from a scenario to a finished results directory: the body of `meshbench run`,
shared by `meshbench sweep`, which calls it once per size."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from bench import meta
from bench.backends import make
from bench.backends.base import Backend
from bench.errors import StorageError
from bench.run.runner import Runner, log
from bench.scenario import Scenario
from bench.store import RunStore, new_run_id

EXIT_OK = 0  # every cell and experiment completed, every probe gave its data
EXIT_ERROR = 1  # the run stopped on an error (e.g. the results disk is full)
EXIT_USAGE = 2  # bad input or a missing prerequisite (the backend is locked by another run)
EXIT_INCOMPLETE = 3  # completed, with failed or skipped cells/experiments or missing probe data
EXIT_INTERRUPTED = 130  # Ctrl-C or SIGTERM: torn down, results so far kept


def execute(s: Scenario, root: Path, run_id: str | None = None, report: bool = True,
            extra: dict[str, Any] | None = None, wait_lock_s: float = 0.0) -> tuple[Path, int]:
    """Run every cell of `s` into root/<run id>/; return the directory and an exit code
    (EXIT_*): 0 all done, 3 completed with failures (recorded in the manifest), 1 stopped
    on an error, 130 interrupted (torn down, results so far kept)."""
    run_id = run_id or new_run_id(s.name)
    backend = make(s, run_id=run_id)  # kube backends label every object with it
    lock = backend.abilities().lock
    if lock is not None:  # before preflight: a second run is told who holds the backend
        lock.hold_lock(run_id, wait_lock_s)
    def create() -> RunStore:
        facts = backend.manifest_facts()
        envoy = facts.pop("envoy")
        root.mkdir(parents=True, exist_ok=True)
        return RunStore.create(root, run_id, {
            "scenario": s.to_dict(), "scenario_hash": s.hash, "backend": s.backend,
            "git": meta.git_state(), "versions": meta.versions(envoy),
            "host": meta.host(), "seed": s.seed, "started": time.time(),
            "argv": sys.argv[1:], "exit_status": "running", "probes": {},
            **facts, **(extra or {}),
        })

    try:
        return _execute(s, backend, create, report)
    finally:
        if lock is not None:
            lock.release_lock()


def resume(run_dir: Path, given: Scenario | None = None, report: bool = True,
           wait_lock_s: float = 0.0) -> tuple[Path, int]:
    """Run what the run in run_dir did not finish (see bench.run.resume), in the same directory,
    then rebuild its report from all of its cells; exit codes as execute()."""
    from bench.run import resume as rs

    manifest = rs.load_manifest(run_dir)
    s = rs.scenario_of(run_dir, manifest, given)
    backend = make(s, run_id=manifest["run_id"])
    lock = backend.abilities().lock
    if lock is not None:  # also keeps a second resume of the same run out
        lock.hold_lock(manifest["run_id"], wait_lock_s)
    try:
        manifest = rs.load_manifest(run_dir)  # as the lock's previous holder left it
        todo = rs.unfinished(s, manifest)
        log(f"resuming {manifest['run_id']}: " + (
            f"{len(todo)} unfinished (repetition, mode): "
            + ", ".join(f"r{r} {m}" for r, m in todo) if todo else "every cell was recorded; "
            "rebuilding the report"))
        return _execute(s, backend, lambda: rs.prepare(run_dir, s, manifest), report)
    finally:
        if lock is not None:
            lock.release_lock()


def _execute(s: Scenario, backend: Backend, make_store: Any, report: bool) -> tuple[Path, int]:
    backend.preflight()
    store: RunStore = make_store()
    log(f"run {store.run_id}: scenario {s.name} ({s.hash}), modes {', '.join(s.modes)}, "
        f"levels {', '.join(map(str, s.load.levels))} rps, {s.repetitions} repetitions -> "
        f"{store.dir}")
    status, code = "ok", EXIT_OK
    storage: StorageError | None = None
    try:
        runner = Runner(s, backend, store)
        runner.run()
        noisy = runner.noise_line()
        if noisy:
            log(noisy)
        problems = runner.problems()
        if problems:
            status, code = "completed with failures: " + "; ".join(problems), EXIT_INCOMPLETE
    except KeyboardInterrupt:
        status, code = "interrupted", EXIT_INTERRUPTED
        log("interrupted: torn down; results so far are kept")
    except StorageError as e:
        status, code, storage = f"error: {e.message}", EXIT_ERROR, e
        log(f"stopped: {e.message}; torn down, rows written before are kept")
    except BaseException as e:
        status, code = f"error: {type(e).__name__}: {e}", EXIT_ERROR
        raise
    finally:
        try:
            store.update(exit_status=status, ended=time.time(), exit_code=code)
            store.finalize()
        except StorageError as e:  # the disk is full: samples.jsonl stays the record
            log(f"cannot finish {store.dir}: {e.message}")
            storage = storage or e
    if storage is not None:
        raise storage  # one line from the CLI, exit 1; the run directory is kept
    if report and code != EXIT_INTERRUPTED:
        from analysis.report import write_outputs

        log(f"report: writing it for {store.dir}")
        for p in write_outputs(store.dir).all():
            log(f"wrote {p}")
    return store.dir, code
