"""Report sections on client-side latency: table, overhead vs baseline, mode ratios, CV.

Each function takes a `Run` and returns Markdown lines; a section whose data are
missing says so instead of disappearing.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from analysis.claimtests import two_sided
from analysis.fmt import NOT_MEASURED, num, pct, spread, table
from analysis.rundata import LATENCY_SOURCES, Run
from analysis.stats import (
    BASELINE,
    CV_WARN,
    MIN_EFFECT,
    cell_values,
    overhead_vs_baseline,
    summarize,
)

PERCENTILES = (("latency_p50", "p50"), ("latency_p90", "p90"), ("latency_p99", "p99"),
               ("latency_p999", "p99.9"))
OVERHEAD_METRICS = (("latency_p50", "p50"), ("latency_p99", "p99"))
RATIO_PAIRS = (("sidecar", "baseline"), ("ambient", "baseline"), ("waypoint", "baseline"),
               ("ambient", "sidecar"), ("waypoint", "sidecar"))


def by_cell(summary: pd.DataFrame) -> dict[tuple[str, int], dict[str, Any]]:
    """A summary frame keyed by (mode, level)."""
    return {(r["mode"], int(r["level"])): r for r in summary.to_dict("records")}


def _spread_n(row: dict[str, Any] | None, n: int) -> str:
    """"median [min–max]", with "(n=k)" when fewer values than the row's n."""
    if row is None:
        return NOT_MEASURED
    text = spread(row["median"], row["min"], row["max"])
    return text if int(row["n"]) == n else f"{text} (n={int(row['n'])})"


def cells_measured(run: Run) -> dict[tuple[str, int], int]:
    """Repetitions with any client row, per (mode, level)."""
    counts = run.client.groupby(["mode", "level"])["repetition"].nunique()
    return {(str(m), int(lv)): int(n) for (m, lv), n in counts.items()}


def _sum_of(run: Run, metric: str) -> dict[tuple[str, int], tuple[float, int]]:
    values = cell_values(run.client, metric)
    g = values.groupby(["mode", "level"])["value"].agg(["sum", "count"])
    return {(str(m), int(lv)): (float(r["sum"]), int(r["count"])) for (m, lv), r in g.iterrows()}


def latency_section(run: Run, figure: str | None = None) -> list[str]:
    """Per mode and level: percentiles as median [min–max] across repetitions, n,
    achieved rps, errors (sum) and saturated cells; then `figure` (an image file name)."""
    lines = ["## Latency", ""]
    if run.client.empty:
        return lines + ["No load-generator rows in this run: latency was not measured.", ""]
    summaries = {m: by_cell(summarize(run.latency, m)) for m, _ in PERCENTILES}
    rps = by_cell(summarize(run.client, "achieved_rps"))
    errors, saturated = _sum_of(run, "errors"), _sum_of(run, "saturated")
    n_cells = cells_measured(run)
    rows = []
    for mode in run.modes:
        for level in run.levels:
            key = (mode, level)
            n = n_cells.get(key, 0)
            err, err_n = errors.get(key, (0.0, 0))
            sat, sat_n = saturated.get(key, (0.0, 0))
            rows.append([
                mode, str(level),
                *(_spread_n(summaries[m].get(key), n) for m, _ in PERCENTILES),
                str(n), _spread_n(rps.get(key), n),
                num(err) + ("" if err_n == n else f" (n={err_n})") if err_n else NOT_MEASURED,
                f"{int(sat)}/{sat_n}" if sat_n else NOT_MEASURED,
            ])
    headers = ["mode", "target (rps)", *(f"{label} (µs)" for _, label in PERCENTILES),
               "n", "achieved (rps)", "errors (sum)", "saturated (cells)"]
    lines += table(headers, rows)
    source = run.latency_source()
    lines += ["", ("Values: median [min–max] across n repetitions; each repetition's value is "
              "that cell's percentile from its merged HDR histogram (µs). Latency source: "
              f"\"{source}\" ({LATENCY_SOURCES.get(source, source)})."), ""]
    if any(s for s, _ in saturated.values()):
        lines += [("Saturated cells (achieved < 95 % of target, or the load generator above "
                  "80 % CPU) describe the load generator's limits as much as the mesh."), ""]
    return lines + ([f"![latency by percentile]({figure})", ""] if figure else [])


