"""The claims table: each claim of ambient mode, its measured verdict, the published figure.

Claims (docs/statistics.md; the published figures and their sources in
analysis.published, Istio's behaviour cited by source file below):
  (a) resources: the data plane's cost grows with pods under sidecar, not under ambient;
      at one size, ambient's data plane costs less than sidecar's (superiority) and the
      waypoint path's no more than sidecar's (non-inferiority).
  (b) push fan-out: a config change reaches every sidecar, vs only ztunnels + the
      affected waypoint (deterministic counts: exact comparison).
  (c) exposure: the seed's phrasing, "every sidecar holds every policy", is the claim
      tested, on the least exposed sidecar (exact counts), with the share of all policies
      each role holds beside it; Istio 1.27 scopes it otherwise (pilot/pkg/model/
      sidecar.go, xds/workload.go): a sidecar holds every service of the mesh but only the
      policies that select its workload (from its own or the root namespace); every
      ztunnel holds every workload address and every ambient policy. Also measured (exact
      comparison): config bytes held by all proxies of a mode.

Preconditions (analysis.preconditions): a claim the run's topology or the backend's
stand-ins would decide (no more pods than nodes for fan-out and exposure, one policy for
(c), an Envoy as ztunnel for memory, an L7 change on ambient without a waypoint) reads
"not testable here", with the target that tests it.
  (d) latency: two ztunnels add less than two sidecars (superiority); the waypoint path
      (one L7 Envoy) adds no more than two sidecars (non-inferiority, margin
      claimtests.NI_MARGIN).

Tests and verdicts: analysis.claimtests (why those tests, and the rules). The claims can
draw on several runs (analysis.runset): each mode's numbers come from one run, overheads
over that run's baseline; modes of one run are paired by repetition, of two runs not.
Latency is read through `Run.latency` (source `Run.latency_source()`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from analysis import preconditions, published
from analysis.claimtests import (
    EQUIVALENT,
    EXACT,
    INCONCLUSIVE,
    LINEAR,
    NI_MARGIN,
    NON_INFERIORITY,
    NOT_MEASURED,
    NOT_SUPPORTED,
    NOT_TESTABLE,
    SUPERIORITY,
    SUPPORTED,
    VERDICTS,
    Outcome,
    compare,
    exact,
)
from analysis.fmt import num, table
from analysis.resources import DATAPLANE
from analysis.rundata import LATENCY_SOURCES, UNDER_LOAD, Run
from analysis.runset import RunSet, single
from analysis.stats import MIN_EFFECT, SlopeFit, fit_slope, paired_deltas
from bench.changes import L4_AUTHZ

__all__ = ["SUPPORTED", "NOT_SUPPORTED", "EQUIVALENT", "INCONCLUSIVE", "NOT_MEASURED",
           "NOT_TESTABLE", "VERDICTS",
           "ClaimRow", "claim_rows", "claims_section"]

REFERENCE_RPS = 1000  # the load of istio.io's published figures
POD_LABEL = "pods"
XDS = "xds"
FANOUT_MISSING = "not measured in the runs drawn from (needs make bench-fanout)"
SWEEP_MISSING = "needs a pod-count sweep (make bench-scaling)"

A_RES = "(a) resources"
B_FANOUT = "(b) push fan-out"
C_EXPOSURE = "(c) exposure"
D_LATENCY = "(d) latency"
# (b)'s primary endpoint: the mission's "one policy change is pushed to every sidecar"
PRIMARY_CHANGE = L4_AUTHZ.name

# the test each mode's claim against sidecar takes
KIND = {"ambient": SUPERIORITY, "waypoint": NON_INFERIORITY}

Verdict = Outcome  # the name earlier code used


@dataclass(frozen=True)
class ClaimRow:
    """One row of the claims table. `level` is the target rps (None: not per level);
    `others` summarises the same test at the other levels; `phrase` is the answer line's
    sentence with "{x}" where the ratio goes."""

    claim: str
    tested: str
    level: int | None
    measured: str
    result: Outcome
    published: str
    others: str = ""
    phrase: str = ""
    # the claim's one primary endpoint (per mode); the other rows describe
    primary: bool = False
    # the mode / sidecar ratio a published figure implies, where one does (forest plot)
    published_ratio: float | None = None

    @property
    def verdict(self) -> str:
        return self.result.verdict

    def ratio_text(self) -> str:
        r = self.result.ratio
        if r is None:
            return "—"
        if not r.has_ci and min(self.result.n_a, self.result.n_b) < 2:
            return f"{r.text(3)} (no CI: n={min(self.result.n_a, self.result.n_b)})"
        return r.text(3) if r.has_ci else f"{r.text(3)} (no CI)"

    def cells(self) -> list[str]:
        at = f"{self.level} rps" if self.level is not None else "—"
        role = "primary" if self.primary else "descriptive"
        power = self.result.power_text()
        verdict = self.result.text() + (f"; {power}" if power else "")
        return [f"{self.claim} ({role})", self.tested, at, self.measured or "—",
                self.ratio_text(), verdict, self.published, self.others or "—"]

    def answer(self) -> str:
        """The row's answer in one line: verdict, ratio, CI, repetitions, power."""
        r = self.result
        if r.verdict in (NOT_MEASURED, NOT_TESTABLE) or r.ratio is None or not self.phrase:
            return f"**{r.verdict}**: {self.tested}" + (f" ({r.reason})" if r.reason else "")
        at = f" at {self.level} rps" if self.level is not None else ""
        x = "undefined" if np.isnan(r.ratio.ratio) else f"{r.ratio.ratio:.2f}x"
        ci = (f" [95 % CI {r.ratio.lo:.2f}–{r.ratio.hi:.2f}]" if r.ratio.has_ci else "")
        if r.test.startswith("exact"):
            how = "counts, identical in every repetition"
        else:
            kind = r.test.split(";")[0].split(", effect floor")[0] if r.test else ""
            reps = (f"{r.n_a} repetitions" if r.n_a == r.n_b
                    else f"{r.n_a} vs {r.n_b} repetitions")
            if "Welch" in r.test:
                reps += ", unpaired: the modes come from two runs"
            how = ", ".join(p for p in (kind, reps, r.power_text(short=True)) if p)
        return f"**{r.verdict}** in this run: {self.phrase.format(x=x)}{at}{ci} ({how})"


