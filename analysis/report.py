"""Write a run's report: report.md, latency.png and (with resource rows) resources.png.

    python -m analysis.report [RUN_DIR]     # default: the newest run under results/
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from analysis.hops import hops_section
from analysis.figures import latency_figure, resources_figure
from analysis.latency import (
    cv_section,
    latency_section,
    order_section,
    overhead_section,
    ratio_section,
)
from analysis.load import Run, load_run
from analysis.metadata import (
    failed_cells_section,
    metadata_section,
    probes_section,
    simplifications_section,
)
from analysis.resources import resource_cv_checks, resources_section
from bench.errors import BenchError, UserError
from bench.store import latest_run

LOCAL_NOTE = ("Local backend: Envoy 1.40 in network namespaces on one host; these figures "
              "show architecture costs, not Istio release figures.")


def machine(host: dict[str, Any]) -> str:
    """"<cpu model>, <n> cores, kernel <k>", saying which of them were not recorded."""
    cores = f"{host['cores']} cores" if host.get("cores") else "core count not recorded"
    return (f"{host.get('cpu_model') or 'CPU model not recorded'}, {cores}, "
            f"kernel {host.get('kernel') or 'not recorded'}")


def header_section(run: Run) -> list[str]:
    """Title, scenario, backend, machine, and the local-backend caveat."""
    scenario = run.scenario
    host = run.manifest.get("host") or {}
    lines = [f"# meshbench report: {run.run_id}", "",
             (f"- Scenario: {scenario.get('name', 'not recorded')} "
             f"(hash `{run.manifest.get('scenario_hash', 'not recorded')}`)"),
             f"- Backend: {run.backend or 'not recorded'}",
             f"- Machine: {machine(host)}",
             (f"- Repetitions planned: {scenario.get('repetitions', 'not recorded')}; "
             "every figure below is from this run only, as median [min–max] across "
             "repetitions with n = repetitions measured."), ""]
    if run.backend == "local":
        lines += [LOCAL_NOTE, ""]
    return lines


def render(run: Run, latency_png: str | None, resources_png: str | None) -> str:
    """The report's Markdown, linking the figures given (file names; None = not written)."""
    lines = header_section(run)
    lines += latency_section(run, latency_png) + overhead_section(run) + order_section(run)
    lines += ratio_section(run) + hops_section(run)
    lines += cv_section(run, resource_cv_checks(run))
    lines += resources_section(run, resources_png)
    lines += failed_cells_section(run) + probes_section(run)
    lines += metadata_section(run) + simplifications_section(run)
    return "\n".join(lines).rstrip() + "\n"


def write_report(run_dir: Path | str) -> list[Path]:
    """Write report.md, latency.png and, when data-plane resource rows exist,
    resources.png into `run_dir`; return the paths written (report.md last).

    A figure whose data are missing is not written, and the report says so.
    Raises UserError when `run_dir` is not a run directory.
    """
    run = load_run(run_dir)
    latency = latency_figure(run, run.run_dir / "latency.png")
    resources = resources_figure(run, run.run_dir / "resources.png")
    report = run.run_dir / "report.md"
    report.write_text(render(run, latency.name if latency else None,
                             resources.name if resources else None))
    return [p for p in (latency, resources) if p] + [report]


def main(argv: list[str] | None = None) -> int:
    """CLI: write the report of RUN_DIR (default: newest run under results/)."""
    parser = argparse.ArgumentParser(prog="python -m analysis.report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", nargs="?", type=Path,
                        help="run directory (default: newest under results/)")
    args = parser.parse_args(argv)
    try:
        run_dir = args.run_dir or latest_run()
        if run_dir is None:
            raise UserError("no run under results/", hint="pass a run directory")
        for path in write_report(run_dir):
            print(path)
    except BenchError as e:
        print(f"error: {e.one_line()}", file=sys.stderr)
        return e.exit_code
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
