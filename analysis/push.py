"""Report section on config-push experiments (source "xds"): who received a change, bytes,
time to the last ACK, NACKs; the control plane's accounting beside the proxies' counters."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from analysis.fmt import num, table  # noqa: E402
from analysis.rundata import Run  # noqa: E402

SOURCE = "xds"
SCOPING = ("Which proxies are pushed, which xDS types and whether whole or incremental "
           "follow this harness's reading of istiod 1.27's push decision (the table below, "
           "each row citing the Istio source it follows), over delta xDS unless the scenario "
           "asks for State of the World; the ztunnel role's bytes are its WDS resources in "
           "Istio's shapes (istio.workload.Address, istio.security.Authorization), its "
           "Envoy data path apart. Bytes, ACK times and proxy costs are measured from real "
           "Envoys and the ztunnels' WDS client.")


def push_section(run: Run, exposure_png: str | None = None) -> list[str]:
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
                    f"{med('proxies_updated')} / {med('proxies_total')}", med("proxies_changed"),
                    med("proxies_applied"), med("kernel_sockets_written"),
                    med("push_bytes_total"), med("kernel_bytes_written"), med("convergence_p50"),
                    med("convergence_max"), med("render_time"), med("convert_time"),
                    med("send_to_last_ack"), med("nacks"), med("controlplane_cpu"),
                    med("proxies_cpu"),
                    str(g["repetition"].nunique())])
    lines += table(["change", "mode", "proxies updated / total (control plane)",
                    "of which config changed",
                    "proxies that applied it (Envoy counters)",
                    "sockets written (kernel, BCC)", "bytes sent (control plane)",
                    "bytes written (kernel, BCC)", "last ACK p50 (ms)", "last ACK max (ms)",
                    "of which: render (ms)", "convert (ms)", "first send -> last ACK (ms)",
                    "NACKs", "control-plane CPU (s)", "proxies' CPU (s, all)", "n"], out)
    lines += ["", "Last ACK: from the change to each proxy's ACK. It includes the harness "
              "rendering every proxy's config in Python (render, the stand-in for istiod's "
              "generation) and the control plane converting it to protobuf (convert); "
              "first send -> last ACK is delivery and Envoy applying it."]
    lines += ["", *disagreements(mesh)]
    return (lines + [SCOPING, PUSH_SCOPE, ""] + bytes_by_type_section(run)
            + decision_section(run) + exposure_section(run, exposure_png))


def bytes_by_type_section(run: Run) -> list[str]:
    """Bytes sent per change, by role and xDS type (median over repetitions); the ztunnel's
    Envoy data path (datapath_*) beside its WDS."""
    rows = run.without_failed(run.rows(SOURCE, "push_bytes_by_type"))
    if rows.empty:
        return []
    df = rows.assign(experiment=run.label("experiment").loc[rows.index],
                     xds_type=run.label("xds_type").loc[rows.index])
    body = []
    for (experiment, mode, role), g in df.groupby(["experiment", "mode", "entity"], sort=False):
        per = g.groupby("xds_type")["value"].median()
        body.append([str(experiment), str(mode), str(role),
                     ", ".join(f"{t} {num(v)}" for t, v in per.items()),
                     str(g["repetition"].nunique())])
    return ["### Bytes per change by role and xDS type", "",
            *table(["change", "mode", "role", "bytes by type (all proxies of the role)", "n"],
                   body),
            "", "datapath_*: the Envoy that carries the ztunnel's traffic in this emulation "
            "(not Istio's); the claims use the ztunnel's WDS bytes.", ""]


def decision_section(run: Run) -> list[str]:
    """The push decision the control plane applied (from the manifest)."""
    rows = (run.manifest.get("istio_fidelity") or {}).get("push_decision") or []
    if not rows:
        return []
    types = ["CDS", "EDS", "LDS", "RDS", "WDS Address", "WDS Authorization"]
    body = [[r["kind"], r["role"], r["who"], *[r.get(t, "-") for t in types], r["source"]]
            for r in rows]
    return ["### Istio's push decision, as applied", "",
            *table(["config kind", "role", "who is pushed", *types, "Istio 1.27 source"], body),
            "", "whole: every resource of the type the proxy holds; incremental: only what "
            "the change altered; skip: nothing. In the ambient modes a change also carries "
            "the addresses it alters (kind Address), which makes a waypoint's CDS, EDS and "
            "LDS whole (xdsgen.go waypointNeedsPush).", ""]


def disagreements(mesh: pd.DataFrame) -> list[str]:
    """Where the three views count different proxies for one change (per repetition)."""
    out = []
    for (experiment, mode, rep), g in mesh.groupby(["experiment", "mode", "repetition"],
                                                   sort=False):
        v = {m: float(x.iloc[0]) for m, x in g.groupby("metric")["value"]}
        cp = v.get("proxies_updated")
        for metric, view in (("proxies_applied", "Envoy counters"),
                             ("kernel_sockets_written", "kernel")):
            if cp is not None and metric in v and v[metric] != cp:
                out.append(f"- {experiment}, {mode}, repetition {rep}: the control plane "
                           f"updated {cp:.0f} proxies, the {view} view counts {v[metric]:.0f}")
        if "kernel_bytes_written" in v and v.get("push_bytes_total", 0) > v["kernel_bytes_written"]:
            out.append(f"- {experiment}, {mode}, repetition {rep}: the kernel saw fewer bytes "
                       f"({v['kernel_bytes_written']:.0f}) than the control plane accounted "
                       f"({v['push_bytes_total']:.0f})")
    if not out:
        return ["The three views agree on every change: proxies updated (control plane) = "
                "proxies that applied it (Envoy counters) = sockets written (kernel, where "
                "measured). Kernel bytes exceed the accounted bytes by gRPC and HTTP/2 framing; "
                "the harness's own control-API calls in the window are subtracted.", ""]
    return ["Where the views disagree:", "", *out, ""]


PUSH_SCOPE = ("A proxy is *updated* when the control plane sent it something; its config "
              "*changed* when what it holds differs afterwards. They differ where Istio's push "
              "decision is wider than the change: an AuthorizationPolicy re-sends the "
              "listeners of every sidecar of its namespace (only the selected workload's "
              "sidecar enforces it) and the waypoint's whole config; a route re-sends every "
              "sidecar's clusters and routes. A ztunnel is pushed on every change but sent "
              "only the WDS resources that changed (nothing for a route).")
EXPOSURE_METRICS = (("services", "services_known", "services_total"),
                    ("workloads", "workloads_known", "workloads_total"),
                    ("policies", "policies_known", "policies_total"))


def exposure_table(run: Run) -> pd.DataFrame:
    """Per (mode, role): proxies, and per proxy (median over proxies and repetitions) the
    share of the mesh's services, workloads and policies its config names, and config bytes.
    Uses the state after the run's changes when measured (it counts their policies)."""
    rows = run.without_failed(run.rows(SOURCE))
    if rows.empty:
        return pd.DataFrame()
    df = run.with_labels(rows, view=None, role="", state="initial")
    df = df[df["view"].isin(["exposure", "exposure-envoy"])]
    if df.empty:
        return pd.DataFrame()
    df = df[df["state"] == ("after_changes" if (df["state"] == "after_changes").any()
                            else "initial")]
    wide = df.pivot_table(index=["mode", "repetition", "role", "entity"], columns="metric",
                          values="value", aggfunc="first").reset_index()
    order = {m: i for i, m in enumerate(run.modes)}
    wide = wide.sort_values(["mode", "role"], key=lambda c: c.map(order).fillna(9)
                            if c.name == "mode" else c)
    out = []
    for (mode, role), g in wide.groupby(["mode", "role"], sort=False):
        row: dict[str, object] = {"mode": mode, "role": role,
                                  "proxies": g.groupby("repetition")["entity"].nunique().median(),
                                  "n": g["repetition"].nunique()}
        for name, known, total in EXPOSURE_METRICS:
            if known in g and total in g:
                row[f"{name}_known"] = g[known].max()  # the most exposed proxy of the role
                row[f"{name}_least"] = g[known].min()
                row[f"{name}_total"] = g[total].median()
        row["config_bytes"] = g["config_bytes"].median() if "config_bytes" in g else float("nan")
        row["config_bytes_all"] = (g.groupby("repetition")["config_bytes"].sum().median()
                                   if "config_bytes" in g else float("nan"))
        row["config_dump_bytes"] = (g["config_dump_bytes"].median()
                                    if "config_dump_bytes" in g else float("nan"))
        row["datapath_bytes"] = (g["datapath_config_bytes"].median()
                                 if "datapath_config_bytes" in g else float("nan"))
        out.append(row)
    return pd.DataFrame(out)


