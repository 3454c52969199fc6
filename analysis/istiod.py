"""The real-istiod fan-out sweep's report (bench.istiod.sweep): claims (b) and (c) from
Istio's own control plane, with slopes against pods, and the harness's push table held
against what istiod did.

- per mode and change: proxies pushed and changed, bytes, time to the last response and
  istiod CPU per change at each size; the slope of bytes and of istiod CPU per pod with its
  95 % CI (Student's t, n - 2 degrees of freedom, one point per size) and the log-log
  exponent (1.0 = grows like the mesh);
- the initial connect: what configuring every proxy costs istiod at each size;
- exposure: what each role's proxies hold (all proxies: bytes and resources; a sample per
  role: services, workloads and policies their config names);
- the push table: at the smallest size, per change and role, proxies pushed and xDS types
  as bench/controlplane/pushrules.py predicts them and as istiod did.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from analysis.stats import fit_slope
from bench.changes import EXPOSURE, ISTIOD_CHANGES
from bench.store import load_table

Row = dict[str, Any]
# the initial connect and the changes (bench.istiod.changes.EXPERIMENTS)
CHANGES = ("connect", *ISTIOD_CHANGES)


def table(run_dir: Path) -> pd.DataFrame:
    df = load_table(run_dir)
    df = df[df["source"] == "istiod"].copy()
    if df.empty:
        return df
    labels = df["labels"].map(lambda s: json.loads(s) if isinstance(s, str) else (s or {}))
    extra = pd.DataFrame(list(labels), index=df.index)
    for c in extra.columns:
        df[c] = extra[c]
    df["pods"] = df["pods"].astype(int)
    return df


def _mesh(df: pd.DataFrame, metric: str, experiment: str) -> pd.DataFrame:
    sel = df[(df["metric"] == metric) & (df["experiment"] == experiment)
             & (df["entity"] == "mesh")]
    return sel[["mode", "pods", "value"]]


def _ent(df: pd.DataFrame, metric: str, experiment: str, entity: str) -> pd.DataFrame:
    sel = df[(df["metric"] == metric) & (df["experiment"] == experiment)
             & (df["entity"] == entity)]
    return sel[["mode", "pods", "value"]]


def slope_row(points: pd.DataFrame) -> dict[str, Any]:
    """Slope per pod with its 95 % CI, and the log-log exponent, from one value per size."""
    pts = points.groupby("pods")["value"].median().reset_index()
    out: dict[str, Any] = {"sizes": len(pts)}
    if len(pts) < 3:
        out["why"] = f"needs >= 3 sizes, has {len(pts)}"
        return out
    f = fit_slope(pts["pods"], pts["value"])
    out.update(slope=f.slope, lo=f.lo, hi=f.hi)
    pos = pts[pts["value"] > 0]
    if len(pos) >= 3:
        g = fit_slope(pos["pods"].map(math.log), pos["value"].map(math.log))
        out.update(exponent=g.slope, exp_lo=g.lo, exp_hi=g.hi)
    return out


def _fmt(x: float) -> str:
    if x != x:
        return "n/a"
    a = abs(x)
    if a >= 100:
        return f"{x:,.0f}"
    if a >= 1:
        return f"{x:.2f}"
    return f"{x:.3g}"


def slopes(df: pd.DataFrame) -> list[Row]:
    rows = []
    for exp in sorted(set(df["experiment"].dropna()) & set(CHANGES)):
        for mode in sorted(set(df["mode"])):
            for metric, unit in (("push_bytes_total", "bytes"), ("connect_bytes_total", "bytes"),
                                 ("proxies_pushed", "proxies")):
                pts = _mesh(df, metric, exp)
                pts = pts[pts["mode"] == mode]
                if pts.empty:
                    continue
                rows.append({"experiment": exp, "mode": mode, "figure": metric, "unit": unit,
                             **slope_row(pts)})
            pts = _ent(df, "cpu", exp, "istiod")
            pts = pts[pts["mode"] == mode]
            if not pts.empty:
                rows.append({"experiment": exp, "mode": mode, "figure": "istiod_cpu",
                             "unit": "CPU-s", **slope_row(pts)})
    return rows


def per_size(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (experiment, mode, pods): the figures of a change."""
    out = []
    for (exp, mode, pods), g in df.groupby(["experiment", "mode", "pods"]):
        if exp not in CHANGES:
            continue
        mesh = g[g["entity"] == "mesh"]

        def m(name: str, frame: pd.DataFrame = mesh) -> float:  # noqa: B023 (used at once)
            v = frame[frame["metric"] == name]["value"]
            return float(v.iloc[0]) if len(v) else math.nan
        ist = g[g["entity"] == "istiod"]
        out.append({"experiment": exp, "mode": mode, "pods": int(pods),
                    "proxies": m("proxies_total"),
                    "pushed": m("proxies_pushed") if exp != "connect" else m("proxies_total"),
                    "changed": m("proxies_changed"), "predicted": m("proxies_predicted"),
                    "bytes": m("push_bytes_total") if exp != "connect" else m(
                        "connect_bytes_total"),
                    "last_ms": m("time_to_last_response") if exp != "connect" or not math.isnan(
                        m("time_to_last_response")) else 1000 * m("connect_wall"),
                    "istiod_cpu_s": m("cpu", ist),
                    "istiod_rss_mib": m("rss_peak", ist) / 2**20,
                    "client_cpu_s": m("cpu", g[g["entity"] == "mb-xdsload"])})
    return pd.DataFrame(out)


