"""meshbench: run, plan, report, doctor, teardown.

Examples:
  meshbench run -s quick                      all four modes on the local backend
  meshbench run -s quick --modes baseline,sidecar
  meshbench plan -s quick --mode ambient      what a run would create, without creating it
  meshbench report [RUN_DIR]                  Markdown + figures for a run (default: newest)
  meshbench doctor                            what this machine lacks, and how to fix it
  meshbench teardown --all                    remove every namespace and process of ours
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from bench import scenario as scen
from bench.errors import BenchError, UserError
from bench.store import DEFAULT_ROOT, latest_run


def _levels(text: str) -> list[int]:
    try:
        levels = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UserError(f"--levels {text!r}: give whole numbers of rps, e.g. 200,500") from None
    return levels


def _scenario(args: argparse.Namespace) -> scen.Scenario:
    overrides: dict[str, Any] = {}
    if getattr(args, "modes", None):
        overrides["modes"] = list(scen.parse_modes(args.modes))
    if getattr(args, "backend", None):
        overrides["backend"] = args.backend
    if getattr(args, "repetitions", None):
        overrides["repetitions"] = args.repetitions
    s = scen.load(args.scenario, **overrides)
    if getattr(args, "levels", None):
        raw = s.to_dict()
        raw["load"]["levels"] = _levels(args.levels)
        s = scen.from_dict(raw, source=f"{args.scenario} (with --levels)")
    if getattr(args, "window", None) or getattr(args, "warmup", None):
        raw = s.to_dict()
        if args.window:
            raw["timing"]["window_s"] = args.window
        if args.warmup is not None:
            raw["timing"]["warmup_s"] = args.warmup
        s = scen.from_dict(raw, source=f"{args.scenario} (with --window/--warmup)")
    return s


def make_backend(s: scen.Scenario) -> Any:
    if s.backend == "local":
        from bench.backends.local.backend import LocalBackend

        return LocalBackend(s)
    from bench.backends.kind import make

    return make(s)


# ---- subcommands ------------------------------------------------------------------------------

def cmd_run(args: argparse.Namespace) -> int:
    from bench import meta
    from bench.backends.local.backend import SIMPLIFICATIONS, envoy_version
    from bench.runner import Runner, log
    from bench.store import RunStore, new_run_id

    s = _scenario(args)
    backend = make_backend(s)
    backend.preflight()
    root = Path(args.results)
    root.mkdir(parents=True, exist_ok=True)
    store = RunStore.create(root, new_run_id(s.name), {
        "scenario": s.to_dict(), "scenario_hash": s.hash, "backend": s.backend,
        "git": meta.git_state(), "versions": meta.versions(envoy_version()),
        "host": meta.host(), "seed": s.seed, "started": time.time(),
        "argv": sys.argv[1:], "exit_status": "running", "probes": {},
        "simplifications": list(SIMPLIFICATIONS) if s.backend == "local" else [],
    })
    log(f"run {store.run_id}: scenario {s.name} ({s.hash}), modes {', '.join(s.modes)}, "
        f"levels {', '.join(map(str, s.load.levels))} rps, {s.repetitions} repetitions -> "
        f"{store.dir}")
    status, code = "ok", 0
    runner = Runner(s, backend, store)
    try:
        cells = runner.run()
        failed = [c for c in cells if c["status"] != "ok"]
        if failed:
            status, code = f"{len(failed)} of {len(cells)} cells failed", 1
    except KeyboardInterrupt:
        status, code = "interrupted", 130
        log("interrupted: torn down; results so far are kept")
    except BaseException as e:
        status, code = f"error: {e}", 1
        raise
    finally:
        store.update(exit_status=status, ended=time.time())
        store.finalize()
    if not args.no_report and code != 130:
        from analysis.report import write_report

        for p in write_report(store.dir):
            log(f"wrote {p}")
    print(store.dir)
    return code


def cmd_plan(args: argparse.Namespace) -> int:
    s = _scenario(args)
    modes = scen.parse_modes(args.mode) if args.mode else s.modes
    backend = make_backend(s)
    print(f"# scenario {s.name} ({s.hash}), backend {s.backend}")
    for mode in modes:
        print("\n".join(backend.plan(mode)))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from analysis.report import write_report

    run_dir = Path(args.run) if args.run else latest_run(Path(args.results))
    if run_dir is None or not (run_dir / "manifest.json").exists():
        raise UserError(f"no run found at {args.run or args.results}",
                        hint="run `make bench` first, or pass a results/<run> directory")
    for p in write_report(run_dir):
        print(p)
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from bench.doctor import run_checks

    return run_checks(verbose=True)


def cmd_teardown(args: argparse.Namespace) -> int:
    from bench.backends.local.backend import remove_all

    if not args.all:
        raise UserError("teardown needs --all", hint="meshbench teardown --all")
    if os.geteuid() != 0:
        raise UserError("teardown needs root", hint="sudo make teardown")
    removed = remove_all()
    print("\n".join(removed) if removed else "nothing of meshbench's was left")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="meshbench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    def scenario_args(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("-s", "--scenario", default="quick",
                        help="scenario name in workloads/scenarios/ or a path (default: quick)")
        sp.add_argument("--backend", choices=scen.BACKENDS, help="override the scenario's backend")

    r = sub.add_parser("run", help="run a scenario and write results/<run id>/")
    scenario_args(r)
    r.add_argument("--modes", help=f"comma-separated subset of {','.join(scen.MODES)}")
    r.add_argument("--levels", help="comma-separated target rps, e.g. 200,500")
    r.add_argument("--repetitions", type=int)
    r.add_argument("--window", type=float, help="measurement window in seconds")
    r.add_argument("--warmup", type=float, help="warm-up in seconds")
    r.add_argument("--results", default=str(DEFAULT_ROOT), help="results root directory")
    r.add_argument("--no-report", action="store_true")
    r.set_defaults(fn=cmd_run)

    pl = sub.add_parser("plan", help="print what a run would create, in order")
    scenario_args(pl)
    pl.add_argument("--mode", help="one mode or a comma-separated list (default: the scenario's)")
    pl.set_defaults(fn=cmd_plan)

    rep = sub.add_parser("report", help="write the report of a run")
    rep.add_argument("run", nargs="?", help="results/<run id> (default: the newest)")
    rep.add_argument("--results", default=str(DEFAULT_ROOT))
    rep.set_defaults(fn=cmd_report)

    d = sub.add_parser("doctor", help="check this machine and say how to fix what is missing")
    d.set_defaults(fn=cmd_doctor)

    t = sub.add_parser("teardown", help="remove what the harness left (namespaces, processes)")
    t.add_argument("--all", action="store_true", help="everything with the harness prefix")
    t.set_defaults(fn=cmd_teardown)
    return p


def _on_sigterm(signum: int, frame: Any) -> None:
    # turn SIGTERM into the same path as Ctrl-C, so every `finally` tears down
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return int(args.fn(args))
    except BenchError as e:
        print(f"meshbench: error: {e.one_line()}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("meshbench: interrupted", file=sys.stderr)
        return 130