HEADERS = ["claim", "tested (ratio = mode / sidecar)", "at", "measured (medians)",
           "ratio [95 % CI]", "verdict (test)", "published (setup)", "other levels"]


# ---- data ---------------------------------------------------------------------------------

def reference_level(levels: Sequence[int]) -> int | None:
    """The level closest to the published figures' 1000 rps (the higher one on a tie)."""
    if not levels:
        return None
    return min(levels, key=lambda lv: (abs(lv - REFERENCE_RPS), -lv))


def _series(df: pd.DataFrame, metric: str, mode: str, level: int,
            column: str = "value") -> pd.Series:
    """Per repetition (index) the value of `metric` for `mode` at `level`."""
    sel = df[(df["metric"] == metric) & (df["mode"] == mode) & (df["level"] == level)]
    if sel.empty:
        return pd.Series(dtype=float)
    return sel.groupby("repetition")[column].median().astype(float)


def latency_values(run: Run, metric: str, mode: str,
                   level: int) -> tuple[pd.Series, pd.Series]:
    """(overheads over this run's baseline paired per repetition, plain latencies) of
    `mode` at `level`, read from `run.latency`."""
    rows = run.latency
    if rows.empty:
        return pd.Series(dtype=float), pd.Series(dtype=float)
    pairs = paired_deltas(rows, metric).assign(metric=metric)
    return _series(pairs, metric, mode, level, "delta"), _series(rows, metric, mode, level)


def latency_pair(rs: RunSet, metric: str, a: str, b: str,
                 level: int) -> tuple[pd.Series, pd.Series, str]:
    """Values of modes `a` and `b` at `level`, each from its own run: overheads over that
    run's baseline when both have one, else plain latencies; with "overhead" or
    "latency" saying which."""
    oa, va = latency_values(rs.run_for(a), metric, a, level)
    ob, vb = latency_values(rs.run_for(b), metric, b, level)
    # a mode with no latency at all does not turn the other one's overhead into latency
    if (oa.size or ob.size) and (oa.size or not va.size) and (ob.size or not vb.size):
        return oa, ob, "overhead"
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


def _memory_metric(per_mode: dict[str, pd.DataFrame], level: int) -> str:
    """pss_mib when every mode with memory rows at this level has a PSS value, else
    rss_mib (PSS splits shared pages, so it is the honest total when read)."""
    present = [m for m, rows in per_mode.items() if _series(rows, "rss_mib", m, level).size
               or _series(rows, "pss_mib", m, level).size]
    ok = all(_series(per_mode[m], "pss_mib", m, level).size for m in present)
    return "pss_mib" if ok else "rss_mib"