def exposure(df: pd.DataFrame) -> pd.DataFrame:
    """Per mode, size and role: config held at the start; services and workloads named by
    the sample's config; policies named after the changes (when they were read)."""
    ex = df[(df["experiment"] == EXPOSURE) & (df.get("state") == "initial")]
    after = df[(df["experiment"] == EXPOSURE) & (df.get("state") == "after_changes")]
    if ex.empty:
        return pd.DataFrame()
    rows = []
    for (mode, pods, role), g in ex.groupby(["mode", "pods", "role"]):
        def med(name: str, g: pd.DataFrame = g) -> float:
            v = g[g["metric"] == name]["value"]
            return float(v.median()) if len(v) else math.nan

        def mx(name: str, g: pd.DataFrame = g) -> float:
            v = g[g["metric"] == name]["value"]
            return float(v.max()) if len(v) else math.nan
        rows.append({"mode": mode, "pods": int(pods), "role": role,
                     "proxies": int((g["metric"] == "config_bytes").sum()),
                     "config_kib_median": med("config_bytes") / 1024,
                     "resources_median": med("resources"),
                     "services": f"{mx('services_known'):.0f}/{mx('services_total'):.0f}",
                     "workloads": f"{mx('workloads_known'):.0f}/{mx('workloads_total'):.0f}",
                     "policies": _policies(after, mode, pods, role)})
    return pd.DataFrame(rows)


def _policies(after: pd.DataFrame, mode: str, pods: int, role: str) -> str:
    """Fewest and most of the mesh's policies a sampled proxy of the role names."""
    g = after[(after["mode"] == mode) & (after["pods"] == pods) & (after["role"] == role)]
    known = g[g["metric"] == "policies_known"]["value"]
    total = g[g["metric"] == "policies_total"]["value"]
    if known.empty:
        return "not read"
    lo, hi = known.min(), known.max()
    return f"{lo:.0f}/{total.max():.0f}" if lo == hi else f"{lo:.0f}-{hi:.0f}/{total.max():.0f}"


def push_table(df: pd.DataFrame, pods: int | None = None) -> pd.DataFrame:
    """At one size (default: the smallest): per change and role, pushed (istiod) vs
    predicted (ours)."""
    if df.empty:
        return pd.DataFrame()
    size = int(df["pods"].min()) if pods is None else pods
    small = df[(df["pods"] == size) & (df["experiment"] != "connect")]
    rows = []
    for (exp, mode, role), g in small[small["entity"].isin(["sidecar", "ztunnel", "waypoint"])
                                      ].groupby(["experiment", "mode", "entity"]):
        def m(name: str, g: pd.DataFrame = g) -> float:
            v = g[g["metric"] == name]["value"]
            return float(v.iloc[0]) if len(v) else math.nan
        types = g[g["metric"] == "types_pushed"]

        def col(name: str, types: pd.DataFrame = types) -> str:
            if not len(types) or name not in types:
                return ""
            v = types[name].iloc[0]
            return "" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)
        obs, pred, pred_main = col("observed"), col("predicted"), col("predicted_main")
        pushed, predicted = m("proxies_pushed"), m("proxies_predicted")
        predicted_main = m("proxies_predicted_main")
        rows.append({"experiment": exp, "mode": mode, "role": role, "proxies": m("proxies"),
                     "istiod pushed": pushed, "istiod changed": m("proxies_changed"),
                     "istiod types": obs or "-",
                     "main table": f"{predicted_main:.0f}: {pred_main or '-'}",
                     "agrees (main)": _agree(pushed, obs, predicted_main, pred_main),
                     "1.27.3 table": f"{predicted:.0f}: {pred or '-'}",
                     "agrees (1.27.3)": _agree(pushed, obs, predicted, pred),
                     "why 1.27.3 differs": _why(str(role), pred_main, pred)})
    return pd.DataFrame(rows)


