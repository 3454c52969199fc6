"""A run's headline metrics, one value per repetition: what `compare` and `trend` track.

Families (all lower-is-better):
  latency_p50, latency_p99      client latency per mode and level (µs)
  overhead_p50, overhead_p99    the same minus baseline, paired per repetition (µs)
  dataplane_cores, dataplane_pss  sum over the mode's proxies under load (cores, MiB)
  hop_p50                       per-hop residence time per proxy and direction (µs)
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from analysis.resources import DATAPLANE
from analysis.rundata import UNDER_LOAD, Run
from analysis.stats import BASELINE, cell_values, paired_deltas

COLUMNS = ["family", "mode", "level", "entity", "repetition", "value"]


@dataclass(frozen=True)
class Family:
    name: str
    label: str
    unit: str


FAMILIES = {f.name: f for f in (
    Family("latency_p50", "latency p50", "µs"), Family("latency_p99", "latency p99", "µs"),
    Family("overhead_p50", "p50 overhead vs baseline", "µs"),
    Family("overhead_p99", "p99 overhead vs baseline", "µs"),
    Family("dataplane_cores", "data-plane cores", "cores"),
    Family("dataplane_pss", "data-plane PSS", "MiB"),
    Family("hop_p50", "hop p50", "µs"),
)}
KEY = ["family", "mode", "level", "entity"]


def select_families(tokens: list[str] | None) -> list[str]:
    """Families named by `tokens` (comma-separated allowed; a token selects every family
    whose name contains it, e.g. "p99" or "latency"); all when None or empty.

    Raises ValueError naming a token that selects nothing.
    """
    if not tokens:
        return list(FAMILIES)
    words = [w.strip() for t in tokens for w in t.split(",") if w.strip()]
    chosen: list[str] = []
    for w in words:
        hits = [f for f in FAMILIES if w in f]
        if not hits:
            raise ValueError(f"--metrics {w!r} matches none of {', '.join(FAMILIES)}")
        chosen += [h for h in hits if h not in chosen]
    return [f for f in FAMILIES if f in chosen]


def _frame(family: str, df: pd.DataFrame, entity: str | pd.Series = "") -> pd.DataFrame:
    if df.empty:
        return pd.DataFrame(columns=COLUMNS)
    out = df[["mode", "level", "repetition", "value"]].assign(family=family, entity=entity)
    return out[COLUMNS]


def headline(run: Run, families: list[str] | None = None) -> pd.DataFrame:
    """Long table (family, mode, level, entity, repetition, value) of the run's headline
    metrics, failed cells left out. `entity` is "" except for hops ("<proxy> <direction>")
    and for data-plane rows of a pod-count sweep ("<n> pods")."""
    wanted = set(families or FAMILIES)
    parts: list[pd.DataFrame] = []
    for p in ("p50", "p99"):
        metric = f"latency_{p}"
        if f"latency_{p}" in wanted:
            parts.append(_frame(metric, cell_values(run.latency, metric)))
        if f"overhead_{p}" in wanted and (run.latency["mode"] == BASELINE).any():
            deltas = paired_deltas(run.latency, metric).rename(columns={"value": "latency"})
            parts.append(_frame(f"overhead_{p}", deltas.rename(columns={"delta": "value"})))
    if wanted & {"dataplane_cores", "dataplane_pss"}:
        res = run.resources
        rows = res[(res["phase"] == UNDER_LOAD) & (res["entity"] == DATAPLANE)]
        if not rows.empty:
            pods = pd.to_numeric(run.label("pods").loc[rows.index], errors="coerce")
            for n in sorted(pods.dropna().unique()) or [None]:
                sel = rows[pods == n] if n is not None else rows[pods.isna()]
                tag = f"{int(n)} pods" if n is not None else ""
                for family, metric in (("dataplane_cores", "cpu_cores"),
                                       ("dataplane_pss", "pss_mib")):
                    if family in wanted:
                        parts.append(_frame(family, cell_values(sel, metric), tag))
    if "hop_p50" in wanted:
        hops = run.without_failed(run.rows("hops", "hop_p50"))
        if not hops.empty:
            direction = run.label("direction").loc[hops.index].fillna("")
            parts.append(_frame("hop_p50", hops, hops["entity"] + " " + direction))
    parts = [p for p in parts if not p.empty]
    if not parts:
        return pd.DataFrame(columns=COLUMNS)
    out = pd.concat(parts, ignore_index=True)
    out["level"] = out["level"].astype(int)
    return out
