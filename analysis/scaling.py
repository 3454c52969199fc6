"""The resource claim across pod counts: fit data-plane cost = a + b x pods per mode.

A sweep directory (written by `meshbench sweep`) holds one run per size plus sweep.json.
Each run measured every mode at that size with modes interleaved; the fit uses every
repetition of every size as one point, so its confidence interval reflects run-to-run
spread as well as the fit. Sizes are separate runs made one after the other in the same
sweep: say so next to the figures.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from scipy import stats  # noqa: E402

from analysis.fmt import table  # noqa: E402
from analysis.rundata import load_run  # noqa: E402

PROXY_MODES = ("sidecar", "ambient", "waypoint")
METRICS = (("cpu_cores", "cores"), ("pss_mib", "MiB"), ("rss_mib", "MiB"))
PUSH_METRICS = (("proxies_updated", "count"), ("push_bytes_total", "bytes"),
                ("convergence_max", "ms"), ("kernel_sockets_written", "count"),
                ("kernel_bytes_written", "bytes"), ("proxies_applied", "count"))
PROXY_ROLES = ("sidecar", "ztunnel", "waypoint")


@dataclass(frozen=True)
class Fit:
    mode: str
    phase: str
    metric: str
    unit: str
    slope: float
    slope_lo: float
    slope_hi: float
    intercept: float
    r2: float
    n: int
    sizes: int


def points(sweep_dir: Path) -> pd.DataFrame:
    """One row per (size, mode, phase, repetition, metric): the data-plane total, with
    pods = application pods in the mesh (server pods + the client pod)."""
    record = json.loads((sweep_dir / "sweep.json").read_text())
    frames = []
    cols = ["pods", "services", "mode", "phase", "level", "repetition", "metric", "unit", "value"]
    for entry in record["runs"]:
        run = load_run(sweep_dir / entry["dir"])
        topo = run.scenario.get("topology", {})
        services = int(entry.get("services", topo.get("services", 1)))
        pods = services * int(entry["pods_per_service"]) + 1
        res = run.resources
        dp = res[(res["entity"] == "dataplane") & res["metric"].isin([m for m, _ in METRICS])]
        if dp.empty:
            continue
        frames.append(dp.assign(pods=pods, services=services)[cols])
        # one proxy's memory, per role: the role's total over its number of processes
        role_rows = res[res["entity"].isin([f"role:{r}" for r in PROXY_ROLES])
                        & (res["metric"] == "pss_mib") & (res["phase"] == "idle")]
        if not role_rows.empty:
            n = run.labels.loc[role_rows.index].map(lambda d: float(d.get("entities") or 0))
            per = role_rows.assign(value=role_rows["value"] / n.where(n > 0),
                                   metric=role_rows["entity"].str.replace(
                                       "role:", "pss_mib_per_", regex=False))
            frames.append(per.dropna(subset=["value"]).assign(pods=pods, services=services)[cols])
        push = run.without_failed(run.rows("xds"))
        push = push[(push["entity"] == "mesh")
                    & push["metric"].isin([m for m, _ in PUSH_METRICS])]
        if not push.empty:
            exp = run.label("experiment").loc[push.index]
            # the "phase" of a push point is its experiment, so each change gets its own fit
            frames.append(push.assign(pods=pods, services=services,
                                      phase=exp.map(lambda e: f"push:{e}"))[cols])
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def fit(df: pd.DataFrame) -> list[Fit]:
    """OLS per (mode, phase, metric) with a t-based 95 % CI of the slope; needs >= 3 points
    over >= 2 sizes."""
    fits = []
    for (mode, phase, metric), g in df.groupby(["mode", "phase", "metric"], sort=False):
        if len(g) < 3 or g["pods"].nunique() < 2:
            continue
        r = stats.linregress(g["pods"].astype(float), g["value"].astype(float))
        t = stats.t.ppf(0.975, len(g) - 2)
        half = t * r.stderr if math.isfinite(r.stderr) else math.nan
        fits.append(Fit(mode, phase, metric, str(g["unit"].iloc[0]), r.slope, r.slope - half,
                        r.slope + half, r.intercept, r.rvalue ** 2, len(g), g["pods"].nunique()))
    return fits


def _fmt(x: float) -> str:
    return "n/a" if not math.isfinite(x) else (f"{x:.4f}" if abs(x) < 1 else f"{x:.2f}")


def render(sweep_dir: Path, df: pd.DataFrame, fits: list[Fit], figure: str | None,
           fanout: str | None = None) -> str:
    record = json.loads((sweep_dir / "sweep.json").read_text())
    sizes = ", ".join(f"{p['services']}x{p['pods_per_service']}" for p in record["points"]) \
        if "points" in record else ", ".join(map(str, record["sizes"]))
    lines = [f"# meshbench scaling sweep: {sweep_dir.name}", "",
             f"- Scenario: {record['scenario']} (hash `{record['scenario_hash']}`); sizes "
             f"({'services x pods per service' if 'points' in record else 'pods per service'})"
             f": {sizes}",
             "- Each size is its own run, made one after the other in this sweep; modes are "
             "interleaved inside each. Points are data-plane totals (sum over the mode's "
             "proxies) per repetition; pods = application pods (servers + the client).",
             "- Local backend: Envoy in network namespaces; the ztunnel role is an Envoy, not "
             "the Rust ztunnel, so its own per-node cost differs from Istio's.", ""]
    failed = [r for r in record["runs"] if r["exit"] != 0]
    if failed:
        lines += [f"- Runs with failed cells: {', '.join(r['dir'] for r in failed)}", ""]
    timed = [r for r in record["runs"] if "wall_s" in r]
    if timed:
        lines += ["## Runs", ""]
        lines += table(["run", "server pods", "wall time (s)", "host memory used, peak (GiB)",
                        "exit"],
                       [[r["dir"], str(r.get("services", 1) * r["pods_per_service"]),
                         f"{r['wall_s']:.0f}", f"{r['host_mem_used_peak_gib']:.2f}",
                         str(r["exit"])] for r in timed])
        lines += [""]
    for sk in record.get("skipped", []):
        lines += [f"- Not run: {sk['services']} services x {sk['pods_per_service']} pods: "
                  f"{sk['reason']} (this machine's limit)"]
    if record.get("skipped"):
        lines += [""]
    if not fits:
        return "\n".join(lines + ["No fit: fewer than 3 points over 2 sizes per mode.", ""])
    res_fits = [f for f in fits if not f.phase.startswith("push:")]
    rows = [[f.mode, f.phase, f"{f.metric} ({f.unit})", _fmt(f.slope),
             f"[{_fmt(f.slope_lo)}, {_fmt(f.slope_hi)}]", _fmt(f.intercept), f"{f.r2:.3f}",
             f"{f.n} ({f.sizes} sizes)"]
            for f in sorted(res_fits, key=lambda f: (f.metric, f.phase, PROXY_MODES.index(f.mode)
                                                     if f.mode in PROXY_MODES else 9))]
    lines += ["## Fitted cost = a + b x pods", ""]
    lines += table(["mode", "phase", "metric", "b per pod", "b 95 % CI", "a", "r²", "n points"],
                   rows)
    lines += ["", "The claim holds where sidecar's slope is about one proxy's cost per pod and "
              "ambient's CI includes or sits near zero. pss_mib_per_<role> is one proxy of "
              "that role (the role's total over its processes)."]
    if figure:
        lines += ["", f"![data-plane cost vs pods]({figure})"]
    lines += push_lines(df, fits, fanout)
    return "\n".join(lines) + "\n"


def push_lines(df: pd.DataFrame, fits: list[Fit], fanout: str | None) -> list[str]:
    """Per change and mode: proxies updated at each size, the per-pod slopes of bytes and of
    the time to the last ACK, and whether the three views counted the same proxies."""
    push = df[df["phase"].str.startswith("push:")] if not df.empty else df
    if push.empty:
        return []
    by = {(f.mode, f.phase, f.metric): f for f in fits}

    def slope(mode: str, phase: str, metric: str) -> str:
        f = by.get((mode, phase, metric))
        if f is None:
            return "not fitted"
        return f"{_fmt(f.slope)} [{_fmt(f.slope_lo)}, {_fmt(f.slope_hi)}]"

    rows = []
    for phase in sorted(push["phase"].unique()):
        for mode in PROXY_MODES:
            g = push[(push["phase"] == phase) & (push["mode"] == mode)]
            if g.empty:
                continue
            med = g.groupby(["metric", "pods"])["value"].median()
            updated = med.get("proxies_updated")
            if updated is None:
                continue
            counts = ", ".join(f"{v:.0f}" for v in updated.to_numpy())
            agree = []
            for metric, view in (("proxies_applied", "Envoy"), ("kernel_sockets_written",
                                                                 "kernel")):
                other = med.get(metric)
                if other is None:
                    agree.append(f"{view}: not measured")
                elif other.reindex(updated.index).equals(updated):
                    agree.append(f"{view}: same")
                else:
                    agree.append(f"{view}: {', '.join(f'{v:.0f}' for v in other.to_numpy())}")
            rows.append([phase.removeprefix("push:"), mode, counts,
                         slope(mode, phase, "push_bytes_total"),
                         slope(mode, phase, "convergence_max"), "; ".join(agree)])
    sizes = ", ".join(str(p) for p in sorted(push["pods"].unique()))
    lines = ["", "## Config push vs mesh size", "",
             f"Application pods at each size: {sizes}.", ""]
    lines += table(["change", "mode", "proxies updated at each size (control plane)",
                    "bytes sent per pod, b [95 % CI]", "change -> last ACK, ms per pod",
                    "other views of the proxies updated"], rows)
    lines += ["", "Fan-out counts follow this harness's implementation of Istio's scoping and "
              "push decision; bytes and times are measured from real Envoys. The time to the "
              "last ACK includes the harness rendering configs in Python (see each run's "
              "report for render, convert and delivery times). The local control plane "
              "serves State of the World: every update re-sends a proxy's whole listener "
              "or cluster set, so bytes per update grow with what the proxy holds (the "
              "Envoy ztunnel holds one listener per endpoint); Istio sends ztunnel delta "
              "updates of single workload and authorization resources, so real ambient "
              "bytes per change are smaller than here."]
    if fanout:
        lines += ["", f"![config push vs mesh size]({fanout})"]
    return lines


def figure(df: pd.DataFrame, fits: list[Fit], out: Path) -> Path | None:
    panels = [("idle", "pss_mib", "PSS, idle (MiB)"), ("load", "cpu_cores", "cores under load")]
    if not df[df["metric"].str.startswith("pss_mib_per_")].empty:
        panels.append(("idle", "pss_mib_per_proxy", "PSS of one proxy, idle (MiB)"))
    panels = [p for p in panels if not df[(df["phase"] == p[0]) & (df["metric"] == p[1])].empty]
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.2), squeeze=False)
    for ax, (phase, metric, title) in zip(axes[0], panels):
        for mode in PROXY_MODES:
            if metric == "pss_mib_per_proxy":  # one line per (mode, role) present
                for role in PROXY_ROLES:
                    g = df[(df["mode"] == mode) & (df["phase"] == phase)
                           & (df["metric"] == f"pss_mib_per_{role}")]
                    if not g.empty:
                        g = g.groupby("pods")["value"].median()
                        ax.plot(g.index, g.values, marker="o", markersize=3,
                                label=f"{mode}: {role}")
                continue
            g = df[(df["mode"] == mode) & (df["phase"] == phase) & (df["metric"] == metric)]
            if g.empty:
                continue
            dots = ax.scatter(g["pods"], g["value"], s=14, label=mode)
            f = next((f for f in fits if (f.mode, f.phase, f.metric) == (mode, phase, metric)),
                     None)
            if f is not None:
                xs = sorted(g["pods"].unique())
                ax.plot(xs, [f.intercept + f.slope * x for x in xs], color=dots.get_facecolor()[0],
                        linewidth=1)
        ax.set_xlabel("application pods")
        ax.set_ylabel(title)
        ax.set_title(f"data plane: {title}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def fanout_figure(df: pd.DataFrame, out: Path) -> Path | None:
    """One row per change: proxies updated (kernel sockets as crosses), bytes sent, last ACK,
    each against application pods, one line per mode (median over repetitions)."""
    push = df[df["phase"].str.startswith("push:")]
    if push.empty:
        return None
    changes = sorted(push["phase"].unique())
    cols = [("proxies_updated", "proxies updated"), ("push_bytes_total", "KiB sent"),
            ("convergence_max", "change -> last ACK (ms)")]
    fig, axes = plt.subplots(len(changes), 3, figsize=(14, 3.4 * len(changes)), squeeze=False)
    for r, change in enumerate(changes):
        for c, (metric, label) in enumerate(cols):
            ax = axes[r][c]
            for mode in PROXY_MODES:
                g = push[(push["phase"] == change) & (push["mode"] == mode)
                         & (push["metric"] == metric)]
                if g.empty:
                    continue
                med = g.groupby("pods")["value"].median()
                scale = 1 / 1024 if metric == "push_bytes_total" else 1.0
                line, = ax.plot(med.index, med.values * scale, marker="o", markersize=3,
                                label=mode)
                if metric == "proxies_updated":
                    k = push[(push["phase"] == change) & (push["mode"] == mode)
                             & (push["metric"] == "kernel_sockets_written")]
                    if not k.empty:
                        km = k.groupby("pods")["value"].median()
                        ax.scatter(km.index, km.values, marker="x", s=30,
                                   color=line.get_color())
            ax.set_title(f"{change.removeprefix('push:')}: {label}", fontsize=9)
            ax.set_xlabel("application pods")
            ax.grid(alpha=0.3)
            if r == 0 and c == 0:
                ax.legend(fontsize=7)
    fig.suptitle("One config change vs mesh size (lines: control plane; x: kernel, BCC)",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def write_scaling(sweep_dir: Path | str) -> list[Path]:
    """Write scaling.md and scaling.png into the sweep directory; return the paths."""
    sweep_dir = Path(sweep_dir)
    df = points(sweep_dir)
    fits = fit(df) if not df.empty else []
    png = figure(df, fits, sweep_dir / "scaling.png") if not df.empty else None
    fan = fanout_figure(df, sweep_dir / "fanout.png") if not df.empty else None
    md = sweep_dir / "scaling.md"
    md.write_text(render(sweep_dir, df, fits, png.name if png else None,
                         fan.name if fan else None))
    if not df.empty:
        df.to_csv(sweep_dir / "scaling_points.csv", index=False)
    return [p for p in (png, fan, md) if p]