def overhead_section(run: Run) -> list[str]:
    """Paired overhead (same level, same repetition) of each mode over baseline."""
    lines = ["## Overhead vs baseline", ""]
    overheads = {m: by_cell(overhead_vs_baseline(run.latency, m)) for m, _ in OVERHEAD_METRICS}
    if not any(overheads.values()):
        return lines + [("Not computed: this run has no baseline cell paired with another "
                        "mode at the same level and repetition."), ""]
    rows = []
    for mode in run.modes:
        if mode == BASELINE:
            continue
        for level in run.levels:
            cells = [overheads[m].get((mode, level)) for m, _ in OVERHEAD_METRICS]
            n = max((int(c["n"]) for c in cells if c is not None), default=0)
            row = [mode, str(level), str(n)]
            for c in cells:
                if c is None:
                    row += [NOT_MEASURED, NOT_MEASURED]
                    continue
                tag = "" if int(c["n"]) == n else f" (n={int(c['n'])})"
                row += [_spread_n(c, n),
                        spread(c["pct_median"], c["pct_min"], c["pct_max"], pct) + tag]
            rows.append(row)
    headers = ["mode", "target (rps)", "n (pairs)"]
    for _, label in OVERHEAD_METRICS:
        headers += [f"{label} Δ (µs)", f"{label} Δ (% of baseline)"]
    lines += table(headers, rows)
    return lines + ["", ("Δ = mode minus baseline at the same level in the same repetition of "
                    "this run (paired), then median [min–max] over the pairs."), ""]


def ratio_section(run: Run) -> list[str]:
    """Ratios between modes, paired by repetition, with 95 % t intervals on the log ratios
    (analysis.claimtests.two_sided: the same interval the claims use)."""
    lines = ["## Ratios between modes", ""]
    rows = []
    for metric, label in OVERHEAD_METRICS:
        values = cell_values(run.latency, metric)
        for level in run.levels:
            for a, b in RATIO_PAIRS:
                sel = values[values["level"] == level]
                xa = sel[sel["mode"] == a].set_index("repetition")["value"]
                xb = sel[sel["mode"] == b].set_index("repetition")["value"]
                if xa.empty or xb.empty:
                    continue
                ratio, verdict, test = two_sided(xa, xb)
                if ratio is None:
                    continue
                rows.append([str(level), label, f"{a} / {b}", ratio.text(3),
                             test.split(", ")[-1] if test else "—", verdict])
    if not rows:
        return lines + ["Not computed: no two modes were measured at the same level.", ""]
    headers = ["target (rps)", "percentile", "ratio", "ratio [95 % CI]", "n (pairs)",
               "verdict"]
    lines += table(headers, rows)
    return lines + ["", ("Ratio: geometric mean over repetitions of a / b within each "
                    "repetition (modes of one repetition ran in one interleaved block); CI: "
                    "Student t on the log ratios with n - 1 degrees of freedom. lower / "
                    f"higher = the CI excludes 1 and the effect is at least "
                    f"{100 * MIN_EFFECT:g} %."), ""]


def cv_lines(summary: pd.DataFrame, what: str, unit: str) -> tuple[list[str], list[str]]:
    """(warnings for cells with CV >= 10 %, cells "mode at level rps" with n < 2)."""
    warn, unknown = [], []
    for r in summary.to_dict("records"):
        where = f"{r['mode']} at {int(r['level'])} rps"
        if int(r["n"]) < 2:
            unknown.append(where)
        elif r["cv_warning"]:
            warn.append(f"- {where}, {what}: CV {100 * r['cv']:.1f} % (n={int(r['n'])}, "
                        f"{spread(r['median'], r['min'], r['max'])} {unit})")
    return warn, unknown