def _test(a: pd.Series, b: pd.Series, kind: str, paired: bool) -> Outcome:
    return exact(a, b, paired) if kind == EXACT else compare(a, b, kind, paired)


# ---- rows -----------------------------------------------------------------------------------

LevelTest = Callable[[int], tuple[str, Outcome]]


def _others(levels: Sequence[int], ref: int, test: LevelTest) -> str:
    parts = []
    for level in levels:
        if level == ref:
            continue
        _, v = test(level)
        if v.verdict == NOT_MEASURED:
            continue
        ratio = v.ratio.text(3) if v.ratio is not None else "—"
        parts.append(f"{level} rps: {ratio} {v.verdict}")
    return "; ".join(parts)


def _measured_pair(a_mode: str, a: pd.Series, b_mode: str, b: pd.Series, unit: str,
                   scale: float = 1.0, sign: bool = False) -> str:
    """"a 0.40, b 1.02 cores" (medians), naming a side that has no value."""
    def one(x: pd.Series) -> str:
        v = float(np.median(x)) * scale
        return f"{'+' if sign and v >= 0 else ''}{num(v)}"
    present = [f"{m} {one(x)}" for m, x in ((a_mode, a), (b_mode, b)) if x.size]
    missing = [m for m, x in ((a_mode, a), (b_mode, b)) if not x.size]
    if not present:
        return ""
    text = f"{', '.join(present)} {unit}"
    return text + (f" ({missing[0]} not measured)" if missing else "")


def _claim_word(mode: str) -> str:
    return "<" if KIND[mode] == SUPERIORITY else f"<= (margin {100 * NI_MARGIN:g} %)"


def resource_rows(rs: RunSet) -> list[ClaimRow]:
    """Data-plane cores and memory under load: ambient < sidecar (superiority), waypoint
    no more than sidecar (non-inferiority); each mode from its own run."""
    out = []
    side_rows, side_pods = dataplane_rows(rs.run_for("sidecar"))
    for kind in ("cpu", "memory"):
        for mode in ("ambient", "waypoint"):
            what = "data-plane CPU" if kind == "cpu" else "data-plane memory"
            pub = published.resources(mode, kind)
            rows, pods = dataplane_rows(rs.run_for(mode))
            per_mode = {mode: rows, "sidecar": side_rows}
            levels = sorted({int(v) for r in per_mode.values() for v in r["level"]})
            ref = reference_level(levels)
            paired = rs.paired(mode, "sidecar")

            def test(level: int, kind: str = kind, mode: str = mode,
                     per_mode: dict[str, pd.DataFrame] = per_mode,
                     paired: bool = paired) -> tuple[str, Outcome]:
                metric = ("cpu_cores" if kind == "cpu" else _memory_metric(per_mode, level))
                a = _series(per_mode[mode], metric, mode, level)
                b = _series(per_mode["sidecar"], metric, "sidecar", level)
                unit = {"cpu_cores": "cores", "pss_mib": "MiB PSS",
                        "rss_mib": "MiB RSS (PSS not read)"}[metric]
                return _measured_pair(mode, a, "sidecar", b, unit), _test(a, b, KIND[mode],
                                                                          paired)

            top = pods if pods is not None else side_pods
            at_pods = f" at {top} pods" if top is not None else ""
            tested = f"{what}{at_pods}: {mode} {_claim_word(mode)} sidecar"
            noun = "CPU" if kind == "cpu" else "memory"
            phrase = f"{mode}'s data plane used {{x}} the sidecars' {noun}"
            if (rows.empty and side_rows.empty) or ref is None:
                out.append(ClaimRow(A_RES, tested, None, "", Outcome(
                    NOT_MEASURED, "no data-plane resource rows in the runs drawn from"), pub,
                    primary=kind == "cpu"))
                continue
            measured, verdict = test(ref)
            if verdict.verdict == NOT_MEASURED:
                missing = [m for m in (mode, "sidecar") if not (per_mode[m]["mode"] == m).any()]
                verdict = Outcome(NOT_MEASURED, f"no {' or '.join(missing or [mode])} "
                                  "data-plane rows in the runs drawn from")
            why = preconditions.memory(preconditions.setup_of(rs.run_for(mode))) if (
                kind == "memory") else ""
            if why and verdict.verdict != NOT_MEASURED:
                out.append(ClaimRow(A_RES, tested, ref, measured, Outcome(NOT_TESTABLE, why),
                                    pub, primary=kind == "cpu"))
                continue
            out.append(ClaimRow(A_RES, tested, ref, measured, verdict, pub,
                                _others(levels, ref, test), phrase, primary=kind == "cpu",
                                published_ratio=published.resources_ratio(mode, kind)))
    return out + scaling_rows(rs.primary)


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
        return [ClaimRow(A_RES, tested, None, "", Outcome(NOT_MEASURED, SWEEP_MISSING),
                         published.SCALING, primary=True)]
    levels = sorted({int(v) for v in rows["level"]})
    ref = reference_level(levels) or levels[0]
    out = []
    for metric, unit in (("cpu_cores", "cores"), ("pss_mib", "MiB PSS")):
        def test(level: int, metric: str = metric, unit: str = unit) -> tuple[str, Outcome]:
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
                            published.SCALING, others, primary=metric == "cpu_cores"))
    return out


