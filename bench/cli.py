"""meshbench: run, plan, report, doctor, teardown.

Examples:
  meshbench run -s quick                      all four modes on the local backend
  meshbench run -s quick --modes baseline,sidecar
  meshbench calibrate -s quick --connections 1,4   latency vs an independent reference client
  meshbench plan -s quick --mode ambient      what a run would create, without creating it
  meshbench report [RUN_DIR]                  Markdown, HTML, SMP + figures (default: newest)
  meshbench report --runs results/a results/b claims from both runs (checked compatible)
  meshbench compare RUN_A RUN_B               changes per metric, CI, verdict; exit 1 if worse
  meshbench trend results/                    a metric across runs: band, change points
  meshbench sweep -s scaling                  one run per pod count, then cost vs pods
  meshbench istiod build                      build real istiod, kube-apiserver, kine (Go)
  meshbench istiod sweep -s fanout-istiod     claims (b), (c) from a real istiod, 10-10,000 pods
  meshbench doctor                            what this machine lacks, and how to fix it
  meshbench teardown --all                    remove every namespace and process of ours
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path
from typing import Any

from bench import scenario as scen
from bench.errors import BenchError, UserError, fail
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
    s = scen.read(args.scenario, **overrides)
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


# ---- subcommands ------------------------------------------------------------------------------

RUN_OVERRIDES = ("scenario", "backend", "modes", "levels", "repetitions", "window", "warmup")


def cmd_run(args: argparse.Namespace) -> int:
    from bench.run.execute import execute, resume

    if args.resume:
        # the run's own scenario; one given as well must be the same (hash checked)
        given = None
        if any(getattr(args, k, None) is not None for k in RUN_OVERRIDES):
            if args.scenario is None:
                raise UserError("--resume continues the run with its own scenario: "
                                "--modes, --levels and the like do not apply",
                                hint=f"meshbench run --resume {args.resume}")
            given = _scenario(args)
        run_dir, code = resume(Path(args.resume), given, report=not args.no_report,
                               wait_lock_s=args.wait_lock)
    else:
        if args.scenario is None:
            args.scenario = "quick"
        run_dir, code = execute(_scenario(args), Path(args.results), report=not args.no_report,
                                wait_lock_s=args.wait_lock)
    print(run_dir)
    return code


def cmd_sweep(args: argparse.Namespace) -> int:
    from bench.run.sweep import run_sweep

    sweep_dir, code = run_sweep(_scenario(args), Path(args.results))
    print(sweep_dir)
    return code


def cmd_calibrate(args: argparse.Namespace) -> int:
    from bench.run.calibrate import calibrate

    out_dir, code = calibrate(_scenario(args), Path(args.results), args.connections)
    print(out_dir)
    return code


def cmd_istiod(args: argparse.Namespace) -> int:
    """The real control plane: build its binaries, show them, or run a fan-out sweep."""
    import json

    from bench.istiod import build

    istio = args.istio or build.ISTIO_VERSION
    if istio == "latest":
        istio = build.resolve_latest_istio()
    if args.action == "status":
        for b, ok in build.status(istio):
            print(f"{'ok  ' if ok else 'MISS'} {b.name:<16} {b.module}@{b.version}"
                  + (f"  {b.path}" if ok else f"  (meshbench istiod build {b.name})"))
        return 0
    if args.action == "build":
        names = args.names or list(build.binaries(istio))
        unknown = [n for n in names if n not in build.binaries(istio)]
        if unknown:
            raise UserError(f"unknown binary {', '.join(unknown)}",
                            hint="one of: " + ", ".join(build.binaries(istio)))
        records = [build.build(n, istio, force=args.force) for n in names]
        print(json.dumps([r.__dict__ for r in records], indent=1))
        return 0
    from bench.istiod.sweep import into_results, read_spec

    if os.geteuid() != 0:
        raise UserError("the real-istiod sweep needs root (its files live in /run/meshbench)",
                        hint="sudo make bench-fanout-istiod")
    spec = read_spec(args.scenario, istio_version=istio if args.istio else None,
                     compat=args.compat,
                     sizes=[int(x) for x in args.sizes.split(",")] if args.sizes else None,
                     modes=scen.parse_modes(args.modes) if args.modes else None)
    out, code = into_results(spec, Path(args.results), Path(args.add_to) if args.add_to else None)
    print(out)
    return code


def cmd_plan(args: argparse.Namespace) -> int:
    s = _scenario(args)
    modes = scen.parse_modes(args.mode) if args.mode else s.modes
    from bench.backends import make

    backend = make(s)
    print(f"# scenario {s.name} ({s.hash}), backend {s.backend}")
    for mode in modes:
        print("\n".join(backend.plan(mode)))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from analysis.report import write_outputs

    runs = [Path(r) for r in args.runs or []]
    run_dir = (Path(args.run) if args.run else runs[0] if runs
               else latest_run(Path(args.results)))
    for d in [run_dir, *runs]:
        if d is None or not (d / "manifest.json").exists():
            raise UserError(f"no run found at {d or args.results}",
                            hint="run `make bench` first, or pass a results/<run> directory")
    assert run_dir is not None
    for p in write_outputs(run_dir, runs or None, combine=not args.single,
                           include_noisy=args.include_noisy).all():
        print(p)
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from bench.doctor import run_checks

    return run_checks(verbose=True)


def cmd_teardown(args: argparse.Namespace) -> int:
    from bench.backends import teardown_all

    if not args.all:
        raise UserError("teardown needs --all", hint="meshbench teardown --all")
    print("\n".join(teardown_all(args.backend, args.context)))
    return 0


RUN_EXIT_CODES = """Run a scenario and write results/<run id>/ (the last line printed).

