"""Report section on per-hop latency from the BCC probe, with its validation.

Each proxy on the path holds a request (downstream in -> upstream out) and a response
(upstream in -> downstream out). The sum of its two median residence times is the hop's
cost; the sum over the path's hops is compared with the end-to-end p50 overhead of the
mode (mode minus baseline, same level and repetition). The remainder is kernel and network
time between the hops (send paths, veths, iptables, namespaces) and is reported as such.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from analysis.fmt import num, table  # noqa: E402
from analysis.rundata import Run  # noqa: E402
from analysis.stats import paired_deltas  # noqa: E402

SOURCE = "hops"
ORDER = {"client": 0, "waypoint": 1, "server": 2}
SIDE_COLORS = {"client": "tab:blue", "waypoint": "tab:orange", "server": "tab:green"}


def hop_table(run: Run) -> pd.DataFrame:
    """One row per (mode, level, repetition, entity, direction) with p50/p99/count/unmatched."""
    rows = run.without_failed(run.rows(SOURCE))
    if rows.empty:
        return pd.DataFrame()
    df = run.with_labels(rows, direction=None, side="", role="")
    wide = df.pivot_table(index=["mode", "level", "repetition", "entity", "role", "side",
                                 "direction"], columns="metric", values="value",
                          aggfunc="first").reset_index()
    return wide


def hops_section(run: Run, figure: str | None = None) -> list[str]:
    lines = ["## Latency per hop (BCC)", ""]
    wide = hop_table(run)
    if wide.empty or "hop_p50" not in wide:
        status = (run.manifest.get("probes") or {}).get("hops", {})
        why = status.get("reason") or "; ".join(status.get("failures", [])) or "no rows"
        return lines + [f"No per-hop data in this run ({status.get('status', 'not run')}: "
                        f"{why}).", ""]
    overhead = paired_deltas(run.latency, "latency_p50")
    rows, checks = [], []
    rank = {m: i for i, m in enumerate(run.modes)}
    wide = wide.sort_values(["level", "mode"], key=lambda c: c.map(rank) if c.name == "mode" else c)
    for (mode, level), g in wide.groupby(["mode", "level"], sort=False):
        hop_sum_per_rep: dict[int, float] = {}
        hops = sorted(g.groupby(["entity", "role", "side"]),
                      key=lambda kv: ORDER.get(kv[0][2], 9))
        for (entity, role, side), h in hops:
            cells = {}
            for direction in ("request", "response"):
                d = h[h["direction"] == direction]
                cells[direction] = d
                for _, r in d.iterrows():
                    if pd.notna(r.get("hop_p50")):
                        rep = int(r["repetition"])
                        hop_sum_per_rep[rep] = hop_sum_per_rep.get(rep, 0.0) + r["hop_p50"]
            req, resp = cells["request"], cells["response"]
            matched = float(h.get("hop_count", pd.Series(dtype=float)).sum())
            unmatched = float(h.get("hop_unmatched", pd.Series(dtype=float)).sum())
            rows.append([mode, str(level), f"{entity} ({role}, {side})",
                         _med(req, "hop_p50"), _med(req, "hop_p99"),
                         _med(resp, "hop_p50"), _med(resp, "hop_p99"),
                         str(int(req["repetition"].nunique())),
                         f"{matched:.0f} / {unmatched:.0f}"])
        o = overhead[(overhead["mode"] == mode) & (overhead["level"] == level)]
        if not o.empty and hop_sum_per_rep:
            pairs = [(hop_sum_per_rep[int(r)], float(d)) for r, d in
                     zip(o["repetition"], o["delta"]) if int(r) in hop_sum_per_rep]
            if pairs:
                s = float(pd.Series([p[0] for p in pairs]).median())
                e2e = float(pd.Series([p[1] for p in pairs]).median())
                ratio = f"{s / e2e:.2f}" if e2e > 0 else "n/a (overhead <= 0)"
                checks.append([mode, str(level), num(s), num(e2e), num(e2e - s), ratio,
                               str(len(pairs))])
    lines += table(["mode", "target (rps)", "hop (path order)", "request p50 (µs)",
                    "request p99 (µs)", "response p50 (µs)", "response p99 (µs)", "n",
                    "matched / unmatched"], rows)
    lines += ["", "Residence time inside each proxy, from kernel tracepoints: request = bytes "
              "arrive on its downstream socket -> it sends them upstream; response = the "
              "reverse. Median across repetitions of each cell's percentile."]
    if figure:
        lines += ["", f"![latency added per hop]({figure})"]
    lines += ["", "### Validation: hops vs end-to-end overhead", ""]
    if checks:
        lines += table(["mode", "target (rps)", "sum of hop p50s (µs)",
                        "end-to-end p50 overhead (µs)", "remainder: kernel + network (µs)",
                        "hops / overhead", "n pairs"], checks)
        lines += ["", "The remainder is time outside the proxies (send paths, veths, "
                  "iptables, extra TCP connections); a ratio far from 1 says the per-hop view "
                  "misses or double-counts time, and the report shows it rather than hiding it."]
    else:
        lines += ["No baseline in this run, so the per-hop sum cannot be checked against an "
                  "end-to-end overhead."]
    return lines + [""] + probe_overhead_lines(run)


def probe_overhead_lines(run: Run) -> list[str]:
    """The first cell of each proxied mode, with the hop probe and again right after
    without it (rows with source "load_probes_off"; latency from the run's latency source,
    e.g. "load_kernel_probes_off")."""
    lines = ["### Probe overhead", ""]
    src = run.latency_source()
    off = pd.concat([run.rows("load_probes_off", "achieved_rps", entity="client"),
                     run.rows(f"{src}_probes_off", "latency_p50", entity="client")])
    if off.empty:
        return lines + ["Not measured in this run (scenario probes.hops.overhead_check).", ""]
    on = pd.concat([run.client[run.client["metric"] == "achieved_rps"],
                    run.latency[run.latency["metric"] == "latency_p50"]])
    rows = []
    for (mode, level, rep), g in off.groupby(["mode", "level", "repetition"], sort=False):
        w = on[(on["mode"] == mode) & (on["level"] == level) & (on["repetition"] == rep)]
        vals = {}
        for metric in ("achieved_rps", "latency_p50"):
            a = w[w["metric"] == metric]["value"]
            b = g[g["metric"] == metric]["value"]
            vals[metric] = (float(a.iloc[0]), float(b.iloc[0])) if len(a) and len(b) else None
        if vals["achieved_rps"] is None or vals["latency_p50"] is None:
            continue
        (r_on, r_off), (p_on, p_off) = vals["achieved_rps"], vals["latency_p50"]
        rows.append([mode, str(level), f"{r_on:.1f}", f"{r_off:.1f}",
                     f"{100 * (r_on - r_off) / r_off:+.1f}", num(p_on), num(p_off),
                     f"{100 * (p_on - p_off) / p_off:+.1f}"])
    lines += table(["mode", "target (rps)", "rps with probe", "rps without",
                    "Δ rps (%)", "p50 with (µs)", "p50 without (µs)", "Δ p50 (%)"], rows)
    return lines + ["", "One pair of cells per mode (n = 1, run back to back): machine noise of "
                    "±10-20 % between two cells is of the same size as the effect; "
                    "benchmarks/bench_hops_overhead.py measures it over interleaved rounds.",
                    ""]


def _med(d: pd.DataFrame, metric: str) -> str:
    if d.empty or metric not in d or d[metric].dropna().empty:
        return "not measured"
    v = d[metric].dropna()
    return f"{num(v.median())} [{num(v.min())}–{num(v.max())}]" if len(v) > 1 else num(v.iloc[0])


def hops_figure(run: Run, out: Path) -> Path | None:
    """Stacked bars per mode and level: each hop's request + response p50 in path order,
    then the remainder of the end-to-end p50 overhead (kernel and network). Medians across
    repetitions; nothing is drawn for what was not measured."""
    wide = hop_table(run)
    if wide.empty or "hop_p50" not in wide:
        return None
    overhead = paired_deltas(run.latency, "latency_p50")
    levels = [lv for lv in run.levels if lv in set(wide["level"])]
    fig, axes = plt.subplots(1, len(levels), figsize=(5.5 * len(levels), 4.2), squeeze=False)
    for ax, level in zip(axes[0], levels):
        modes = [m for m in run.modes if not wide[(wide["mode"] == m)
                                                  & (wide["level"] == level)].empty]
        for x, mode in enumerate(modes):
            g = wide[(wide["mode"] == mode) & (wide["level"] == level)]
            per_hop = (g.groupby(["entity", "side", "repetition"])["hop_p50"].sum()
                       .groupby(["entity", "side"]).median())
            hops = sorted(per_hop.items(), key=lambda kv: ORDER.get(kv[0][1], 9))
            bottom = 0.0
            for (entity, side), value in hops:
                ax.bar(x, value, bottom=bottom, color=SIDE_COLORS.get(side, "grey"),
                       edgecolor="white")
                ax.text(x, bottom + value / 2, entity, ha="center", va="center", fontsize=7)
                bottom += value
            o = overhead[(overhead["mode"] == mode) & (overhead["level"] == level)]["delta"]
            if not o.empty:
                ax.hlines(float(o.median()), x - 0.45, x + 0.45, colors="black",
                          linestyles="--", linewidth=1,
                          label="end-to-end p50 overhead" if x == 0 else None)
            if not o.empty and float(o.median()) > bottom:
                rest = float(o.median()) - bottom
                ax.bar(x, rest, bottom=bottom, color="lightgrey", hatch="//", edgecolor="white")
                ax.text(x, bottom + rest / 2, "kernel +\nnetwork", ha="center", va="center",
                        fontsize=7)
        ax.set_xticks(range(len(modes)), modes)
        ax.legend(fontsize=7, loc="upper left")
        ax.set_ylabel("p50 added latency (µs)")
        ax.set_title(f"{level} rps: per-hop residence + remainder")
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle("Where the added latency goes (BCC hops, request + response p50)", fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
