"""Report section on per-hop latency from the BCC probe, with its validation.

Each proxy on the path holds a request (downstream in -> upstream out) and a response
(upstream in -> downstream out). The sum of its two median residence times is the hop's
cost; the sum over the path's hops is compared with the end-to-end p50 overhead of the
mode (mode minus baseline, same level and repetition). The remainder is kernel and network
time between the hops (send paths, veths, iptables, namespaces) and is reported as such.
"""

from __future__ import annotations

import pandas as pd

from analysis.fmt import num, table
from analysis.load import Run
from analysis.stats import paired_deltas

SOURCE = "hops"
ORDER = {"client": 0, "waypoint": 1, "server": 2}


def hop_table(run: Run) -> pd.DataFrame:
    """One row per (mode, level, repetition, entity, direction) with p50/p99/count/unmatched."""
    rows = run.without_failed(run.rows(SOURCE))
    if rows.empty:
        return pd.DataFrame()
    labels = run.labels.loc[rows.index]
    df = rows.assign(direction=labels.map(lambda d: d.get("direction")),
                     side=labels.map(lambda d: d.get("side", "")),
                     role=labels.map(lambda d: d.get("role", "")))
    wide = df.pivot_table(index=["mode", "level", "repetition", "entity", "role", "side",
                                 "direction"], columns="metric", values="value",
                          aggfunc="first").reset_index()
    return wide


def hops_section(run: Run) -> list[str]:
    lines = ["## Latency per hop (BCC)", ""]
    wide = hop_table(run)
    if wide.empty or "hop_p50" not in wide:
        status = (run.manifest.get("probes") or {}).get("hops", {})
        why = status.get("reason") or "; ".join(status.get("failures", [])) or "no rows"
        return lines + [f"No per-hop data in this run ({status.get('status', 'not run')}: "
                        f"{why}).", ""]
    overhead = paired_deltas(run.client, "latency_p50")
    rows, checks = [], []
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
    return lines + [""]


def _med(d: pd.DataFrame, metric: str) -> str:
    if d.empty or metric not in d or d[metric].dropna().empty:
        return "not measured"
    v = d[metric].dropna()
    return f"{num(v.median())} [{num(v.min())}–{num(v.max())}]" if len(v) > 1 else num(v.iloc[0])