# Each type where the 1.27.3 table differs from main's, and why (bench/controlplane/
# pushrules.py MAIN_* and plan_main cite the files)
WHY = {
    ("waypoint", "rds"): "waypoints carry their routes inline and subscribe no RDS "
                         "(pilot/pkg/networking/core/waypoint.go); our local waypoint uses RDS",
    ("waypoint", "cds"): "AMBIENT_SCOPED_ADDRESS_PUSHES (main): an address change reaches only "
                         "the waypoints it names (pilot/pkg/xds/xdsgen.go waypointNeedsPush)",
    ("waypoint", "eds"): "AMBIENT_SCOPED_ADDRESS_PUSHES (main): as CDS",
    ("sidecar", "cds"): "main's delta CDS covers VirtualService, PeerAuthentication and "
                        "Sidecar (pilot/pkg/networking/core/cluster.go deltaConfigTypes)",
}


def _why(role: str, main: str, old: str) -> str:
    """Which documented version difference explains each type the two tables differ on."""
    a = dict(x.split(":") for x in main.split(",") if ":" in x)
    b = dict(x.split(":") for x in old.split(",") if ":" in x)
    out = []
    for t in sorted(set(a) | set(b)):
        if a.get(t) != b.get(t):
            out.append(f"{t}: {WHY.get((role, t), 'not explained')}")
    return "; ".join(out) or "-"


def _agree(pushed: float, observed: str, predicted: float, types: str) -> str:
    """"yes" when the table names the same proxies count and the same type:how set."""
    if pushed != predicted:
        return f"NO: {pushed:.0f} vs {predicted:.0f} proxies"
    if set(filter(None, observed.split(","))) != set(filter(None, types.split(","))):
        return "NO: types"
    return "yes"


