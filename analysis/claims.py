"""The claims table: each claim of ambient mode, its measured verdict, the published figure.

Claims (docs/methodology.md, docs/istio.md):
  (a) resources: the data plane's cost grows with pods under sidecar, not under ambient;
      at one size, ambient's data plane costs less than sidecar's.
  (b) push fan-out: a config change reaches every sidecar, vs only ztunnels + the
      affected waypoint.
  (c) exposure: the seed's phrasing, "every sidecar holds every policy", is the claim
      tested; Istio 1.27 scopes it otherwise (pilot/pkg/model/sidecar.go, xds/workload.go):
      a sidecar holds every service of the mesh but only the policies that select its
      workload (from its own or the root namespace); every ztunnel holds every workload
      address and every ambient policy. Measured: config bytes held by all proxies of a
      mode, and the policies held by a mode's most exposed proxy.
  (d) latency: two ztunnels add less than two sidecars; the waypoint path (one L7 Envoy)
      adds no more than two sidecars.

Each measured row is a ratio mode / sidecar with a 95 % bootstrap CI over repetitions,
and a verdict (`judge`): supported, not supported, inconclusive (n too small, CI spans 1,
or not significant), or not measured (the run has no data for it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from analysis import published
from analysis.fmt import num, table
from analysis.load import UNDER_LOAD, Run
from analysis.resources import DATAPLANE
from analysis.stats import (
    RatioCI,
    SlopeFit,
    bootstrap_ratio_ci,
    cell_values,
    fit_slope,
    paired_deltas,
    significance,
)

SUPPORTED, NOT_SUPPORTED = "supported", "not supported"
INCONCLUSIVE, NOT_MEASURED = "inconclusive", "not measured"
VERDICTS = (SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE, NOT_MEASURED)
REFERENCE_RPS = 1000  # the load of istio.io's published figures
POD_LABEL = "pods"
XDS = "xds"
FANOUT_MISSING = "not measured in this run (needs make bench-fanout)"
SWEEP_MISSING = "needs a pod-count sweep (make bench-scaling)"

A_RES = "(a) resources"
B_FANOUT = "(b) push fan-out"
C_EXPOSURE = "(c) exposure"
D_LATENCY = "(d) latency"


@dataclass(frozen=True)
class Verdict:
    """A claim's outcome; `ratio` is median(a) / median(b) with its 95 % CI."""

    verdict: str
    reason: str
    ratio: RatioCI | None = None
    n_a: int = 0
    n_b: int = 0

    def text(self) -> str:
        """"verdict (reason)"; "verdict: reason" when the reason has parentheses; the
        reason alone when it already starts with the verdict."""
        if not self.reason:
            return self.verdict
        if self.reason.startswith(self.verdict):
            return self.reason
        return (f"{self.verdict}: {self.reason}" if "(" in self.reason
                else f"{self.verdict} ({self.reason})")

    def ratio_text(self) -> str:
        if self.ratio is None:
            return "—"
        r = self.ratio
        if min(self.n_a, self.n_b) < 2:
            return f"{r.ratio:.3f} (no CI: n={min(self.n_a, self.n_b)})"
        return f"{r.ratio:.3f} [{r.lo:.3f}–{r.hi:.3f}]"


def judge(a: ArrayLike, b: ArrayLike) -> Verdict:
    """Verdict on the claim "a is lower than b" from per-repetition values.

    supported: the CI of median(a)/median(b) lies below 1 and Mann-Whitney p < 0.01 with
    an effect >= 5 %; not supported: the same, above 1; inconclusive: n too small for
    p < 0.01, the CI spans 1, or the difference is not significant; not measured: a side
    has no value.
    """
    xa, xb = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if xa.size == 0 or xb.size == 0:
        return Verdict(NOT_MEASURED, "no values", None, int(xa.size), int(xb.size))
    if np.median(xb) <= 0:
        return Verdict(INCONCLUSIVE, f"reference median {num(float(np.median(xb)))} <= 0: "
                       "no ratio", None, int(xa.size), int(xb.size))
    ci = bootstrap_ratio_ci(xa, xb)
    sig = significance(xa, xb)
    n = (int(xa.size), int(xb.size))
    if sig.verdict == "n too small":
        return Verdict(INCONCLUSIVE, f"n too small: {n[0]} vs {n[1]}", ci, *n)
    if ci.lo <= 1.0 <= ci.hi:
        return Verdict(INCONCLUSIVE, "CI spans 1", ci, *n)
    if sig.verdict != "significant":
        return Verdict(INCONCLUSIVE, f"not significant: {sig.reason}", ci, *n)
    verdict = SUPPORTED if ci.hi < 1.0 else NOT_SUPPORTED
    return Verdict(verdict, f"p={sig.p_value:.2g}, n={n[0]} vs {n[1]}", ci, *n)


