"""One run from a scenario to a finished results directory: the body of `meshbench run`,
shared by `meshbench sweep`, which calls it once per size."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from bench import meta
from bench.runner import Runner, log
from bench.scenario import Scenario
from bench.store import RunStore, new_run_id


def make_backend(s: Scenario) -> Any:
    if s.backend == "local":
        from bench.backends.local.backend import LocalBackend

        return LocalBackend(s)
    from bench.backends.kind import make

    return make(s)


def execute(s: Scenario, root: Path, run_id: str | None = None, report: bool = True,
            extra: dict[str, Any] | None = None) -> tuple[Path, int]:
    """Run every cell of `s` into root/<run id>/; return the directory and an exit code:
    0 all cells ok, 1 some failed, 130 interrupted (torn down, results so far kept)."""
    backend = make_backend(s)
    backend.preflight()
    local = s.backend == "local"
    if local:
        from bench.backends.local.backend import SIMPLIFICATIONS, envoy_version, istio_fidelity

        envoy, simplifications = envoy_version(), list(SIMPLIFICATIONS)
        extra = {"istio_fidelity": istio_fidelity(), **(extra or {})}
    else:
        envoy, simplifications = "see deployment info", []
    root.mkdir(parents=True, exist_ok=True)
    store = RunStore.create(root, run_id or new_run_id(s.name), {
        "scenario": s.to_dict(), "scenario_hash": s.hash, "backend": s.backend,
        "git": meta.git_state(), "versions": meta.versions(envoy),
        "host": meta.host(), "seed": s.seed, "started": time.time(),
        "argv": sys.argv[1:], "exit_status": "running", "probes": {},
        "simplifications": simplifications, **(extra or {}),
    })
    log(f"run {store.run_id}: scenario {s.name} ({s.hash}), modes {', '.join(s.modes)}, "
        f"levels {', '.join(map(str, s.load.levels))} rps, {s.repetitions} repetitions -> "
        f"{store.dir}")
    status, code = "ok", 0
    try:
        cells = Runner(s, backend, store).run()
        failed = [c for c in cells if c["status"] != "ok"]
        if failed:
            status, code = f"{len(failed)} of {len(cells)} cells failed", 1
    except KeyboardInterrupt:
        status, code = "interrupted", 130
        log("interrupted: torn down; results so far are kept")
    except BaseException as e:
        status, code = f"error: {type(e).__name__}: {e}", 1
        raise
    finally:
        store.update(exit_status=status, ended=time.time())
        store.finalize()
    if report and code != 130:
        from analysis.report import write_outputs

        for p in write_outputs(store.dir).all():
            log(f"wrote {p}")
    return store.dir, code