def slope_verdict(sidecar: SlopeFit | None, ambient: SlopeFit | None,
                  notes: list[str]) -> Outcome:
    """supported: sidecar's slope CI above 0 and ambient's wholly below it; not supported:
    sidecar's CI at or below 0, or ambient's wholly above sidecar's; else inconclusive."""
    test = "95 % t intervals of least-squares slopes"
    if sidecar is None or ambient is None:
        return Outcome(INCONCLUSIVE if notes else NOT_MEASURED, "; ".join(notes) or
                       "needs sidecar and ambient at several pod counts")
    if sidecar.lo > 0 and ambient.hi < sidecar.lo:
        return Outcome(SUPPORTED, "slope CIs separated", test=test)
    if sidecar.hi <= 0 or ambient.lo > sidecar.hi:
        return Outcome(NOT_SUPPORTED, "sidecar's cost does not grow faster than ambient's",
                       test=test)
    return Outcome(INCONCLUSIVE, "slope CIs overlap", test=test)


def latency_rows(rs: RunSet) -> list[ClaimRow]:
    """p50 (primary) and p99 (descriptive) latency against sidecar.

    ambient < sidecar is a superiority test on the latencies themselves, per repetition:
    with a common baseline B, A - B < S - B exactly when A < S, so subtracting B only
    widens the interval (a ratio of percentile differences is not the percentile the
    proxies add either); the overheads and their ratio (Fieller's CI) are shown beside it.
    When the two modes come from two runs, their baselines differ: the overheads, each over
    its own run's baseline, are compared instead (Welch, linear scale).
    The waypoint path "adds no more than" two sidecars is about overheads: non-inferiority
    on the linear contrast (W - B) - 1.1 (S - B) (claimtests, scale LINEAR). Without a
    baseline both fall back to the latencies, and say so."""
    out = []
    for mode, pubs in (("ambient", {"latency_p50": published.LATENCY_P50,
                                    "latency_p99": published.LATENCY_P99}),
                       ("waypoint", {"latency_p50": published.WAYPOINT_LATENCY,
                                     "latency_p99": published.WAYPOINT_LATENCY})):
        ra, rb = rs.run_for(mode), rs.run_for("sidecar")
        levels = sorted({int(v) for r in (ra, rb) for v in r.latency["level"]}
                        if not (ra.latency.empty and rb.latency.empty) else set())
        ref = reference_level(levels)
        paired = rs.paired(mode, "sidecar")
        for metric, label in (("latency_p50", "p50"), ("latency_p99", "p99")):
            def test(level: int, metric: str = metric, mode: str = mode,
                     paired: bool = paired) -> tuple[str, Outcome]:
                return _latency_test(rs, metric, mode, level, paired)

            what = ("two ztunnels add less than two sidecars" if mode == "ambient"
                    else "the waypoint path adds no more than two sidecars "
                         f"(margin {100 * NI_MARGIN:g} %)")
            primary = label == "p50"
            if ref is None:
                out.append(ClaimRow(D_LATENCY, f"{label}: {what}", None, "", Outcome(
                    NOT_MEASURED, "no latency rows in the runs drawn from"), pubs[metric],
                    primary=primary))
                continue
            measured, verdict = test(ref)
            kind = latency_pair(rs, metric, mode, "sidecar", ref)[2]
            if mode == "ambient" and (paired or kind != "overhead"):
                tested = f"{label} latency: {what} (ambient < sidecar)"
                phrase = f"ambient's {label} latency was {{x}} the sidecars'"
            elif mode == "ambient":
                tested = f"{label} {kind}: {what}"
                phrase = f"ambient's two ztunnels added {{x}} the two sidecars' {label} {kind}"
            else:
                tested = f"{label} {kind}: {what}"
                phrase = f"the waypoint path added {{x}} the two sidecars' {label} {kind}"
            if verdict.verdict == NOT_MEASURED:
                missing = [m for m in (mode, "sidecar")
                           if not (rs.run_for(m).latency["mode"] == m).any()]
                verdict = Outcome(NOT_MEASURED, f"no {' or '.join(missing or [mode])} "
                                  "latency in the runs drawn from")
                if not measured:
                    tested = f"{label}: {what}"
            out.append(ClaimRow(D_LATENCY, tested, ref, measured, verdict, pubs[metric],
                                _others(levels, ref, test), phrase, primary=primary))
    return out