@dataclass(frozen=True)
class ClaimRow:
    """One row of the claims table. `level` is the target rps (None: not per level);
    `others` summarises the same test at the run's other levels."""

    claim: str
    tested: str
    level: int | None
    measured: str
    result: Verdict
    published: str
    others: str = ""

    @property
    def verdict(self) -> str:
        return self.result.verdict

    def cells(self) -> list[str]:
        at = f"{self.level} rps" if self.level is not None else "—"
        return [self.claim, self.tested, at, self.measured or "—", self.result.ratio_text(),
                self.result.text(), self.published, self.others or "—"]


HEADERS = ["claim", "tested (ratio = mode / sidecar)", "at", "measured (medians)",
           "ratio [95 % CI]", "verdict", "published (setup)", "other levels"]


# ---- data ---------------------------------------------------------------------------------

def reference_level(levels: Sequence[int]) -> int | None:
    """The level closest to the published figures' 1000 rps (the higher one on a tie)."""
    if not levels:
        return None
    return min(levels, key=lambda lv: (abs(lv - REFERENCE_RPS), -lv))


def _values(df: pd.DataFrame, metric: str, mode: str, level: int,
            column: str = "value") -> np.ndarray:
    sel = df[(df["metric"] == metric) & (df["mode"] == mode) & (df["level"] == level)]
    return sel[column].to_numpy(dtype=float)


class LatencyValues:
    """A run's per-repetition latencies and paired overheads of one metric, computed once
    for all the (mode, level) pairs a claim asks about."""

    def __init__(self, run: Run, metric: str) -> None:
        self.metric = metric
        self.pairs = paired_deltas(run.client, metric).assign(metric=metric)
        self.values = cell_values(run.client, metric).assign(metric=metric)

    def pair(self, a: str, b: str, level: int) -> tuple[np.ndarray, np.ndarray, str]:
        """Values of modes `a` and `b` at `level`: overheads over baseline (paired per
        repetition) when both have baseline partners, else plain latencies; with
        "overhead" or "latency" saying which."""
        xa = _values(self.pairs, self.metric, a, level, "delta")
        xb = _values(self.pairs, self.metric, b, level, "delta")
        va = _values(self.values, self.metric, a, level)
        vb = _values(self.values, self.metric, b, level)
        # a mode with no latency at all does not turn the other one's overhead into latency
        if (xa.size or xb.size) and (xa.size or not va.size) and (xb.size or not vb.size):
            return xa, xb, "overhead"
        return va, vb, "latency"


def dataplane_rows(run: Run) -> tuple[pd.DataFrame, int | None]:
    """Data-plane total rows under load; when the run swept pod counts, those of the
    largest count, and that count."""
    res = run.resources
    rows = res[(res["phase"] == UNDER_LOAD) & (res["entity"] == DATAPLANE)]
    pods = pod_counts(run, rows)
    if pods.notna().any():
        top = int(pods.max())
        return rows[pods == top], top
    return rows, None


def pod_counts(run: Run, rows: pd.DataFrame) -> pd.Series:
    """The "pods" label of each row (NaN where absent), aligned with `rows`."""
    if rows.empty:
        return pd.Series(dtype=float)
    return pd.to_numeric(run.label(POD_LABEL).loc[rows.index], errors="coerce")


