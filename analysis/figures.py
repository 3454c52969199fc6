"""Figures for the report (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
from matplotlib import ticker
from matplotlib.axes import Axes

from analysis import noise
from analysis.latency import PERCENTILES, by_cell
from analysis.resources import DATAPLANE
from analysis.rundata import IDLE, UNDER_LOAD, Run
from analysis.stats import summarize

MODE_COLORS = {"baseline": "#555555", "sidecar": "#1f77b4", "ambient": "#2ca02c",
               "waypoint": "#ff7f0e"}
LOCAL_NOTE = "local backend: Envoy in network namespaces on one host, not Istio release figures"


def _n_text(counts: list[int]) -> str:
    lo, hi = min(counts), max(counts)
    return f"n = {lo}" if lo == hi else f"n = {lo}–{hi}"


def _machine(run: Run) -> str:
    host = run.manifest.get("host") or {}
    cpu = host.get("cpu_model", "CPU model not recorded")
    cores = f", {host['cores']} cores" if host.get("cores") else ""
    note = f"\n{LOCAL_NOTE}" if run.emulated else ""
    return f"{cpu}{cores} — run {run.run_id}{note}"


def _color(mode: str, i: int) -> str:
    return MODE_COLORS.get(mode, f"C{i + 4}")


def _latency_panel(ax: Axes, run: Run, level: int,
                   summaries: dict[str, dict], saturated: dict) -> list[int]:
    """One level: a line per mode over the percentiles; returns the n of each point."""
    modes = [m for m in run.modes if (m, level) in summaries[PERCENTILES[0][0]]]
    counts = []
    for i, mode in enumerate(modes):
        pts = [(j, summaries[m][(mode, level)]) for j, (m, _) in enumerate(PERCENTILES)
               if (mode, level) in summaries[m]]
        x = [j + (i - (len(modes) - 1) / 2) * 0.07 for j, _ in pts]
        med = [r["median"] for _, r in pts]
        err = [[r["median"] - r["min"] for _, r in pts], [r["max"] - r["median"] for _, r in pts]]
        counts += [int(r["n"]) for _, r in pts]
        label = f"{mode} (n={int(pts[0][1]['n'])})"
        sat = saturated.get((mode, level))
        n_sat = 0 if sat is None else round(sat["mean"] * sat["n"])
        if n_sat:
            label += f", {n_sat} saturated"
        ax.errorbar(x, med, yerr=err, marker="o", ms=4, capsize=3, lw=1.5,
                    color=_color(mode, i), label=label)
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(ticker.NullFormatter())
    ax.set_xticks(range(len(PERCENTILES)), [label for _, label in PERCENTILES])
    ax.set_title(f"target {level} rps")
    ax.set_xlabel("percentile")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8)
    return counts


def latency_figure(run: Run, path: Path) -> Path | None:
    """Latency by percentile, one panel per level, median with min–max error bars; under
    them, when the run recorded it, the machine's noise per cell (analysis.noise.strip).

    Returns None (and writes nothing) when the run has no latency rows.
    """
    summaries = {m: by_cell(summarize(run.latency, m)) for m, _ in PERCENTILES}
    levels = [lv for lv in run.levels
              if any(k[1] == lv for k in summaries[PERCENTILES[0][0]])]
    if not levels:
        return None
    saturated = by_cell(summarize(run.client, "saturated"))
    with_noise = any(c.get("noise") for c in run.noise_cells())
    width = 4.6 * len(levels) + 0.8
    if with_noise:  # the machine's noise per cell in a strip under the panels
        fig = plt.figure(figsize=(max(width, 8.0), 7.4))
        grid = fig.add_gridspec(2, len(levels), height_ratios=[4.8, 2.2])
        first = fig.add_subplot(grid[0, 0])
        panels = [first] + [fig.add_subplot(grid[0, i], sharey=first)
                            for i in range(1, len(levels))]
        noise.strip(fig.add_subplot(grid[1, :]), run)
    else:
        fig, axes = plt.subplots(1, len(levels), figsize=(width, 4.8), sharey=True,
                                 squeeze=False)
        panels = list(axes[0])
    counts: list[int] = []
    for ax, level in zip(panels, levels):
        counts += _latency_panel(ax, run, level, summaries, saturated)
    panels[0].set_ylabel("client latency (µs, log scale)")
    fig.suptitle("Client latency: median and min–max across repetitions "
                 f"({_n_text(counts)} per point)\n{_machine(run)}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _bars(ax: Axes, run: Run, groups: list[tuple[str, pd.DataFrame]], metric: str) -> list[int]:
    """Grouped bars: one group per (label, rows), one bar per mode, min–max error bars."""
    modes = [m for m in run.modes if any((rows["mode"] == m).any() for _, rows in groups)]
    width = 0.8 / max(1, len(modes))
    counts: list[int] = []
    for i, mode in enumerate(modes):
        xs, med, lo, hi = [], [], [], []
        for g, (_, rows) in enumerate(groups):
            s = summarize(rows[rows["mode"] == mode], metric)
            if s.empty:
                continue
            r = s.iloc[0]
            xs.append(g + (i - (len(modes) - 1) / 2) * width)
            med.append(r["median"])
            lo.append(r["median"] - r["min"])
            hi.append(r["max"] - r["median"])
            counts.append(int(r["n"]))
        ax.bar(xs, med, width, yerr=[lo, hi], capsize=3, color=_color(mode, i), label=mode)
    ax.set_xticks(range(len(groups)), [label for label, _ in groups])
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    return counts


def resources_figure(run: Run, path: Path) -> Path | None:
    """Data-plane cores under load per level, and data-plane memory idle and under load.

    Returns None (and writes nothing) when no data-plane total rows exist.
    """
    dp = run.resources[run.resources["entity"] == DATAPLANE]
    if dp.empty:
        return None
    load, idle = dp[dp["phase"] == UNDER_LOAD], dp[dp["phase"] == IDLE]
    mem = "pss_mib" if (dp["metric"] == "pss_mib").any() else "rss_mib"
    fig, (ax_cpu, ax_mem) = plt.subplots(1, 2, figsize=(11, 4.6))
    level_groups = [(f"{lv} rps", load[load["level"] == lv]) for lv in run.levels]
    counts = _bars(ax_cpu, run, level_groups, "cpu_cores")
    ax_cpu.set_ylabel("data-plane CPU (cores)")
    ax_cpu.set_title("CPU under load, sum over proxies")
    mem_groups = ([("idle", idle)] if not idle.empty else []) + level_groups
    counts += _bars(ax_mem, run, mem_groups, mem)
    ax_mem.set_ylabel(f"data-plane {mem.removesuffix('_mib').upper()} (MiB)")
    ax_mem.set_title("memory, sum over proxies")
    fig.suptitle("Data-plane resources: median and min–max across repetitions "
                 f"({_n_text(counts or [0])} per bar)\n{_machine(run)}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