def _latency_test(rs: RunSet, metric: str, mode: str, level: int,
                  paired: bool) -> tuple[str, Outcome]:
    """(measured text, outcome) of one latency row (see `latency_rows`)."""
    oa, ob, kind = latency_pair(rs, metric, mode, "sidecar", level)
    _, va = latency_values(rs.run_for(mode), metric, mode, level)
    _, vb = latency_values(rs.run_for("sidecar"), metric, "sidecar", level)
    if kind == "overhead":
        measured = _measured_pair(mode, oa, "sidecar", ob, "ms over baseline", 1e-3, True)
        if oa.size >= 2 and ob.size >= 2 and mode == "ambient":
            r = compare(oa, ob, NON_INFERIORITY, paired, scale=LINEAR).ratio
            if r is not None:
                measured += f"; overhead ratio {r.text(2)}"
    else:
        measured = _measured_pair(mode, va, "sidecar", vb, "ms latency (no baseline)", 1e-3)
    if KIND[mode] == SUPERIORITY and kind == "overhead" and not paired:
        # modes from two runs: each latency is over its own run's baseline, so the
        # overheads are what compare; on the linear scale (they can be <= 0)
        return measured, compare(oa, ob, SUPERIORITY, paired, scale=LINEAR)
    if KIND[mode] == SUPERIORITY:
        if kind == "overhead":
            measured += "; " + _measured_pair(mode, va, "sidecar", vb, "ms latency", 1e-3)
        return measured, compare(va, vb, SUPERIORITY, paired)
    if kind == "overhead":
        return measured, compare(oa, ob, NON_INFERIORITY, paired, scale=LINEAR)
    return measured, compare(va, vb, NON_INFERIORITY, paired)


def _xds_values(rows: pd.DataFrame, metric: str, mode: str, entity: str | None = "mesh",
                experiment: str | None = None) -> pd.Series:
    """Per repetition (index): the metric (summed over entities when entity is None)."""
    sel = rows[(rows["metric"] == metric) & (rows["mode"] == mode)]
    if entity is not None:
        sel = sel[sel["entity"] == entity]
    if experiment is not None:
        sel = sel[sel["experiment"] == experiment]
    return sel.groupby("repetition")["value"].sum().astype(float)


def _xds_rows(run: Run) -> pd.DataFrame:
    rows = run.without_failed(run.rows(XDS))
    return rows.assign(experiment=run.label("experiment").loc[rows.index],
                       state=run.label("state").loc[rows.index].fillna("initial"),
                       role=run.label("role").loc[rows.index].fillna(""))


def _held(rows: pd.DataFrame) -> pd.DataFrame:
    """Config held after the run's changes when measured (it then counts the policies
    they added), else the initial mesh; never both summed."""
    after = rows["state"] == "after_changes"
    return rows[after] if after.any() else rows[rows["state"] == "initial"]


def _count_text(x: pd.Series) -> str:
    if not x.size:
        return "—"
    if x.nunique() == 1:
        return f"{x.iloc[0]:.0f}"
    return f"{np.median(x):.0f} [{x.min():.0f}–{x.max():.0f}]"


def _xds_test(a: pd.Series, b: pd.Series, mode: str, rs: RunSet, what: str) -> Outcome:
    """`exact` of mode against sidecar, naming the side with no rows."""
    missing = [m for m, x in ((mode, a), ("sidecar", b)) if not x.size]
    if missing:
        return Outcome(NOT_MEASURED, f"no {' or '.join(missing)} {what} rows in the runs "
                       "drawn from", None, int(a.size), int(b.size))
    return _test(a, b, EXACT, rs.paired(mode, "sidecar"))