def _memory_metric(rows: pd.DataFrame, modes: Sequence[str], level: int) -> str:
    """pss_mib when every mode with memory rows at this level has a PSS value, else
    rss_mib (PSS splits shared pages, so it is the honest total when read)."""
    present = [m for m in modes if _values(rows, "rss_mib", m, level).size
               or _values(rows, "pss_mib", m, level).size]
    ok = all(_values(rows, "pss_mib", m, level).size for m in present)
    return "pss_mib" if ok else "rss_mib"


# ---- rows -----------------------------------------------------------------------------------

LevelTest = Callable[[int], tuple[str, Verdict]]


def _others(levels: Sequence[int], ref: int, test: LevelTest) -> str:
    parts = []
    for level in levels:
        if level == ref:
            continue
        _, v = test(level)
        if v.verdict == NOT_MEASURED:
            continue
        parts.append(f"{level} rps: {v.ratio_text()} {v.verdict}")
    return "; ".join(parts)


def _measured_pair(a_mode: str, a: np.ndarray, b_mode: str, b: np.ndarray, unit: str,
                   scale: float = 1.0, sign: bool = False) -> str:
    """"a 0.40, b 1.02 cores" (medians), naming a side that has no value."""
    def one(x: np.ndarray) -> str:
        v = float(np.median(x)) * scale
        return f"{'+' if sign and v >= 0 else ''}{num(v)}"
    present = [f"{m} {one(x)}" for m, x in ((a_mode, a), (b_mode, b)) if x.size]
    missing = [m for m, x in ((a_mode, a), (b_mode, b)) if not x.size]
    if not present:
        return ""
    text = f"{', '.join(present)} {unit}"
    return text + (f" ({missing[0]} not measured)" if missing else "")


def resource_rows(run: Run, levels: Sequence[int], ref: int | None) -> list[ClaimRow]:
    """Data-plane cores and memory, ambient / sidecar and waypoint / sidecar, under load."""
    rows, pods = dataplane_rows(run)
    at_pods = f" at {pods} pods" if pods is not None else ""
    out = []
    for kind in ("cpu", "memory"):
        for mode in ("ambient", "waypoint"):
            what = ("data-plane CPU" if kind == "cpu" else "data-plane memory")
            pub = published.resources(mode, kind)

            def test(level: int, kind: str = kind, mode: str = mode) -> tuple[str, Verdict]:
                metric = ("cpu_cores" if kind == "cpu"
                          else _memory_metric(rows, (mode, "sidecar"), level))
                a = _values(rows, metric, mode, level)
                b = _values(rows, metric, "sidecar", level)
                unit = {"cpu_cores": "cores", "pss_mib": "MiB PSS",
                        "rss_mib": "MiB RSS (PSS not read)"}[metric]
                return _measured_pair(mode, a, "sidecar", b, unit), judge(a, b)

            tested = f"{what}{at_pods}: {mode} < sidecar"
            if rows.empty or ref is None:
                out.append(ClaimRow(A_RES, tested, None, "", Verdict(
                    NOT_MEASURED, "no data-plane resource rows in this run"), pub))
                continue
            measured, verdict = test(ref)
            if verdict.verdict == NOT_MEASURED:
                missing = [m for m in (mode, "sidecar") if not (rows["mode"] == m).any()]
                verdict = Verdict(NOT_MEASURED, f"no {' or '.join(missing or [mode])} "
                                  "data-plane rows in this run")
            out.append(ClaimRow(A_RES, tested, ref, measured, verdict, pub,
                                _others(levels, ref, test)))
    return out + scaling_rows(run)


def sweep_points(run: Run) -> tuple[pd.DataFrame, str]:
    """Data-plane rows under load with a "pods" column, and where they come from: rows of
    this run labelled "pods", else the runs of the `meshbench sweep` this run belongs to
    (its manifest's "sweep" and the sweep.json beside it, read by analysis.scaling)."""
    res = run.resources
    rows = res[(res["entity"] == DATAPLANE) & (res["phase"] == UNDER_LOAD)]
    pods = pod_counts(run, rows)
    if pods.dropna().nunique() >= 2:
        return rows.assign(pods=pods).dropna(subset=["pods"]), "this run's pods labels"
    sweep_dir = run.run_dir.parent
    if run.manifest.get("sweep") and (sweep_dir / "sweep.json").is_file():
        from analysis.scaling import points

        pts = points(sweep_dir)
        if not pts.empty:
            pts = pts[pts["phase"] == UNDER_LOAD]
            return pts, f"sweep {sweep_dir.name}, {pts['pods'].nunique()} sizes"
    return rows.iloc[0:0].assign(pods=pd.Series(dtype=float)), ""


