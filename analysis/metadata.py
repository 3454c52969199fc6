"""Report sections from the manifest: failed cells, probes, run metadata, simplifications."""

from __future__ import annotations

import datetime as dt
from typing import Any

from analysis.fmt import table
from analysis.rundata import Run

NOT_RECORDED = "not recorded"


def failed_cells_section(run: Run) -> list[str]:
    """Cells the manifest marks failed, with their reasons; or "none"."""
    lines = ["## Failed cells", ""]
    cells = run.manifest.get("cells")
    if cells is None:
        return lines + ["The manifest records no cell list, so failures are unknown.", ""]
    # "skipped": the mode's deployment broke earlier in that repetition (manifest: faults)
    failed = [c for c in cells if c.get("status") in ("failed", "skipped")]
    experiments = [f"- experiment {e.get('experiment')} (r{e.get('repetition')} "
                   f"{e.get('mode')}): {e.get('status')}: {e.get('reason')}"
                   for e in run.manifest.get("experiments") or [] if e.get("status") != "ok"]
    if not failed:
        return lines + [f"none ({len(cells)} cells, all ok)", "", *experiments,
                        *([""] if experiments else [])]
    rows = [[str(c.get("cell", "")), str(c.get("mode", "")), str(c.get("level", "")),
             str(c.get("repetition", "")), str(c.get("status", "")),
             str(c.get("reason") or "no reason recorded")]
            for c in failed]
    lines += table(["cell", "mode", "target (rps)", "repetition", "status", "reason"], rows)
    lines += ["", (f"{len(failed)} of {len(cells)} cells failed or were skipped. Rows they left "
                   "in the store are kept out of every statistic above; n shows what "
                   "remained."), ""]
    return lines + experiments + ([""] if experiments else [])


def probes_section(run: Run) -> list[str]:
    """Each probe's status and, where given, why it was skipped or failed."""
    lines = ["## Probes", ""]
    probes = run.manifest.get("probes")
    if not probes:
        return lines + ["No probe status recorded in the manifest.", ""]
    rows, notes = [], []
    for name, p in probes.items():
        p = p if isinstance(p, dict) else {"status": str(p)}
        rows.append([name, str(p.get("status", "unknown")), str(p.get("reason") or "")])
        for key, what in (("failures", "failed"), ("skipped", "left without data"),
                          ("missing", "cells or experiments without data"),
                          ("restarts", "restarts")):
            items = p.get(key) or []
            if isinstance(items, dict):
                items = [f"{k}: {v}" for k, v in items.items()]
            if items:
                shown = "; ".join(map(str, items[:5]))
                more = f" (+{len(items) - 5} more)" if len(items) > 5 else ""
                notes.append(f"- {name}: {len(items)} {what}: {shown}{more}")
    lines += table(["probe", "status", "reason"], rows) + [""]
    return lines + (notes + [""] if notes else [])


def _mapping(value: Any) -> str:
    if not isinstance(value, dict) or not value:
        return NOT_RECORDED
    return ", ".join(f"{k} {v}" for k, v in value.items())


def _when(value: Any) -> str:
    """Epoch seconds as UTC ISO time; anything else as recorded."""
    if isinstance(value, (int, float)):
        return dt.datetime.fromtimestamp(value, dt.UTC).isoformat(timespec="seconds")
    return NOT_RECORDED if value is None else str(value)


def metadata_section(run: Run) -> list[str]:
    """Versions, host, start/end, exit status, mode order per repetition, seed."""
    m = run.manifest
    lines = ["## Run metadata", "",
             f"- Versions: {_mapping(m.get('versions'))}",
             f"- Host: {_mapping(m.get('host'))}",
             f"- Started: {_when(m.get('started'))}; ended: {_when(m.get('ended'))}",
             f"- Git: {_mapping(m.get('git'))}",
             f"- Exit status: {m.get('exit_status', NOT_RECORDED)}",
             f"- Seed: {m.get('seed', NOT_RECORDED)}"]
    order = m.get("mode_order")
    if order:
        lines += ["- Mode order per repetition:"]
        reps = sorted({c.get("repetition") for c in m.get("cells") or []}, key=str)
        names = reps if len(reps) == len(order) else list(range(len(order)))
        lines += [f"  - repetition {r}: {', '.join(map(str, modes))}"
                  for r, modes in zip(names, order)]
    else:
        lines += [f"- Mode order per repetition: {NOT_RECORDED}"]
    return lines + [""] + phases_lines(m) + path_lines(m)


def phases_lines(m: dict[str, Any]) -> list[str]:
    """Where the run's time went: seconds per phase, summed over (repetition, mode)."""
    phases = m.get("phases")
    if not isinstance(phases, dict) or not phases:
        return []
    totals: dict[str, float] = {}
    for per in phases.values():
        for phase, sec in per.items():
            totals[phase] = totals.get(phase, 0.0) + float(sec)
    whole = sum(totals.values())
    shown = ", ".join(f"{k} {v:.0f} s ({v / whole:.0%})"
                      for k, v in sorted(totals.items(), key=lambda kv: -kv[1]))
    return [f"Time by phase over {len(phases)} (repetition, mode) units, {whole:.0f} s in all: "
            f"{shown}.", ""]


def path_lines(m: dict[str, Any]) -> list[str]:
    """The proxies' own counters over each mode's cells, by role: proof that the load
    crossed every role of the mode's data plane (independent of the harness's timing)."""
    checks = m.get("path_checks")
    if not checks:
        return []
    lines = ["## Path check", "",
             "Connections the proxies themselves counted over each mode's cells (Envoy's "
             "listener counters, or Istio's metrics on kube backends), summed by role. A "
             "role at 0 means the load bypassed it.", ""]
    rows = [[f"r{c.get('repetition')}", str(c.get("mode")),
             ", ".join(f"{r} {v:.0f}" for r, v in sorted((c.get("counters") or {}).items())),
             ", ".join(c.get("bypassed") or []) or "none"] for c in checks]
    return lines + table(["repetition", "mode", "counted by role", "bypassed"], rows) + [""]


def simplifications_section(run: Run) -> list[str]:
    """The manifest's list of simplifications against a real Istio deployment."""
    lines = ["## Simplifications", ""]
    items = run.manifest.get("simplifications")
    if not items:
        return lines + ["None recorded in the manifest.", ""]
    return lines + [f"- {s}" for s in items] + [""]


# What must match for two runs' numbers to be comparable (docs/statistics.md, "compare").
# A key neither run recorded (e.g. versions.istio on the local backend) is not compared.
KEY_METADATA = ("scenario_hash", "backend", "versions.envoy", "versions.istio",
                "host.cpu_model", "host.kernel")


def dotted(manifest: dict[str, Any], key: str) -> Any:
    """manifest["a"]["b"] for key "a.b"; None where any part is missing."""
    value: Any = manifest
    for part in key.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def differing_keys(a: dict[str, Any], b: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """(key, value in a, value in b) for each key metadata that differs, in KEY_METADATA
    order. A key missing from both manifests is not a difference."""
    out = []
    for key in KEY_METADATA:
        va, vb = dotted(a, key), dotted(b, key)
        if va is None and vb is None:
            continue
        if va != vb:
            out.append((key, va, vb))
    return out


def describe_differences(diffs: list[tuple[str, Any, Any]]) -> str:
    """One line: "host.kernel (6.8 vs 6.9), backend (local vs kind)"."""
    return ", ".join(f"{k} ({'missing' if va is None else va} vs "
                     f"{'missing' if vb is None else vb})" for k, va, vb in diffs)
