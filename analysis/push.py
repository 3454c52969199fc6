"""Report section on config-push experiments (source "xds"): who received a change, bytes,
time to the last ACK, NACKs; the control plane's accounting beside the proxies' counters."""

from __future__ import annotations

import pandas as pd

from analysis.fmt import num, table
from analysis.load import Run

SOURCE = "xds"
SCOPING = ("Which proxies receive a change follows this harness's implementation of Istio's "
           "documented scoping (a sidecar without a Sidecar resource holds every service and "
           "route; a ztunnel holds every workload and service, L4 only; a waypoint the L7 "
           "config of what it serves); bytes, ACK times and proxy costs are measured from "
           "real Envoys.")


def push_section(run: Run) -> list[str]:
    lines = ["## Config push (xDS)", ""]
    rows = run.without_failed(run.rows(SOURCE))
    if rows.empty:
        return lines + ["Not measured in this run (scenario `experiments`, with "
                        "`proxy.config_source: xds`).", ""]
    exp = run.label("experiment").loc[rows.index]
    df = rows.assign(experiment=exp)
    mesh = df[df["entity"] == "mesh"]
    out = []
    for (experiment, mode), g in mesh.groupby(["experiment", "mode"], sort=False):
        def med(metric: str, g: pd.DataFrame = g) -> str:
            v = g[g["metric"] == metric]["value"]
            if v.empty:
                return "not measured"
            return num(v.median()) if len(v) == 1 else \
                f"{num(v.median())} [{num(v.min())}–{num(v.max())}]"
        out.append([str(experiment), str(mode),
                    f"{med('proxies_updated')} / {med('proxies_total')}",
                    med("proxies_applied"), med("push_bytes_total"), med("convergence_p50"),
                    med("convergence_max"), med("nacks"), med("controlplane_cpu"),
                    str(g["repetition"].nunique())])
    lines += table(["change", "mode", "proxies updated / total (control plane)",
                    "proxies that applied it (Envoy counters)", "bytes sent", "last ACK p50 "
                    "(ms)", "last ACK max (ms)", "NACKs", "control-plane CPU (s)", "n"], out)
    return lines + ["", SCOPING, ""]