A process that dies during a run (a proxy, the control plane, an app, Locust, a probe)
costs only what it touched: the cell fails; if the mode's deployment broke, the rest of
that mode in this repetition is skipped (manifest: cells, experiments, faults) and the run
goes on with the next mode, then writes the report.

exit codes:
  0    every cell and experiment completed and every probe gave its data
  1    stopped on an error (e.g. the results disk is full: rows written before are kept)
  2    bad input, or a missing prerequisite (e.g. another run holds the backend)
  3    completed with failures: failed or skipped cells or experiments, or probe data
       missing for some cells (the manifest's exit_status says which; report written)
  130  interrupted (Ctrl-C, SIGTERM): torn down, results so far kept
"""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="meshbench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    def scenario_args(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("-s", "--scenario", default="quick",
                        help="scenario name in workloads/scenarios/ or a path (default: quick)")
        sp.add_argument("--backend", choices=scen.BACKENDS, help="override the scenario's backend")

    r = sub.add_parser("run", help="run a scenario and write results/<run id>/",
                       description=RUN_EXIT_CODES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    scenario_args(r)
    r.add_argument("--modes", help=f"comma-separated subset of {','.join(scen.MODES)}")
    r.add_argument("--levels", help="comma-separated target rps, e.g. 200,500")
    r.add_argument("--repetitions", type=int)
    r.add_argument("--window", type=float, help="measurement window in seconds")
    r.add_argument("--warmup", type=float, help="warm-up in seconds")
    r.add_argument("--results", default=str(DEFAULT_ROOT), help="results root directory")
    r.add_argument("--no-report", action="store_true")
    r.add_argument("--resume", metavar="RUN_DIR",
                   help="run the cells and experiments RUN_DIR did not finish (interrupted, "
                        "or stopped on an error), in RUN_DIR, then rebuild its report from all "
                        "of them; the run's own scenario is used (a different one is refused)")
    r.add_argument("--wait-lock", type=float, default=0.0, metavar="SECONDS",
                   help="if another run holds the local backend, wait up to SECONDS for it "
                        "(default: fail at once, naming that run and its pid)")
    r.set_defaults(fn=cmd_run, scenario=None)

    sw = sub.add_parser("sweep", help="one run per size of the scenario's sweep, then the fit")
    scenario_args(sw)
    sw.add_argument("--modes", help=f"comma-separated subset of {','.join(scen.MODES)}")
    sw.add_argument("--repetitions", type=int)
    sw.add_argument("--results", default=str(DEFAULT_ROOT), help="results root directory")
    sw.set_defaults(fn=cmd_sweep, scenario="scaling")

    cal = sub.add_parser("calibrate", help="harness latency vs the independent reference "
                         "client, per mode (one run per connection count)")
    scenario_args(cal)
    cal.add_argument("--modes", help=f"comma-separated subset of {','.join(scen.MODES)}")
    cal.add_argument("--levels", help="comma-separated target rps, e.g. 200,500")
    cal.add_argument("--connections", help="comma-separated connection counts (default: the "
                     "scenario's), e.g. 1,4")
    cal.add_argument("--repetitions", type=int)
    cal.add_argument("--window", type=float, help="measurement window in seconds")
    cal.add_argument("--warmup", type=float, help="warm-up in seconds")
    cal.add_argument("--results", default=str(DEFAULT_ROOT), help="results root directory")
    cal.set_defaults(fn=cmd_calibrate)

    pl = sub.add_parser("plan", help="print what a run would create, in order")
    scenario_args(pl)
    pl.add_argument("--mode", help="one mode or a comma-separated list (default: the scenario's)")
    pl.set_defaults(fn=cmd_plan)

    rep = sub.add_parser("report", help="write the report of a run; its claims also draw "
                         "on the newest compatible run of each mesh mode it lacks")
    rep.add_argument("run", nargs="?", help="results/<run id> (default: the newest, or the "
                     "first of --runs)")
    rep.add_argument("--results", default=str(DEFAULT_ROOT))
    rep.add_argument("--runs", nargs="+", metavar="DIR",
                     help="draw the claims from exactly these runs (with RUN); refused, "
                          "naming the keys, when they are not compatible")
    rep.add_argument("--single", action="store_true",
                     help="draw the claims from RUN only, never from other runs")
    rep.add_argument("--include-noisy", action="store_true",
                     help="count the cells the machine's noise contaminated (set aside by "
                          "default; the report's noise section lists them)")
    rep.set_defaults(fn=cmd_report)

    sub.add_parser("compare", help="RUN_A RUN_B [--force] [--threshold PCT]: changes with "
                   "CIs and verdicts; exit 1 on a significant regression, 2 on a refusal")
    sub.add_parser("trend", help="DIR... [--metric M]: a headline metric across many runs, "
                   "each against the gate's band from the runs before it, and its change points")
    sub.add_parser("gate", help="NIGHT HISTORY... [--json F]: tonight's gate metrics against "
                   "the history of green nights; exit 1 on a regression two nights running")

    ist = sub.add_parser("istiod", help="real istiod on this host: build its binaries (Go "
                         "module proxy), show them, or run the fan-out sweep")
    ist.add_argument("action", choices=("build", "status", "sweep"))
    ist.add_argument("names", nargs="*", help="build: which binaries (default: all)")
    ist.add_argument("-s", "--scenario", default="fanout-istiod",
                     help="sweep: workloads/istiod/<name>.yaml (default: fanout-istiod)")
    ist.add_argument("--sizes", help="sweep: comma-separated pod counts, e.g. 10,100")
    ist.add_argument("--modes", help="sweep: comma-separated subset of sidecar,ambient,waypoint")
    ist.add_argument("--istio", default="", help="istio.io/istio version (a pseudo-version, "
                     "or latest; default: the pinned one)")
    ist.add_argument("--compat", default="", help="Istio compatibility profile, e.g. 1.27")
    ist.add_argument("--force", action="store_true", help="build: rebuild even if cached")
    ist.add_argument("--add-to", metavar="RUN_DIR", help="sweep: add these sizes to an "
                     "earlier sweep's results (one report and fit over all of them)")
    ist.add_argument("--results", default=str(DEFAULT_ROOT), help="results root directory")
    ist.set_defaults(fn=cmd_istiod)

    d = sub.add_parser("doctor", help="check this machine and say how to fix what is missing")
    d.set_defaults(fn=cmd_doctor)

    t = sub.add_parser("teardown", help="remove what the harness left (namespaces, processes)")
    t.add_argument("--all", action="store_true", help="everything with the harness prefix")
    t.add_argument("--backend", choices=scen.BACKENDS, default="local",
                   help="local: namespaces and processes; kind: clusters named mb-*; "
                        "cluster: namespaces labelled managed-by=meshbench on --context")
    t.add_argument("--context", help="backend cluster: the kube context (default: MB_CONTEXT)")
    t.set_defaults(fn=cmd_teardown)
    return p


def _on_sigterm(signum: int, frame: Any) -> None:
    # turn SIGTERM into the same path as Ctrl-C, so every `finally` tears down
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] in (["compare"], ["trend"]):
        # these parse their own options (RUN_A RUN_B --force ..., DIR... --metric ...)
        from analysis.compare import main as compare
        from analysis.compare import main_trend

        return (compare if argv[0] == "compare" else main_trend)(argv[1:])
    if argv[:1] == ["gate"]:  # NIGHT HISTORY... [--json F]: see analysis/gate.py
        from analysis.gate import main as gate

        return gate(argv[1:])
    args = parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return int(args.fn(args))
    except BenchError as e:
        return fail(e)
    except KeyboardInterrupt:
        print("meshbench: interrupted", file=sys.stderr)
        return 130