def _md(frame: pd.DataFrame) -> list[str]:
    if frame.empty:
        return ["(none)"]
    cols = list(frame.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, r in frame.iterrows():
        lines.append("| " + " | ".join(_fmt(v) if isinstance(v, float) else str(v)
                                       for v in r.values) + " |")
    return lines


def figure(sizes: pd.DataFrame, out: Path) -> Path | None:
    if sizes.empty:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    exps = [e for e in sorted(set(sizes["experiment"])) if e != "connect"]
    fig, axes = plt.subplots(2, max(1, len(exps)) + 1, figsize=(4 * (len(exps) + 1), 7),
                             squeeze=False)
    for col, exp in enumerate(["connect", *exps]):
        sub = sizes[sizes["experiment"] == exp]
        for row, (y, label) in enumerate((("bytes", "bytes pushed"),
                                          ("istiod_cpu_s", "istiod CPU-s"))):
            ax = axes[row][col]
            positive = False
            for mode, g in sub.groupby("mode"):
                g = g[g[y] > 0].sort_values("pods")  # a zero (nothing pushed) has no log
                positive = positive or not g.empty
                ax.plot(g["pods"], g[y], marker="o", label=mode)
            ax.set_xscale("log")
            if positive:
                ax.set_yscale("log")
            ax.set_xlabel("pods")
            ax.set_ylabel(label)
            ax.set_title(exp if row == 0 else "")
            ax.grid(alpha=0.3)
    axes[0][0].legend()
    fig.suptitle("real istiod: cost of one change vs pods (one point per size)")
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out


def claim_lines(sizes: pd.DataFrame, expo: pd.DataFrame, commit: str,
                slope_rows: list[Row] | None = None) -> list[str]:
    """(b) and (c) from real istiod: per change, at the largest size both sides reached,
    and the slope of bytes per pod where 3 sizes or more were measured. An L7 change is
    held against the waypoint mode: ambient without a waypoint has no L7 config."""
    lines = [f"Labelled **real istiod, {commit}**: measured from Istio's own control plane."]
    slope = {(r["experiment"], r["mode"]): r for r in slope_rows or []
             if r["figure"] == "push_bytes_total"}

    def per_pod(exp: str, mode: str) -> str:
        r = slope.get((exp, mode))
        if not r or "slope" not in r:
            return ""
        exp_ = (f", log-log exponent {_fmt(r['exponent'])} [{_fmt(r['exp_lo'])}, "
                f"{_fmt(r['exp_hi'])}]" if "exponent" in r else "")
        return (f" {_fmt(r['slope'])} B per pod [95 % CI {_fmt(r['lo'])}, {_fmt(r['hi'])}]"
                f"{exp_}, {r['sizes']} sizes")
    done = sizes[sizes["experiment"] != "connect"]
    for exp, g in done.groupby("experiment"):
        change = ISTIOD_CHANGES.get(str(exp))
        other = "waypoint" if change is not None and change.l7 else "ambient"
        both = set(g[g["mode"] == "sidecar"]["pods"]) & set(g[g["mode"] == other]["pods"])
        if not both:
            continue
        n = max(both)
        s = g[(g["mode"] == "sidecar") & (g["pods"] == n)].iloc[0]
        a = g[(g["mode"] == other) & (g["pods"] == n)].iloc[0]
        ratio = a["bytes"] / s["bytes"] if s["bytes"] > 0 else math.nan
        lines.append(f"- (b) {exp} at {n} pods: sidecar pushed {s['pushed']:.0f}/"
                     f"{s['proxies']:.0f} proxies, {s['bytes'] / 1024:,.1f} KiB; {other} "
                     f"{a['pushed']:.0f}/{a['proxies']:.0f}, {a['bytes'] / 1024:,.1f} KiB "
                     f"({other}/sidecar bytes {_fmt(ratio)}x); istiod CPU "
                     f"{_fmt(s['istiod_cpu_s'])} vs {_fmt(a['istiod_cpu_s'])} s. Growth: "
                     f"sidecar{per_pod(str(exp), 'sidecar') or ' n/a'}; "
                     f"{other}{per_pod(str(exp), other) or ' n/a'}.")
    if not expo.empty:
        for mode, g in expo.groupby("mode"):
            big = g[g["pods"] == g["pods"].max()]
            for _, r in big.iterrows():
                lines.append(f"- (c) {mode} at {r['pods']} pods, a {r['role']} holds "
                             f"{r['config_kib_median']:,.0f} KiB (median of "
                             f"{r['proxies']}); of the sampled proxies, the most exposed "
                             f"names services {r['services']}, workloads {r['workloads']}, "
                             f"policies {r['policies']}.")
    return lines


def write_report(run_dir: Path | str) -> list[Path]:
    run_dir = Path(run_dir)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    df = table(run_dir)
    ist = manifest.get("istiod") or {}
    commit = ist.get("commit", "?")
    lines = [f"# Real istiod fan-out sweep: {manifest.get('scenario', '')}", "",
             f"istiod: istio.io/istio@{ist.get('version', '?')} (commit {commit}, "
             f"{ist.get('date', '?')}), compatibility profile {ist.get('compat', 'none')}; "
             f"kube-apiserver {ist.get('kubernetes', '?')}, kine {ist.get('kine', '?')}. "
             "Pods, nodes and proxies are simulated (the harness writes the pods into the API "
             "server; mb-xdsload plays every proxy's xDS client, ACKing every response).", ""]
    failed = [p for p in manifest.get("points", []) if p.get("status") != "ok"]
    points = manifest.get("points", [])
    lines += ["## Sizes", "", "| mode | pods | proxies | status | wall s | reason |",
              "|---|---|---|---|---|---|"]
    for p in points:
        lines.append(f"| {p['mode']} | {p['pods']} | {p.get('proxies', 0)} | {p['status']} | "
                     f"{p.get('timings', {}).get('total_s', '')} | {p.get('reason', '')} |")
    if failed:
        lines += ["", f"**{len(failed)} size(s) failed**; the largest size each mode reached "
                  "is the last `ok` row of that mode."]
    out: list[Path] = []
    if df.empty:
        lines += ["", "No rows were measured."]
    else:
        sizes = per_size(df)
        expo = exposure(df)
        lines += ["", "## Claims (b) and (c) from real istiod", ""]
        lines += claim_lines(sizes, expo, commit, slopes(df))
        lines += ["", "## One change, per size (`last_ms`: API write to the last response; "
                  "each is ACKed at once)", ""]
        lines += _md(sizes.sort_values(["experiment", "mode", "pods"]))
        sl = pd.DataFrame(slopes(df))
        lines += ["", "## Slopes against pods (95 % CI, one point per size; exponent from "
                  "log-log: 1 = grows like the mesh)", ""]
        lines += _md(sl) if not sl.empty else ["(no slope)"]
        lines += ["", "## Exposure: what each role's proxies hold", ""]
        lines += _md(expo)
        pt = push_table(df)
        lines += ["", "## Our push table held against istiod (smallest size)", "",
                  "`istiod pushed`: proxies that received any response from the real istiod "
                  f"({commit}); `istiod types`: each xDS type it sent, `whole` when a "
                  "proxy's responses carried every resource it then held of that type, "
                  "`incr` when fewer. `main table`: bench/controlplane/pushrules.py "
                  "`plan_main`, our reading of the same commit; `1.27.3 table`: `plan`, the "
                  "local backend's (Istio 1.27.3). A 1.27.3 row that differs where the main "
                  "row agrees is a version difference, each listed with its source in "
                  "pushrules.py (MAIN_*).", ""]
        lines += _md(pt)
        lines += ["", "At every size (rows of change x mode x role that agree on proxies "
                  "pushed and on every type's whole/incremental):", ""]
        for size in sorted(set(df["pods"])):
            t = push_table(df, int(size))
            if t.empty:
                continue
            main_ok = int((t["agrees (main)"] == "yes").sum())
            old_ok = int((t["agrees (1.27.3)"] == "yes").sum())
            lines.append(f"- {size} pods: main table {main_ok}/{len(t)}, 1.27.3 table "
                         f"{old_ok}/{len(t)}")
        lines += ["", "## Two counts of the responses (ours vs istiod's)", ""]
        lines += response_check(df)
        sync = df[df["experiment"] == "syncz"]
        if not sync.empty:
            lines += ["", "## istiod's own view (/debug/syncz, read with bench/backends/kube/"
                      "push.py)", ""]
            for (mode, pods), g in sync.groupby(["mode", "pods"]):
                listed = g[g["metric"] == "syncz_proxies"]["value"].iloc[0]
                acked = g[g["metric"] == "syncz_acked"]["value"].iloc[0]
                lines.append(f"- {mode}, {pods} pods: {listed:.0f} of our proxies listed, "
                             f"{acked:.0f} ACKed everything istiod last sent them")
        fig = figure(sizes, run_dir / "istiod.png")
        if fig:
            lines += ["", f"![cost vs pods]({fig.name})"]
            out.append(fig)
    report = run_dir / "report.md"
    report.write_text("\n".join(lines) + "\n")
    out.append(report)
    return out


def response_check(df: pd.DataFrame) -> list[str]:
    """Responses our simulated proxies received per change and xDS type, against istiod's
    own count of the responses it sent (pilot_xds_pushes deltas): a check independent of
    the client's accounting."""
    ours = df[df["metric"] == "responses_received"]
    theirs = df[df["metric"] == "istiod_responses_sent"]
    if ours.empty:
        return ["Not recorded in this sweep (older than the check)."]
    keys = ["mode", "pods", "experiment", "xds_type"]
    m = ours.merge(theirs, on=keys, suffixes=("_ours", "_istiod"))
    m = m[(m["value_ours"] > 0) | (m["value_istiod"] > 0)]
    same = m[m["value_ours"] == m["value_istiod"]]
    lines = [f"{len(same)} of {len(m)} (mode, size, change, type) counts agree exactly "
             f"({int(m['value_ours'].sum())} responses received, "
             f"{int(m['value_istiod'].sum())} sent by istiod's count)."]
    for _, r in m[m["value_ours"] != m["value_istiod"]].head(10).iterrows():
        lines.append(f"- differs: {r['mode']} {r['pods']} pods {r['experiment']} "
                     f"{r['xds_type']}: ours {r['value_ours']:.0f}, istiod "
                     f"{r['value_istiod']:.0f}")
    return lines


def newest_sweep(root: Path) -> Path | None:
    """The newest finished real-istiod sweep under `root` (a results directory)."""
    found = []
    for m in root.glob("*/manifest.json"):
        try:
            doc = json.loads(m.read_text())
        except (OSError, ValueError):
            continue
        if doc.get("kind") == "istiod-sweep" and doc.get("finalized"):
            found.append((m.stat().st_mtime, m.parent))
    return max(found)[1] if found else None


def report_lines(root: Path) -> list[str]:
    """Claims (b) and (c) from the newest real-istiod sweep beside a run, for its report."""
    sweep = newest_sweep(root)
    if sweep is None:
        return []
    df = table(sweep)
    if df.empty:
        return []
    commit = (json.loads((sweep / "manifest.json").read_text()).get("istiod") or {}).get(
        "commit", "?")
    return (["### (b) and (c) from real istiod", "",
             f"From the sweep {sweep.name} (its report: {sweep / 'report.md'}):"]
            + claim_lines(per_size(df), exposure(df), commit, slopes(df)) + [""])