def cv_section(run: Run, extra: list[tuple[pd.DataFrame, str, str]]) -> list[str]:
    """Cells whose coefficient of variation across repetitions reaches 10 %.

    `extra` adds (summary, what, unit) triples from other sections (e.g. resources).
    """
    lines = ["## CV warnings", ""]
    checks = [(summarize(run.latency, m), label, "µs") for m, label in PERCENTILES]
    checks += [(summarize(run.client, "achieved_rps"), "achieved rps", "rps"), *extra]
    warn: list[str] = []
    unknown: list[str] = []
    for summary, what, unit in checks:
        w, u = cv_lines(summary, what, unit)
        warn += w
        unknown += u
    checked = any((summary["n"] >= 2).any() for summary, _, _ in checks)
    whats = ", ".join(what for _, what, _ in checks)
    if warn:
        lines += [f"CV = std / mean across repetitions; warned at >= {100 * CV_WARN:.0f} %.", "",
                  *warn]
    elif checked:
        lines += [f"None: every cell with n >= 2 has CV < {100 * CV_WARN:.0f} % ({whats})."]
    elif not run.client.empty:
        lines += ["No cell has n >= 2 repetitions, so no CV could be computed."]
    else:
        lines += ["No cells measured; nothing to check."]
    if unknown:
        cells = ", ".join(dict.fromkeys(unknown))
        lines += ["", f"CV not computable (n < 2) for: {cells}."]
    return lines + [""]


# What the architecture predicts for the median latency at one load level: every mesh mode
# costs more than no mesh; two thin L4 proxies cost less than two full L7 proxies; adding the
# waypoint hop costs more than ambient L4 alone.
PREDICTED_ORDER = (("baseline", "ambient"), ("ambient", "sidecar"), ("ambient", "waypoint"),
                   ("baseline", "sidecar"))


def order_section(run: Run) -> list[str]:
    """Does the measured p50 order match the architecture's prediction, per level?
    Compares medians across repetitions and says how far apart the ranges are."""
    lines = ["## Order predicted by the architecture", ""]
    summary = by_cell(summarize(run.latency, "latency_p50"))
    rows = []
    for level in run.levels:
        for lo, hi in PREDICTED_ORDER:
            a, b = summary.get((lo, level)), summary.get((hi, level))
            if a is None or b is None:
                continue
            holds = a["median"] < b["median"]
            overlap = not (a["max"] < b["min"] or b["max"] < a["min"])
            verdict = "yes" if holds else "NO"
            if overlap:
                verdict += " (ranges overlap)"
            rows.append([str(level), f"{lo} < {hi}", num(a["median"]), num(b["median"]),
                         verdict])
    if not rows:
        return lines + ["Not enough modes measured to check the predicted order.", ""]
    lines += table(["target (rps)", "prediction (p50)", "left (µs)", "right (µs)", "holds"],
                   rows)
    if any(r[-1].startswith("NO") for r in rows):
        lines += ["", "Where a prediction does not hold, look at the CV warnings and the "
                  "ranges: on a shared 2-core machine a neighbour's load moves p50 by 20-40 %; "
                  "more repetitions narrow it. A reversal that persists is a finding."]
    return lines + [""]


# ---- how latency was timed, and the independent reference ----------------------------------

INTENDED = "load_intended"
REFERENCE = "reference"
REFERENCE_KERNEL = "reference_kernel"  # the reference client's requests, timed in the kernel
AGREEMENT_TOLERANCE = 0.15  # methodology: every latency figure the claims use within 15 %
TIMING_TEXT = {
    "load_kernel": ("timed in the kernel at the load generator's own sockets (BCC: the "
                    "request's send entering TCP -> the last response bytes queued on that "
                    "socket), from the actual send; Locust's user space (gevent scheduling "
                    "of other users, Python parsing) is excluded"),
    "load": ("Locust's own response time (its user space: includes gevent scheduling of the "
             "other users and Python's per-request cost), from the actual send"),
}


def _medians(rows: pd.DataFrame, metric: str) -> dict[tuple[str, int], float]:
    s = summarize(rows, metric)
    return {(str(r["mode"]), int(r["level"])): float(r["median"]) for r in s.to_dict("records")}


def overhead_medians(rows: pd.DataFrame, metric: str = "latency_p50"
                     ) -> dict[tuple[str, int], tuple[float, int]]:
    """(median paired overhead over baseline, pairs) per (mode, level)."""
    o = overhead_vs_baseline(rows, metric)
    return {(str(r["mode"]), int(r["level"])): (float(r["median"]), int(r["n"]))
            for r in o.to_dict("records")}


