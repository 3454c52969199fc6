"""Report section on CPU and memory per role, under load and idle, and the data-plane total."""

from __future__ import annotations

from typing import Any

import pandas as pd

from analysis.fmt import NOT_MEASURED, spread, table
from analysis.latency import by_cell
from analysis.rundata import IDLE, UNDER_LOAD, Run
from analysis.stats import summarize

DATAPLANE = "dataplane"
SAMPLER = "sampler"  # the resource sampler's own row: what the measuring costs
ROLE_ORDER = ("sidecar", "ztunnel", "waypoint", "control-plane", "app", "loadgen")
# (metric, column header, text when a cell has no such row)
MEMORY = (("pss_mib", "PSS (MiB)", "not read"), ("rss_mib", "RSS (MiB)", NOT_MEASURED))


def role_entities(rows: pd.DataFrame) -> list[str]:
    """"role:<role>" entities present, in ROLE_ORDER, then any others by name."""
    present = {e for e in rows["entity"] if e.startswith("role:")}
    known = [f"role:{r}" for r in ROLE_ORDER if f"role:{r}" in present]
    return known + sorted(present - set(known))


def _summaries(rows: pd.DataFrame, metrics: list[str]) -> dict[str, dict[tuple[str, int], Any]]:
    return {m: by_cell(summarize(rows, m)) for m in metrics}


def _cell(s: dict[tuple[str, int], Any], key: tuple[str, int], missing: str) -> str:
    r = s.get(key)
    return missing if r is None else spread(r["median"], r["min"], r["max"])


def _n(summaries: dict[str, dict[tuple[str, int], Any]], key: tuple[str, int]) -> int:
    return max((int(s[key]["n"]) for s in summaries.values() if key in s), default=0)


def dataplane_table(run: Run, rows: pd.DataFrame) -> list[str]:
    """Sum over each mode's proxies, under load, per level."""
    dp = rows[rows["entity"] == DATAPLANE]
    if dp.empty:
        return ["No data-plane total rows (no proxy was sampled under load)."]
    s = _summaries(dp, ["cpu_cores", "cpu_cores_per_krps", *(m for m, _, _ in MEMORY)])
    out, without = [], []
    for mode in run.modes:
        if not (dp["mode"] == mode).any():
            without.append(mode)
            continue
        for level in run.levels:
            key = (mode, level)
            out.append([mode, str(level), _cell(s["cpu_cores"], key, NOT_MEASURED),
                        _cell(s["cpu_cores_per_krps"], key, NOT_MEASURED),
                        *(_cell(s[m], key, miss) for m, _, miss in MEMORY),
                        str(_n(s, key))])
    headers = ["mode", "target (rps)", "cores", "cores per 1000 achieved rps",
               *(h for _, h, _ in MEMORY), "n"]
    lines = table(headers, out)
    if without:
        lines += ["", f"No data-plane proxy in: {', '.join(without)}."]
    return lines


def role_table(run: Run, rows: pd.DataFrame, idle: bool) -> list[str]:
    """Per role: cores and memory; per level under load, or per mode when idle."""
    metrics = ["cpu_cores", *(m for m, _, _ in MEMORY)]
    out = []
    # under load the data-plane total has its own table; the sampler's own cost goes last
    for entity in role_entities(rows) + ([DATAPLANE] if idle else []) + [SAMPLER]:
        ent = rows[rows["entity"] == entity]
        if ent.empty:
            continue
        s = _summaries(ent, metrics)
        role = {DATAPLANE: "data plane (total)", SAMPLER: "resource sampler (harness)"}.get(
            entity, entity.removeprefix("role:"))
        for mode in run.modes:
            if not (ent["mode"] == mode).any():
                continue
            levels = sorted({int(v) for v in ent["level"]}) if idle else run.levels
            for level in levels:
                key = (mode, level)
                cells = [_cell(s["cpu_cores"], key, NOT_MEASURED),
                         *(_cell(s[m], key, miss) for m, _, miss in MEMORY)]
                out.append([mode, *([] if idle else [str(level)]), role, *cells,
                            str(_n(s, key))])
    # mode, then level (under load); the stable sort keeps ROLE_ORDER inside each
    out.sort(key=lambda r: (run.modes.index(r[0]), 0 if idle else int(r[1])))
    headers = ["mode", *([] if idle else ["target (rps)"]), "role", "cores",
               *(h for _, h, _ in MEMORY), "n"]
    return table(headers, out)


def probe_status(run: Run) -> str:
    """The resource probe's status and reason from the manifest, as one phrase."""
    probes = run.manifest.get("probes") or {}
    found = [(k, v) for k, v in probes.items() if "resource" in k]
    if not found:
        return "not recorded in the manifest"
    parts = []
    for name, p in found:
        p = p if isinstance(p, dict) else {"status": str(p)}
        reason = f": {p['reason']}" if p.get("reason") else ""
        parts.append(f"{name} {p.get('status', 'unknown')}{reason}")
    return "; ".join(parts)


def resources_section(run: Run, figure: str | None = None) -> list[str]:
    """Cores and PSS/RSS per role under load and idle, data-plane total, cores per krps;
    then `figure` (an image file name)."""
    lines = ["## Resources", ""]
    res = run.resources
    if res.empty:
        return lines + [f"No resource samples in this run (probe status: {probe_status(run)}).",
                        ""]
    load, idle = res[res["phase"] == UNDER_LOAD], res[res["phase"] == IDLE]
    lines += [("Cores = CPU time over the window / window length; memory = mean over the "
              "window's samples; median [min–max] across n repetitions. PSS splits shared "
              "pages between processes, so it is the honest total for many Envoys."), ""]
    lines += ["### Data-plane total under load (sum over the mode's proxies)", ""]
    lines += dataplane_table(run, load) + [""]
    lines += ["### Per role under load", ""]
    lines += (role_table(run, load, idle=False) if not load.empty
              else ["No resource rows under load."]) + [""]
    lines += ["### Idle (no load)", ""]
    lines += (role_table(run, idle, idle=True) if not idle.empty
              else ["No idle samples in this run."]) + [""]
    return lines + ([f"![data-plane resources]({figure})", ""] if figure else [])


def resource_cv_checks(run: Run) -> list[tuple[pd.DataFrame, str, str]]:
    """(summary, what, unit) of data-plane cores under load, for the CV section."""
    res = run.resources
    if res.empty:
        return []
    dp = res[(res["phase"] == UNDER_LOAD) & (res["entity"] == DATAPLANE)]
    return [(summarize(dp, "cpu_cores"), "data-plane cores", "cores")]