def xds_rows(rs: RunSet) -> list[ClaimRow]:
    """(b) per change: bytes pushed, ambient (and waypoint) against sidecar, with who
    received it; (c) config held: bytes of config summed over the mode's proxies. Both
    are deterministic counts: compared exactly when identical across repetitions."""
    fan_test = "a config change reaches every sidecar vs only ztunnels + affected waypoint"
    exp_test = ("every sidecar holds every policy (Istio: a sidecar holds every service but "
                "only its own workload's policies; every ztunnel every workload address and "
                "every ambient policy)")
    per_mode = {m: _xds_rows(rs.run_for(m)) for m in ("sidecar", "ambient", "waypoint")}
    if all(r.empty for r in per_mode.values()):
        return [ClaimRow(B_FANOUT, fan_test, None, "", Outcome(NOT_MEASURED, FANOUT_MISSING),
                         published.FANOUT, primary=True),
                ClaimRow(C_EXPOSURE, exp_test, None, "", Outcome(NOT_MEASURED, FANOUT_MISSING),
                         published.EXPOSURE, primary=True)]
    out = []
    experiments = sorted({str(e) for r in per_mode.values() for e in r["experiment"].dropna()})
    side = per_mode["sidecar"]
    for experiment in experiments:
        for mode in ("ambient", "waypoint"):
            rows = per_mode[mode]
            a = _xds_values(rows, "push_bytes_total", mode, experiment=experiment)
            b = _xds_values(side, "push_bytes_total", "sidecar", experiment=experiment)
            if not a.size and not b.size:
                continue

            def reached(rows: pd.DataFrame, m: str, experiment: str = experiment) -> str:
                up = _xds_values(rows, "proxies_updated", m, experiment=experiment)
                tot = _xds_values(rows, "proxies_total", m, experiment=experiment)
                return f"{_count_text(up)}/{_count_text(tot)}" if up.size else "—"
            measured = (f"{mode} {reached(rows, mode)} proxies, {_count_text(a)} B; sidecar "
                        f"{reached(side, 'sidecar')} proxies, {_count_text(b)} B"
                        if a.size and b.size else _measured_pair(mode, a, "sidecar", b, "B"))
            why = preconditions.fanout(preconditions.setup_of(rs.run_for(mode)), mode,
                                       experiment)
            out.append(ClaimRow(B_FANOUT, f"{experiment}: bytes pushed, {mode} < sidecar",
                                None, measured, Outcome(NOT_TESTABLE, why) if why and a.size
                                and b.size else _xds_test(a, b, mode, rs, "push"),
                                published.FANOUT,
                                phrase=f"the {experiment} change pushed {{x}} the bytes to "
                                       f"{mode}'s proxies that it pushed to the sidecars",
                                primary=experiment == PRIMARY_CHANGE))
    for mode in ("ambient", "waypoint"):
        a = _xds_values(_held(per_mode[mode]), "config_bytes", mode, entity=None)
        b = _xds_values(_held(side), "config_bytes", "sidecar", entity=None)
        if a.size or b.size:
            why = preconditions.exposure(preconditions.setup_of(rs.run_for(mode)))
            out.append(ClaimRow(C_EXPOSURE, f"config held by all proxies: {mode} < sidecar",
                                None, f"{mode} {_count_text(a)} B, sidecar {_count_text(b)} B"
                                if a.size and b.size else
                                _measured_pair(mode, a, "sidecar", b, "B"),
                                Outcome(NOT_TESTABLE, why) if why and a.size and b.size
                                else _xds_test(a, b, mode, rs, "exposure"),
                                published.EXPOSURE,
                                phrase=f"{mode}'s proxies held {{x}} the config bytes of "
                                       "the sidecars"))
    out += policy_rows(rs, per_mode)
    if not out:
        why = "xds rows present but none comparable between sidecar and ambient modes"
        out = [ClaimRow(B_FANOUT, fan_test, None, "", Outcome(NOT_MEASURED, why),
                        published.FANOUT, primary=True)]
    return out


POLICY_CLAIM = "every sidecar holds every policy (the least exposed sidecar)"


