"""Write a run's report: report.md, report.html (self-contained), smp.json, latency.png
and (with resource rows) resources.png. The claims come first in both reports.

The claims draw on the runs analysis.runset picks: by default this run plus the newest
compatible run of each mesh mode it lacks (so `make bench-sidecar` then `make
bench-ambient` answers sidecar vs ambient); with --runs, exactly the runs given; with
--single, this run only. The sections after the claims describe this run.

    python -m analysis.report [RUN_DIR] [--runs DIR ...] [--single]
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from analysis import html_report
from analysis.claims import claim_rows, claims_section
from analysis.figures import latency_figure, resources_figure
from analysis.forest import claims_figure
from analysis.hops import hops_figure, hops_section
from analysis.latency import (
    cv_section,
    latency_section,
    order_section,
    overhead_section,
    ratio_section,
    reference_section,
    timing_section,
)
from analysis.metadata import (
    failed_cells_section,
    metadata_section,
    probes_section,
    simplifications_section,
)
from analysis.noise import first_screen as noise_first_screen
from analysis.noise import noise_section
from analysis.published import sources_section as published_sources
from analysis.push import exposure_figure, push_section
from analysis.resources import resource_cv_checks, resources_section
from analysis.rundata import Run, load_run
from analysis.runset import RunSet, discover, explicit, single, sources_section
from analysis.smp import write_smp
from bench.errors import BenchError, UserError, fail
from bench.store import latest_run

LOCAL_NOTE = ("Local backend: Envoy 1.40 in network namespaces on one host; these figures "
              "show architecture costs, not Istio release figures.")


def machine(host: dict[str, Any]) -> str:
    """"<cpu model>, <n> cores, kernel <k>", saying which of them were not recorded."""
    cores = f"{host['cores']} cores" if host.get("cores") else "core count not recorded"
    return (f"{host.get('cpu_model') or 'CPU model not recorded'}, {cores}, "
            f"kernel {host.get('kernel') or 'not recorded'}")


def header_section(run: Run, combined: bool = False) -> list[str]:
    """Title; scenario, backend, machine and, for the local backend, its caveat on one
    line; `combined`: the claims draw on other runs too."""
    scenario = run.scenario
    host = run.manifest.get("host") or {}
    lines = [f"# meshbench report: {run.run_id}", "",
             (f"- Scenario {scenario.get('name', 'not recorded')} "
              f"(hash `{run.manifest.get('scenario_hash', 'not recorded')}`), backend "
              f"{run.backend or 'not recorded'}, machine {machine(host)}"
              + (f". {LOCAL_NOTE}" if run.emulated else "")),
             (f"- Repetitions planned: {scenario.get('repetitions', 'not recorded')}; "
             + ("the claims also draw on the other runs listed under \"Runs drawn from\"; "
                "every other figure below is from this run only" if combined else
                "every figure below is from this run only")
             + ", as median [min–max] across repetitions with n = repetitions measured."),
             ""]
    lines[-1:-1] = noise_first_screen(run)
    return lines


def render(run: Run | RunSet, latency_png: str | None, resources_png: str | None,
           hops_png: str | None = None, exposure_png: str | None = None,
           claims_png: str | None = None) -> str:
    """The report's Markdown, linking the figures given (file names; None = not written).
    With a RunSet the claims draw on its runs and the other sections on its primary."""
    rs = run if isinstance(run, RunSet) else single(run)
    run = rs.primary
    lines = header_section(run, rs.combined) + claims_section(rs, claims_png)
    lines += sources_section(rs)
    lines += latency_section(run, latency_png) + timing_section(run) + reference_section(run)
    lines += overhead_section(run) + order_section(run)
    lines += ratio_section(run) + hops_section(run, hops_png)
    lines += cv_section(run, resource_cv_checks(run))
    lines += resources_section(run, resources_png) + push_section(run, exposure_png)
    lines += published_sources()
    lines += failed_cells_section(run) + noise_section(run) + probes_section(run)
    lines += metadata_section(run) + simplifications_section(run)
    return "\n".join(lines).rstrip() + "\n"


@dataclass(frozen=True)
class ReportFiles:
    """What `write_outputs` wrote into the run directory."""

    figures: tuple[Path, ...]
    markdown: Path
    html: Path
    smp: Path

    def all(self) -> list[Path]:
        """Every file, report.md last."""
        return [*self.figures, self.smp, self.html, self.markdown]


def run_set(run: Run, runs: Sequence[Path | str] | None = None, combine: bool = True) -> RunSet:
    """The runs the claims draw on: `runs` given (each checked against `run`), else the
    default search (analysis.runset.discover) unless `combine` is False. Each is read as
    `run` is (with or without its contaminated cells)."""
    if runs:
        return explicit(run, [load_run(p, run.include_noisy) for p in runs])
    return discover(run) if combine else single(run)


def write_outputs(run_dir: Path | str, runs: Sequence[Path | str] | None = None,
                  combine: bool = True, include_noisy: bool = False) -> ReportFiles:
    """Write latency.png and, when data-plane resource rows exist, resources.png; then
    report.md, report.html (the same report with the figures embedded as data: URIs, no
    external resource) and smp.json (see analysis.smp) into `run_dir`. The claims draw
    on `run_set(run, runs, combine)`.

    A figure whose data are missing is not written, and the report says so.
    Raises UserError when `run_dir` (or one of `runs`) is not a run directory, or when a
    run of `runs` is not compatible with it.
    """
    run = load_run(run_dir, include_noisy)
    rs = run_set(run, runs, combine)
    forest = claims_figure(claim_rows(rs), run.run_dir / "claims.png",
                           f"{run.run_id} ({run.backend} backend)")
    latency = latency_figure(run, run.run_dir / "latency.png")
    resources = resources_figure(run, run.run_dir / "resources.png")
    hops = hops_figure(run, run.run_dir / "hops.png")
    exposure = exposure_figure(run, run.run_dir / "exposure.png")
    markdown = render(rs, latency.name if latency else None,
                      resources.name if resources else None, hops.name if hops else None,
                      exposure.name if exposure else None, forest.name if forest else None)
    report = run.run_dir / "report.md"
    report.write_text(markdown)
    page = run.run_dir / "report.html"
    page.write_text(html_report.render(markdown, run.run_dir,
                                       f"meshbench report: {run.run_id}"))
    smp = write_smp(run, run.run_dir / "smp.json")
    return ReportFiles(tuple(p for p in (forest, latency, resources, hops, exposure) if p), report,
                       page, smp)


def write_report(run_dir: Path | str) -> list[Path]:
    """Write every output of `write_outputs`; return the Markdown report and the figures
    it links (report.md last), as before report.html and smp.json existed. They are
    written beside report.md; `write_outputs(...).all()` lists every file.
    """
    files = write_outputs(run_dir)
    return [*files.figures, files.markdown]


def main(argv: list[str] | None = None) -> int:
    """CLI: write the report of RUN_DIR (default: newest run under results/)."""
    parser = argparse.ArgumentParser(prog="python -m analysis.report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", nargs="?", type=Path,
                        help="run directory (default: newest under results/)")
    parser.add_argument("--runs", nargs="+", type=Path, metavar="DIR",
                        help="draw the claims from these runs too (checked compatible)")
    parser.add_argument("--single", action="store_true",
                        help="draw the claims from RUN_DIR only")
    parser.add_argument("--include-noisy", action="store_true",
                        help="count the cells the machine's noise contaminated (set aside "
                             "by default)")
    args = parser.parse_args(argv)
    try:
        run_dir = args.run_dir or (args.runs[0] if args.runs else latest_run())
        if run_dir is None:
            raise UserError("no run under results/", hint="pass a run directory")
        for path in write_outputs(run_dir, args.runs, not args.single,
                                  args.include_noisy).all():
            print(path)
    except BenchError as e:
        return fail(e, "meshbench report")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