def scaling_rows(run: Run) -> list[ClaimRow]:
    """Slope of the data plane's cost over pod count per mode, fitted at each load level
    (see `sweep_points`), shown at the level closest to 1000 rps; or a row saying the run
    has no sweep."""
    rows, source = sweep_points(run)
    tested = "cost grows with pods under sidecar, not under ambient (slope per pod)"
    if rows["pods"].nunique() < 2:
        return [ClaimRow(A_RES, tested, None, "", Verdict(NOT_MEASURED, SWEEP_MISSING),
                         published.SCALING)]
    levels = sorted({int(v) for v in rows["level"]})
    ref = reference_level(levels) or levels[0]
    out = []
    for metric, unit in (("cpu_cores", "cores"), ("pss_mib", "MiB PSS")):
        def test(level: int, metric: str = metric, unit: str = unit) -> tuple[str, Verdict]:
            fits, notes = {}, []
            for mode in ("sidecar", "ambient"):
                sel = rows[(rows["metric"] == metric) & (rows["mode"] == mode)
                           & (rows["level"] == level)]
                try:
                    fits[mode] = fit_slope(sel["pods"], sel["value"])
                except ValueError as e:
                    notes.append(f"{mode}: {e}")
            measured = ", ".join(
                f"{m} b = {num(f.slope)} [{num(f.lo)}–{num(f.hi)}] {unit}/pod "
                f"(n={f.n} over {f.x_values} pod counts)" for m, f in fits.items())
            return measured, slope_verdict(fits.get("sidecar"), fits.get("ambient"), notes)

        measured, verdict = test(ref)
        others = "; ".join(f"{lv} rps: {test(lv)[1].verdict}" for lv in levels if lv != ref)
        out.append(ClaimRow(A_RES, f"{tested}: {unit}", ref,
                            f"{measured} ({source})" if measured else "", verdict,
                            published.SCALING, others))
    return out


def slope_verdict(sidecar: SlopeFit | None, ambient: SlopeFit | None,
                  notes: list[str]) -> Verdict:
    """supported: sidecar's slope CI above 0 and ambient's wholly below it; not supported:
    sidecar's CI at or below 0, or ambient's wholly above sidecar's; else inconclusive."""
    if sidecar is None or ambient is None:
        return Verdict(INCONCLUSIVE if notes else NOT_MEASURED, "; ".join(notes) or
                       "needs sidecar and ambient at several pod counts")
    if sidecar.lo > 0 and ambient.hi < sidecar.lo:
        return Verdict(SUPPORTED, "95 % slope CIs separated")
    if sidecar.hi <= 0 or ambient.lo > sidecar.hi:
        return Verdict(NOT_SUPPORTED, "sidecar's cost does not grow faster than ambient's")
    return Verdict(INCONCLUSIVE, "95 % slope CIs overlap")