def timing_section(run: Run) -> list[str]:
    """Which timing the latency figures use, the load generator's own share, the
    coordinated-omission corrected figures and how evenly requests actually left."""
    lines = ["## How latency was timed", ""]
    if run.client.empty:
        return lines + ["No load-generator rows in this run.", ""]
    arrivals = run.scenario.get("load", {}).get("arrivals", "not recorded (constant_throughput)")
    src = run.latency_source()
    lines += [f"- Latency figures (claims, tables, overheads): {TIMING_TEXT[src]}."]
    if src == "load":
        probe = (run.manifest.get("probes") or {}).get("kernel_latency") or {}
        why = probe.get("reason") or "; ".join(probe.get("failures", [])[:2]) or "not recorded"
        lines += [f"  The kernel timing did not cover every cell ({why}): Locust's timing is "
                  "used for the whole run, and its scheduling noise is in every figure."]
    lines += [f"- Arrivals: `{arrivals}` (workloads/locustfiles/arrivals.py); each request has "
              "an intended send time, and `load_intended` times it from there (coordinated "
              "omission corrected, as wrk2 does).", ""]
    kernel = run.without_failed(run.rows("load_kernel", entity="client"))
    intended = run.without_failed(run.rows(INTENDED, entity="client"))
    k50, l50 = _medians(kernel, "latency_p50"), _medians(run.client, "latency_p50")
    i50, i99 = _medians(intended, "latency_p50"), _medians(intended, "latency_p99")
    lag99 = _medians(intended, "send_lag_p99")
    burst, cv = _medians(kernel, "burst_share"), _medians(kernel, "gap_cv")
    rows = []
    for mode in run.modes:
        for level in run.levels:
            key = (mode, level)
            if key not in l50:
                continue
            own = (f"{num(l50[key] - k50[key])} ({pct(100 * (l50[key] - k50[key]) / k50[key])})"
                   if key in k50 and k50[key] else NOT_MEASURED)
            rows.append([mode, str(level), num(k50[key]) if key in k50 else NOT_MEASURED,
                         num(l50[key]), own,
                         num(i50[key]) if key in i50 else NOT_MEASURED,
                         num(i99[key]) if key in i99 else NOT_MEASURED,
                         num(lag99[key]) if key in lag99 else NOT_MEASURED,
                         f"{burst[key]:.2f}" if key in burst else NOT_MEASURED,
                         f"{cv[key]:.2f}" if key in cv else NOT_MEASURED])
    lines += table(["mode", "target (rps)", "kernel p50 (µs)", "Locust p50 (µs)",
                    "Locust's own share (µs)", "from intended p50 (µs)",
                    "from intended p99 (µs)", "send lag p99 (µs)", "burst share",
                    "gap CV"], rows)
    return lines + ["", ("Medians across repetitions. Locust's own share = Locust p50 minus "
                    "kernel p50: what the load generator's user space adds. Send lag = how "
                    "late requests left against their schedule (gevent's timers wake in "
                    "~1 ms steps); the from-intended figures include it. Burst share = "
                    "share of gaps between consecutive sends (all connections, measured in "
                    "the kernel) shorter than a quarter of 1/rate: ~0 for evenly spread "
                    "schedules, (users-1)/users when users fire together, 0.22 for "
                    "Poisson; gap CV: ~0 spread, 1 Poisson."), ""]