def policy_rows(rs: RunSet, per_mode: dict[str, pd.DataFrame]) -> list[ClaimRow]:
    """(c) in the seed's words, "every sidecar holds every policy": the least exposed
    sidecar's policies against all the mesh's, per repetition (exact counts; Istio scopes
    a sidecar's policies to its workload, pilot/pkg/model/sidecar.go), with the share of
    all policies each role's proxies hold beside it."""
    def share(rows: pd.DataFrame, mode: str) -> pd.DataFrame:
        held = _held(rows)
        known = held[(held["metric"] == "policies_known") & (held["mode"] == mode)]
        total = held[(held["metric"] == "policies_total") & (held["mode"] == mode)]
        return known.assign(total=total.set_index(["repetition", "entity"])["value"]
                            .reindex(list(zip(known["repetition"], known["entity"]))).values)

    side = share(per_mode["sidecar"], "sidecar")
    if side.empty or not (side["total"] > 0).any():
        return []
    least = side.groupby("repetition")["value"].min()
    total = side.groupby("repetition")["total"].max()
    roles = []
    for mode in ("sidecar", "ambient", "waypoint"):
        s = share(per_mode[mode], mode) if mode != "sidecar" else side
        if s.empty:
            continue
        for role, g in s.groupby("role"):
            lo, hi = g["value"].min(), g["value"].max()
            n = g["total"].max()
            roles.append(f"{mode} {role}s {lo:.0f}" + (f"–{hi:.0f}" if hi != lo else "")
                         + f" of {n:.0f}")
    measured = "; ".join(roles) + " policies"
    why = preconditions.policies(preconditions.setup_of(rs.run_for("sidecar")))
    if why:
        verdict = Outcome(NOT_TESTABLE, why)
    elif (least >= total).all():
        verdict = Outcome(SUPPORTED, "the least exposed sidecar held every policy in every "
                          "repetition", test="exact comparison of counts")
    else:
        verdict = Outcome(NOT_SUPPORTED, f"the least exposed sidecar held "
                          f"{least.min():.0f} of {total.max():.0f} policies",
                          test="exact comparison of counts")
    return [ClaimRow(C_EXPOSURE, POLICY_CLAIM, None, measured, verdict, published.EXPOSURE,
                     primary=True)]


def _as_set(src: RunSet | Run) -> RunSet:
    return src if isinstance(src, RunSet) else single(src)


def claim_rows(src: RunSet | Run) -> list[ClaimRow]:
    """Every claim's rows, in the order (a), (b), (c), (d)."""
    rs = _as_set(src)
    return resource_rows(rs) + xds_rows(rs) + latency_rows(rs)


COST_PER_POD = ("**cost per pod**: not measured in this run; `make bench-scaling` "
                "measures the data plane's cores per pod, sidecar against ambient")


def answers(rows: Sequence[ClaimRow], across: Mapping[tuple[str, str, int | None], Any] | None = None
            ) -> list[str]:
    """The first screen: one line per primary endpoint, the cost per pod first (the answer
    that matters most for a reader choosing a data plane for many pods); then the primary
    endpoints not testable or not measured here, grouped by reason with the target that
    tests them. Descriptive rows are in the detail table only."""
    primary = [r for r in rows if r.primary]
    slope = [r for r in primary if r.claim == A_RES and "slope" in r.tested]
    rest = [r for r in primary if r not in slope]
    lines = [f"- (a) {slope[0].answer()}" if slope and slope[0].verdict != NOT_MEASURED
             else f"- (a) {COST_PER_POD}"]
    across = across or {}

    def line(r: ClaimRow) -> str:
        more = across.get((r.claim, r.tested, r.level))
        return f"- {r.claim.split()[0]} {r.answer()}" + (f"; {more.text()}" if more else "")

    lines += [line(r) for r in rest if r.verdict not in (NOT_MEASURED, NOT_TESTABLE)]
    for verdict in (NOT_TESTABLE, NOT_MEASURED):
        why: dict[str, list[str]] = {}
        for r in rest:
            if r.verdict == verdict:
                why.setdefault(r.result.reason or "no data", []).append(r.claim.split()[0])
        for reason, claims in why.items():
            lines.append(f"- {', '.join(dict.fromkeys(claims))} **{verdict}**: {reason}")
    return lines