def latency_rows(run: Run, levels: Sequence[int], ref: int | None) -> list[ClaimRow]:
    """p50 and p99 overhead over baseline, ambient / sidecar and waypoint / sidecar."""
    out = []
    data = {m: LatencyValues(run, m) for m in ("latency_p50", "latency_p99")}
    for mode, pubs in (("ambient", {"latency_p50": published.LATENCY_P50,
                                    "latency_p99": published.LATENCY_P99}),
                       ("waypoint", {"latency_p50": published.WAYPOINT_LATENCY,
                                     "latency_p99": published.WAYPOINT_LATENCY})):
        for metric, label in (("latency_p50", "p50"), ("latency_p99", "p99")):
            def test(level: int, metric: str = metric,
                     mode: str = mode) -> tuple[str, Verdict]:
                a, b, kind = data[metric].pair(mode, "sidecar", level)
                unit = "ms over baseline" if kind == "overhead" else "ms latency (no baseline)"
                return (_measured_pair(mode, a, "sidecar", b, unit, 1e-3, kind == "overhead"),
                        judge(a, b))

            what = ("two ztunnels add less than two sidecars" if mode == "ambient"
                    else "the waypoint path adds no more than two sidecars")
            if ref is None:
                out.append(ClaimRow(D_LATENCY, f"{label}: {what}", None, "", Verdict(
                    NOT_MEASURED, "no latency rows in this run"), pubs[metric]))
                continue
            measured, verdict = test(ref)
            kind = data[metric].pair(mode, "sidecar", ref)[2]
            tested = f"{label} {kind}: {what}"
            if verdict.verdict == NOT_MEASURED:
                missing = [m for m in (mode, "sidecar") if not (run.client["mode"] == m).any()]
                verdict = Verdict(NOT_MEASURED, f"no {' or '.join(missing or [mode])} "
                                  "latency in this run")
                if not measured:
                    tested = f"{label}: {what}"
            out.append(ClaimRow(D_LATENCY, tested, ref, measured, verdict, pubs[metric],
                                _others(levels, ref, test)))
    return out


def _xds_values(rows: pd.DataFrame, metric: str, mode: str, entity: str | None = "mesh",
                experiment: str | None = None) -> np.ndarray:
    """Per repetition: the metric (summed over entities when entity is None)."""
    sel = rows[(rows["metric"] == metric) & (rows["mode"] == mode)]
    if entity is not None:
        sel = sel[sel["entity"] == entity]
    if experiment is not None:
        sel = sel[sel["experiment"] == experiment]
    return sel.groupby("repetition")["value"].sum().to_numpy(dtype=float)


def xds_rows(run: Run) -> list[ClaimRow]:
    """(b) per change: bytes pushed, ambient (and waypoint) over sidecar, with who received
    it; (c) config held: bytes of config summed over the mode's proxies."""
    rows = run.without_failed(run.rows(XDS))
    fan_test = "a config change reaches every sidecar vs only ztunnels + affected waypoint"
    exp_test = ("every sidecar holds every policy (Istio: a sidecar holds every service but "
                "only its own workload's policies; every ztunnel every workload address and "
                "every ambient policy)")
    if rows.empty:
        return [ClaimRow(B_FANOUT, fan_test, None, "", Verdict(NOT_MEASURED, FANOUT_MISSING),
                         published.FANOUT),
                ClaimRow(C_EXPOSURE, exp_test, None, "", Verdict(NOT_MEASURED, FANOUT_MISSING),
                         published.EXPOSURE)]
    rows = rows.assign(experiment=run.label("experiment").loc[rows.index])
    out = []
    for experiment in sorted(e for e in set(rows["experiment"].dropna())):
        for mode in ("ambient", "waypoint"):
            a = _xds_values(rows, "push_bytes_total", mode, experiment=experiment)
            b = _xds_values(rows, "push_bytes_total", "sidecar", experiment=experiment)
            if not a.size and not b.size:
                continue
            up_a = _xds_values(rows, "proxies_updated", mode, experiment=experiment)
            tot_a = _xds_values(rows, "proxies_total", mode, experiment=experiment)
            up_b = _xds_values(rows, "proxies_updated", "sidecar", experiment=experiment)
            tot_b = _xds_values(rows, "proxies_total", "sidecar", experiment=experiment)

            def frac(up: np.ndarray, tot: np.ndarray) -> str:
                return f"{np.median(up):.0f}/{np.median(tot):.0f}" if up.size else "—"
            measured = (f"{mode} {frac(up_a, tot_a)} proxies, "
                        f"{np.median(a):.0f} B; sidecar {frac(up_b, tot_b)} proxies, "
                        f"{np.median(b):.0f} B" if a.size and b.size else
                        _measured_pair(mode, a, "sidecar", b, "B"))
            out.append(ClaimRow(B_FANOUT, f"{experiment}: bytes pushed, {mode} < sidecar",
                                None, measured, judge(a, b), published.FANOUT))
    # config held: after the run's changes when measured (it then counts the policies they
    # added), else the initial mesh; never both summed
    state = run.label("state").loc[rows.index].fillna("initial")
    held = rows[state == ("after_changes" if (state == "after_changes").any() else "initial")]
    for mode in ("ambient", "waypoint"):
        a = _xds_values(held, "config_bytes", mode, entity=None)
        b = _xds_values(held, "config_bytes", "sidecar", entity=None)
        if a.size or b.size:
            out.append(ClaimRow(C_EXPOSURE, f"config held by all proxies: {mode} < sidecar",
                                None, _measured_pair(mode, a, "sidecar", b, "B"),
                                judge(a, b), published.EXPOSURE))
        # policies held by the mode's most exposed proxy (a ztunnel: every ambient policy)
        pa, pb = (held[(held["metric"] == "policies_known") & (held["mode"] == m)]
                  .groupby("repetition")["value"].max().to_numpy(dtype=float)
                  for m in (mode, "sidecar"))
        if pa.size or pb.size:
            out.append(ClaimRow(C_EXPOSURE, f"policies held by the most exposed proxy: "
                                f"{mode} < sidecar", None,
                                _measured_pair(mode, pa, "sidecar", pb, "policies"),
                                judge(pa, pb), published.EXPOSURE))
    if not out:
        why = "xds rows present but none comparable between sidecar and ambient modes"
        out = [ClaimRow(B_FANOUT, fan_test, None, "", Verdict(NOT_MEASURED, why),
                        published.FANOUT)]
    return out