def exposure_section(run: Run, png: str | None = None) -> list[str]:
    t = exposure_table(run)
    if t.empty:
        return []
    lines = ["### Config exposure: what each proxy holds", ""]
    body = []
    for r in t.to_dict("records"):
        def share(name: str, r: dict = r) -> str:
            k, lo, n = r.get(f"{name}_known"), r.get(f"{name}_least"), r.get(f"{name}_total")
            if k is None or n is None or pd.isna(k):
                return "not measured"
            held = num(k) if lo is None or lo == k else f"{num(lo)}–{num(k)}"
            return f"{held} / {num(n)}"
        body.append([str(r["mode"]), str(r["role"]), num(r["proxies"]), share("services"),
                     share("workloads"), share("policies"), num(r["config_bytes"]),
                     num(r["config_bytes_all"]),
                     "not measured" if pd.isna(r["config_dump_bytes"])
                     else num(r["config_dump_bytes"]),
                     "—" if pd.isna(r["datapath_bytes"]) else num(r["datapath_bytes"]),
                     str(r["n"])])
    lines += table(["mode", "role", "proxies", "services named / mesh", "workloads named / mesh",
                    "policies held / mesh", "config bytes per proxy (median)",
                    "config bytes, all proxies of the role",
                    "Envoy's /config_dump per proxy (JSON bytes, median)",
                    "ztunnel's Envoy data path per proxy (bytes, not Istio's)", "n"], body)
    lines += ["", "Named / mesh: the least–most any one proxy of the role names, counted in "
              "the xDS resources it is served (after the run's changes, when the scenario has "
              "experiments); config bytes: median over the role's proxies and repetitions. "
              "A ztunnel's figures are its WDS (Istio's shapes: every workload and service "
              "address, every ambient policy), which the claims use; the Envoy that carries "
              "its traffic in this emulation holds the data-path config in the last column.",
              ""]
    if png:
        lines += [f"![config held per proxy and share of the mesh it names]({png})", ""]
    return lines