def claims_section(src: RunSet | Run, forest_png: str | None = None) -> list[str]:
    """The answers, then the claims table with its reading rules and caveats, as
    Markdown lines."""
    rs = _as_set(src)
    rows = claim_rows(rs)
    sources = {LATENCY_SOURCES.get(r.latency_source(), r.latency_source())
               for r in rs.runs}
    latency_from = "; ".join(sorted(sources))
    from analysis.across import across, earlier_runs

    lines = ["## Claims", "", "### Answers", ""]
    earlier, unreadable = earlier_runs(rs.primary) if not rs.combined else ([], [])
    over = across(rows, earlier, rs.primary.run_id) if earlier else {}
    lines += answers(rows, over) + [""]
    if forest_png:
        lines += [f"![Primary claims: ratio mode / sidecar with 95 % CI, per-repetition ratios, "
                  f"the effect floor and the margin, published ratios]({forest_png})", ""]
    if over:
        lines += [(f"\"In this run\": the CI holds the noise between this run's repetitions. "
                   f"\"Across N compatible runs\": this run and the {len(earlier)} earlier "
                   "green runs beside it with the same scenario, backend, versions, CPU and "
                   "kernel, one ratio per run, a t interval over the runs: it includes the "
                   "shift between runs (analysis.across).")
                  + (f" Not read: {'; '.join(unreadable)}." if unreadable else ""), ""]
    from analysis.istiod import report_lines

    lines += report_lines(rs.primary.run_dir.parent)
    lines += ["### Detail", "",
              ("Each claim of ambient mode, tested at the load level closest to the "
               f"published {REFERENCE_RPS} rps (other levels in the last column). One "
               "primary endpoint per claim and mode gives the answer above; the "
               "descriptive rows are shown with their intervals but answer nothing on "
               "their own. The unit of replication is one repetition: an interleaved block "
               "in which every mode runs once in a shuffled order. Latency is read from "
               "the source "
               f"\"{', '.join(sorted({r.latency_source() for r in rs.runs}))}\" "
               f"({latency_from})."), "",
              ("Tests (analysis.claimtests): \"less than\" is a superiority test on the "
               "95 % CI of the ratio (Student t on per-repetition log ratios, n - 1 "
               "degrees of freedom, paired by repetition; Welch's t when the modes come "
               "from different runs): supported when the whole CI lies below "
               f"{1 - MIN_EFFECT:.2f} (the {100 * MIN_EFFECT:g} % effect floor applies to the "
               "interval, not the point), no meaningful difference when it lies within "
               f"±{100 * MIN_EFFECT:g} %, not supported when it lies at or above 1. Latency "
               "is compared directly (A - B < S - B exactly when A < S; the overheads and "
               "their ratio are shown beside it). \"No more than\" is non-inferiority with "
               f"a margin of {100 * NI_MARGIN:g} %: on the ratio's CI for costs; for "
               f"overheads, on the linear contrast (W - B) - {1 + NI_MARGIN:g} (S - B), with "
               "Fieller's interval for the ratio. Each verdict is about this run: its "
               "interval covers the repetition-to-repetition noise, not a shift of the "
               "whole run (docs/noise.md: two quiet runs of one commit agree within 10 % on "
               "p50 overheads about half of the time), and "
               "the verdict cell states the test's power at its n (the smallest effect it "
               "detects 80 % of the time). Counts that do not vary (proxies reached, bytes "
               "pushed, config held) are compared exactly. Anything else is inconclusive, "
               "with the reason; not measured = no data for it in the runs drawn from; not "
               "testable here = the runs lack what the claim needs (more pods than nodes, "
               "two policies on different workloads, a real ztunnel, a waypoint: "
               "analysis.preconditions), so their topology or a stand-in would decide the "
               "verdict, and the reason names the target that tests it."), ""]
    lines += table(HEADERS, [r.cells() for r in rows])
    lines += ["", ("Published figures come from other machines and setups (given with each, "
                   "with their source and what could be verified: analysis.published); they "
                   "are anchors to explain differences against, and the harness is never "
                   "tuned toward them.")]
    if any(r.emulated for r in rs.runs):
        lines += ["", ("Local backend: these are Envoy-in-namespaces numbers (the ztunnel role "
                       "is an Envoy, not the Rust ztunnel; one host, no Kubernetes). They show "
                       "the architectures' costs; compare the direction of a ratio with the "
                       "published one, not its size.")]
    where: set[tuple[int, str]] = set()
    for run in rs.runs:
        sat = run.client[(run.client["metric"] == "saturated") & (run.client["value"] >= 1)]
        where |= {(int(lv), str(m)) for m, lv in zip(sat["mode"], sat["level"])
                  if rs.run_for(str(m)) is run or m == "baseline"}
    if where:
        lines += ["", ("**Saturated cells** (achieved < 95 % of target or the load generator "
                       "above 80 % CPU): " + ", ".join(f"{m} at {lv} rps"
                                                      for lv, m in sorted(where))
                       + ". Ratios at those levels describe the load generator's limits as "
                       "much as the mesh; read their verdicts with that in mind.")]
    return lines + [""]