def claim_rows(run: Run) -> list[ClaimRow]:
    """Every claim's rows, in the order (a), (b), (c), (d)."""
    client_levels = sorted({int(v) for v in run.client["level"]}) if not run.client.empty else []
    ref = reference_level(client_levels)
    dp, _ = dataplane_rows(run)
    res_levels = sorted({int(v) for v in dp["level"]}) if not dp.empty else []
    res_ref = reference_level(res_levels)
    return (resource_rows(run, res_levels, res_ref) + xds_rows(run)
            + latency_rows(run, client_levels, ref))


def claims_section(run: Run) -> list[str]:
    """The claims table with its reading rules and caveats, as Markdown lines."""
    rows = claim_rows(run)
    lines = ["## Claims", "",
             ("Each claim of ambient mode, tested on this run's repetitions at the load level "
              f"closest to the published {REFERENCE_RPS} rps (other levels in the last column). "
              "Ratio = median of the mode over median of sidecar across repetitions, with a "
              "95 % percentile-bootstrap CI; latency ratios are of overheads over baseline "
              "(paired per repetition) when the run has a baseline."), "",
             ("Verdict: supported = CI below 1 and Mann-Whitney p < 0.01 with an effect >= "
              "5 %; not supported = the same above 1; inconclusive = n too small for "
              "p < 0.01 (5 repetitions per mode are needed), CI spans 1, or not significant; "
              "not measured = this run has no data for it."), ""]
    lines += table(HEADERS, [r.cells() for r in rows])
    lines += ["", ("Published figures come from other machines and setups (given with each); "
                   "they are anchors to explain differences against, and the harness is never "
                   "tuned toward them.")]
    if run.backend == "local":
        lines += ["", ("Local backend: these are Envoy-in-namespaces numbers (the ztunnel role "
                       "is an Envoy, not the Rust ztunnel; one host, no Kubernetes). They show "
                       "the architectures' costs; compare the direction of a ratio with the "
                       "published one, not its size.")]
    sat = run.client[(run.client["metric"] == "saturated") & (run.client["value"] >= 1)]
    if not sat.empty:
        where = sorted({(int(lv), str(m)) for m, lv in zip(sat["mode"], sat["level"])})
        lines += ["", ("**Saturated cells** (achieved < 95 % of target or the load generator "
                       "above 80 % CPU): " + ", ".join(f"{m} at {lv} rps" for lv, m in where)
                       + ". Ratios at those levels describe the load generator's limits as "
                       "much as the mesh; read their verdicts with that in mind.")]
    counts = {v: sum(r.verdict == v for r in rows) for v in VERDICTS}
    lines += ["", "Summary: " + ", ".join(f"{n} {v}" for v, n in counts.items() if n) + "."]
    return lines + [""]