def agreement(run: Run) -> list[dict[str, Any]]:
    """Per (mode, level): the harness's p50 overhead (headline timing and Locust's own) and
    the reference client's, with ratios to the reference. Empty without reference rows."""
    ref_rows = run.without_failed(run.rows(REFERENCE, entity="client"))
    if ref_rows.empty:
        return []
    ref = overhead_medians(ref_rows)
    ref_kernel = overhead_medians(run.without_failed(run.rows(REFERENCE_KERNEL,
                                                              entity="client")))
    head = overhead_medians(run.latency)
    locust = overhead_medians(run.client)
    sat = run.client[(run.client["metric"] == "saturated") & (run.client["value"] >= 1)]
    saturated = set(zip(sat["mode"], sat["level"].astype(int)))
    out = []
    for (mode, level), (r, n) in sorted(ref.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        h = head.get((mode, level))
        lo = locust.get((mode, level))
        rk = ref_kernel.get((mode, level))
        ratio = h[0] / r if h and r > 0 else None
        # a saturated cell (Locust below 95 % of its target) measured another load
        sat_here = bool({(mode, level), (BASELINE, level)} & saturated)
        out.append({
            "mode": mode, "level": level, "pairs": n, "reference_us": r,
            "harness_us": h[0] if h else None, "locust_us": lo[0] if lo else None,
            "ratio": ratio, "locust_ratio": lo[0] / r if lo and r > 0 else None,
            "within": (None if sat_here else
                       ratio is not None and abs(ratio - 1) <= AGREEMENT_TOLERANCE),
            "saturated": sat_here,
            "reference_kernel_us": rk[0] if rk else None,
        })
    return out


def same_order(rows: list[dict[str, Any]], key: str) -> dict[int, bool]:
    """Per level: does `key` order the modes as the reference does, wherever the reference
    separates two modes by more than the agreement tolerance? (Two modes closer than that
    are a tie: their order is noise.) Saturated cells are left out."""
    out = {}
    for level in sorted({r["level"] for r in rows}):
        at = [r for r in rows if r["level"] == level and r[key] is not None
              and not r.get("saturated")]
        out[level] = all(
            (a[key] < b[key]) == (a["reference_us"] < b["reference_us"])
            for i, a in enumerate(at) for b in at[i + 1:]
            if abs(a["reference_us"] - b["reference_us"])
            > AGREEMENT_TOLERANCE * max(a["reference_us"], b["reference_us"]))
    return out


def reference_section(run: Run) -> list[str]:
    """The harness's overheads beside the independent reference client's (meshbench
    calibrate), flagging any mode outside the 15 % agreement goal."""
    rows = agreement(run)
    if not rows:
        return []
    lines = ["## Agreement with the independent reference client", "",
             ("mb-refclient (bench/load/reference.py: C, one blocking thread per connection, "
              "absolute-deadline pacing, raw per-request times) ran in the client pod right "
              "after each cell, at the same rate, connections and arrival model. p50 "
              "overhead over baseline (paired by repetition, median):"), ""]
    body = []
    for r in rows:
        ratio = f"{r['ratio']:.2f}" if r["ratio"] is not None else NOT_MEASURED
        flag = ("saturated: not comparable" if r["within"] is None
                else "yes" if r["within"] else "**NO**")
        body.append([r["mode"], str(r["level"]), str(r["pairs"]), num(r["reference_us"]),
                     num(r["harness_us"]) if r["harness_us"] is not None else NOT_MEASURED,
                     ratio, flag,
                     num(r["locust_us"]) if r["locust_us"] is not None else NOT_MEASURED,
                     f"{r['locust_ratio']:.2f}" if r["locust_ratio"] is not None else "—",
                     num(r["reference_kernel_us"]) if r["reference_kernel_us"] is not None
                     else NOT_MEASURED])
    lines += table(["mode", "target (rps)", "pairs", "reference (µs)",
                    f"harness, {run.latency_source()} (µs)", "ratio",
                    f"within {AGREEMENT_TOLERANCE:.0%}", "Locust-timed (µs)", "Locust ratio",
                    "reference, kernel-timed (µs)"], body)
    order = same_order(rows, "harness_us")
    bad = [r for r in rows if r["within"] is False]
    lines += ["", ("Saturated: Locust fell below 95 % of the target rate in that mode or its "
                   "baseline (one closed-loop user cannot exceed 1 / latency), so its cells "
                   "measured a lower load than the reference's and are not compared."),
              "", ("Reference, kernel-timed: the reference client's own requests timed by the "
                   "same kernel probe as the headline (send entering TCP -> response queued): "
                   "the probe's answer on a second, independent client. Reference minus that "
                   "is what the client's own syscalls and thread wake-ups add per mode.")]
    lines += ["", "Order of modes as the reference (where it separates two modes by more than "
              f"{AGREEMENT_TOLERANCE:.0%}): " + ", ".join(
        f"{lv} rps {'same' if ok else '**different**'}" for lv, ok in order.items()) + "."]
    if bad:
        lines += ["", "Outside the agreement goal: " + ", ".join(
            f"{r['mode']} at {r['level']} rps ({r['ratio']:.2f})" if r["ratio"] is not None
            else f"{r['mode']} at {r['level']} rps (no harness figure)" for r in bad) + "."]
    return lines + [""]
