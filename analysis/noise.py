"""The machine's noise in the report: per cell, the CPU that steal and other processes took
and the CPU pressure (bench/probes/noise.py), which cells were set aside as contaminated
or re-run, and a strip under the latency figure."""

from __future__ import annotations

from typing import Any

from matplotlib.axes import Axes

from analysis.rundata import Run
from bench.probes.noise import summary

STEAL_COLOR, FOREIGN_COLOR = "#d62728", "#ff9f40"


def _pct(v: Any) -> str:
    return "–" if v is None else f"{100 * float(v):.1f}"


def threshold(run: Run) -> float | None:
    probe = (run.manifest.get("probes") or {}).get("noise") or {}
    t = probe.get("threshold")
    return float(t) if t is not None else None


def counts(run: Run) -> dict[str, int]:
    """Cells measured for noise, contaminated in their last attempt, re-run, earlier
    attempts, and set aside (none when the run was read with include_noisy)."""
    n = summary(run.manifest.get("cells") or [])
    return {"cells": n["cells"], "measured": n["measured"],
            "contaminated": n["contaminated"], "rerun": n["rerun"],
            "earlier_attempts": n["attempts_set_aside"], "set_aside": len(run.set_aside)}


def first_screen(run: Run) -> list[str]:
    """The header's line about the machine's noise (a warning when most cells were
    contaminated); [] for a run recorded before noise was measured."""
    n = counts(run)
    if not n["measured"]:
        return []
    t = threshold(run)
    limit = f"more than {100 * t:.0f} % of the CPU" if t is not None else "CPU"
    tries = n["earlier_attempts"]
    rerun = (f"; {n['rerun']} re-run ({tries} contaminated attempt{'s' * (tries != 1)} kept "
             "aside)" if n["rerun"] else "")
    if n["contaminated"] == 0:
        return [f"- Machine noise: no cell lost {limit} to steal or other processes"
                f"{rerun} (section \"The machine's noise\")."]
    what = ("set aside: every figure below leaves them out" if n["set_aside"] else
            "included on request (--include-noisy)")
    line = (f"- Machine noise: {n['contaminated']} of {n['measured']} cells lost {limit} to "
            f"steal or other processes, {what}{rerun} (section \"The machine's noise\").")
    if 2 * n["contaminated"] > n["measured"]:
        return [f"- **Most cells were contaminated by the machine's noise "
                f"({n['contaminated']} of {n['measured']})**: the figures below rest on the "
                "few clean ones. Run again on a quieter machine (`make doctor` says "
                "whether it is), or raise `timing.rerun_noisy`.", line]
    return [line]


def noise_section(run: Run) -> list[str]:
    cells = run.noise_cells()
    rows = [c for c in cells if c.get("noise")]
    if not rows:
        return []
    t = threshold(run)
    n = counts(run)
    out = ["## The machine's noise", "",
           "Per cell window, the share of the machine's CPU taken by steal (a neighbour on "
           "the hypervisor) and by processes that are not the run's own, the share of time a "
           "runnable task waited for a CPU (PSI \"some\"), the run queue, and how fast "
           "the machine was right after the window (its load stopped: a neighbour taking "
           "the host's memory bandwidth or the cores' clock shows there, not as steal; "
           "bench/probes/noise.py). A window that lost more than "
           f"{_pct(t)} % is contaminated: the analysis sets its cell aside "
           f"({n['set_aside']} here), and `timing.rerun_noisy` runs it again (every "
           "attempt is kept below). `--include-noisy` puts set-aside cells back.", "",
           "| cell | attempt | steal % | other processes % (largest) | lost % | "
           "CPU pressure % | run queue | machine speed after (SHA-256 MiB/s, copy GiB/s) "
           "| verdict |",
           "|---|---|---|---|---|---|---|---|---|"]
    for c in rows:
        nz = c["noise"]
        top = nz.get("foreign_top") or []
        who = f" ({top[0]['comm']} {top[0]['cores']:.2f} cores)" if top and top[0].get(
            "cores", 0) >= 0.01 else ""
        ref = c.get("noise_reference")
        if not c["final"]:
            verdict = "contaminated, run again"
        elif c.get("noisy"):
            key = (str(c["mode"]), int(c["level"]), int(c["repetition"]))
            verdict = ("**contaminated, set aside**" if key in run.set_aside else
                       "contaminated, included")
        else:
            verdict = "clean"
        lost = _pct(nz.get("lost_share"))
        if ref:
            lost += f" (reference window {_pct(ref.get('lost_share'))})"
        runq = nz.get("runq_mean")
        fast = (f"{nz['cpu_mibps']:.0f}, {nz['mem_gibps']:.2f}" if nz.get("cpu_mibps")
                else "–")
        out.append(f"| {c['cell']} | {c.get('attempt', 1)} | {_pct(nz.get('steal_share'))} | "
                   f"{_pct(nz.get('foreign_share'))}{who} | {lost} | "
                   f"{_pct(nz.get('psi_some_share'))} | "
                   f"{'–' if runq is None else f'{runq:.1f}'} | {fast} | {verdict} |")
    worst = (run.manifest.get("noise") or {}).get("worst") or {}
    if worst:
        out += ["", f"Worst window of the run: lost {_pct(worst.get('lost_share'))} %, steal "
                    f"{_pct(worst.get('steal_share'))} % (one-second peak "
                    f"{_pct(worst.get('steal_peak_share'))} %), CPU pressure "
                    f"{_pct(worst.get('psi_some_share'))} %."]
    return out + [""]


def strip(ax: Axes, run: Run) -> bool:
    """Under the latency figure: per cell window in time order, the CPU lost to steal and
    to other processes (stacked bars), the CPU pressure (dots) and the threshold. False
    when the run has no noise records."""
    cells = sorted((c for c in run.noise_cells() if c.get("noise") and c.get("window")),
                   key=lambda c: c["window"]["start"])
    if not cells:
        return False
    xs = range(len(cells))
    steal = [100 * c["noise"]["steal_share"] for c in cells]
    other = [100 * max(0.0, c["noise"]["foreign_share"]) for c in cells]
    psi = [100 * (c["noise"].get("psi_some_share") or 0.0) for c in cells]
    ax.bar(xs, steal, color=STEAL_COLOR, label="steal")
    ax.bar(xs, other, bottom=steal, color=FOREIGN_COLOR, label="other processes")
    ax.plot(xs, psi, "k.", ms=5, label="CPU pressure")
    t = threshold(run)
    if t is not None:
        ax.axhline(100 * t, color="k", ls="--", lw=0.8, label="threshold")
    for x, c in zip(xs, cells):
        if c.get("noisy"):
            ax.text(x, max(steal[x] + other[x], psi[x]) + 1, "x", ha="center", fontsize=8,
                    color=STEAL_COLOR)
    ax.set_xticks(list(xs), [f"{c['cell']}" + (f" a{c['attempt']}" if c.get("attempt", 1) > 1
                                               else "") for c in cells],
                  rotation=90, fontsize=6)
    ax.set_ylabel("% of the CPU")
    ax.set_title("The machine's noise per cell window, in time order (x: contaminated)",
                 fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.grid(True, axis="y", alpha=0.3)
    return True