def exposure_figure(run: Run, out: Path) -> Path | None:
    """Left: config bytes held by all proxies of each mode, stacked by role. Right: per
    proxy, the share of the mesh's services, workloads and policies its config names."""
    t = exposure_table(run)
    if t.empty:
        return None
    modes = [m for m in run.modes if m in set(t["mode"])]
    colors = {"sidecar": "tab:blue", "ztunnel": "tab:green", "waypoint": "tab:orange"}
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for x, mode in enumerate(modes):
        bottom = 0.0
        for r in t[t["mode"] == mode].to_dict("records"):
            v = float(r["config_bytes_all"]) / 1024
            left.bar(x, v, bottom=bottom, color=colors.get(str(r["role"]), "grey"),
                     edgecolor="white")
            bottom += v
    roles = [r for r in colors if r in set(t["role"])]
    left.legend([Patch(color=colors[r]) for r in roles], roles, fontsize=7)
    left.set_xticks(range(len(modes)), modes)
    left.set_ylabel("KiB of xDS config, all proxies")
    left.set_title("config held by the data plane")
    left.grid(axis="y", alpha=0.3)
    groups = [(m, str(r["role"]), r) for m in modes
              for r in t[t["mode"] == m].to_dict("records")]
    width = 0.25
    for i, (name, _, _) in enumerate(EXPOSURE_METRICS):
        vals = []
        for _, _, r in groups:
            k, n = r.get(f"{name}_known"), r.get(f"{name}_total")
            vals.append(100.0 * k / n if k is not None and n and not pd.isna(k) else 0.0)
        right.bar([j + (i - 1) * width for j in range(len(groups))], vals, width, label=name)
    right.set_xticks(range(len(groups)), [f"{m}\n{r}" for m, r, _ in groups], fontsize=7)
    right.set_ylabel("% of the mesh named by the most exposed proxy")
    right.set_ylim(0, 105)
    right.set_title("exposure per proxy")
    right.legend(fontsize=7)
    right.grid(axis="y", alpha=0.3)
    fig.suptitle("Config exposure (xDS served to each proxy)", fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
