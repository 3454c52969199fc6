"""The claims table on runs with known distributions, and the report's other outputs
(claims first in report.md, a self-contained report.html, smp.json)."""

from __future__ import annotations

import datetime as dt
import json
from html.parser import HTMLParser
from pathlib import Path

import make_fixture as fx  # tests/fixtures, on sys.path via tests/conftest.py
import numpy as np
import pytest

from analysis import claims as cl
from analysis.report import write_outputs, write_report
from analysis.rundata import load_run
from analysis.stats import fit_slope, significance, summarize


@pytest.fixture(scope="module")
def series(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """5 repetitions per mode; ambient clearly cheaper and faster than sidecar, waypoint
    clearly slower; its report written once."""
    run_dir = fx.make_series_run(tmp_path_factory.mktemp("series"))
    write_report(run_dir)
    return run_dir


@pytest.fixture(scope="module")
def rows(series: Path) -> list[cl.ClaimRow]:
    return cl.claim_rows(load_run(series))


def _row(rows: list[cl.ClaimRow], claim: str, *words: str) -> cl.ClaimRow:
    found = [r for r in rows if r.claim == claim and all(w in r.tested for w in words)]
    assert len(found) == 1, [r.tested for r in rows]
    return found[0]


# --- statistics on the series fixture ----------------------------------------------------

def test_series_cells_scatter_around_their_base(series: Path) -> None:
    s = summarize(load_run(series).client, "latency_p50").set_index(["mode", "level"])
    for (mode, level), r in s.iterrows():
        assert r["n"] == 5
        base = fx.series_p50(mode, level)
        assert base * (1 - fx.SERIES_JITTER) <= r["min"] <= r["median"] <= r["max"] \
            <= base * (1 + fx.SERIES_JITTER)
        assert r["cv"] < 0.02 and not r["cv_warning"]


def test_fit_slope_of_a_known_line_and_its_limits() -> None:
    fit = fit_slope([1, 2, 3, 1, 2, 3], [3.0, 5.0, 7.0, 3.0, 5.0, 7.0])
    assert (fit.slope, fit.lo, fit.hi, fit.intercept) == pytest.approx((2, 2, 2, 1))
    noisy = fit_slope([1, 4, 8, 1, 4, 8], [1.0, 4.5, 7.5, 1.2, 3.9, 8.3])
    assert noisy.lo < noisy.slope < noisy.hi and noisy.n == 6 and noisy.x_values == 3
    with pytest.raises(ValueError, match="distinct x"):
        fit_slope([2, 2, 2], [1.0, 2.0, 3.0])


def test_significance_takes_a_caller_threshold() -> None:
    a, b = [104.0, 104.1, 104.2, 104.3, 104.4], [100.0, 100.1, 100.2, 100.3, 100.4]
    assert significance(a, b).verdict == "not significant"  # 4 % < 5 %
    assert significance(a, b, min_effect=0.03).verdict == "significant"


# --- claims table rows ----------------------------------------------------------------

def test_reference_level_is_closest_to_the_published_1000_rps() -> None:
    assert cl.reference_level([200, 500]) == 500
    assert cl.reference_level([500, 1500]) == 1500  # a tie goes to the higher level
    assert cl.reference_level([100, 1000, 5000]) == 1000
    assert cl.reference_level([]) is None


# --- claims table rows on the series fixture -----------------------------------------------

def test_claim_rows_in_order(rows: list[cl.ClaimRow]) -> None:
    assert [r.claim for r in rows] == [cl.A_RES] * 5 + [cl.B_FANOUT, cl.C_EXPOSURE] \
        + [cl.D_LATENCY] * 4


def test_resource_claims(rows: list[cl.ClaimRow]) -> None:
    cpu = _row(rows, cl.A_RES, "CPU", "ambient")
    assert (cpu.level, cpu.verdict) == (1000, "supported")
    assert cpu.result.ratio is not None
    assert cpu.result.ratio.ratio == pytest.approx(0.04 / 0.10, rel=0.05)
    assert cpu.result.ratio.hi < 1
    assert "ambient 0.4" in cpu.measured and "sidecar 1.0" in cpu.measured
    assert cpu.others.startswith("100 rps: 0.") and cpu.others.endswith("supported")
    # the provenance once, as a numbered note; the cell names source, release, figures
    assert cpu.published.startswith("istio.io performance page, Istio 1.24: ")
    assert cpu.published.endswith(f"[{cl.published.ISTIO_124_RESOURCES.note}]")
    assert "sidecar ~0.20 vCPU, ztunnel ~0.06 vCPU" in cpu.published
    mem = _row(rows, cl.A_RES, "memory", "ambient")
    assert mem.verdict == "supported" and "MiB PSS" in mem.measured
    assert "sidecar ~60 MB, ztunnel ~12 MB" in mem.published
    wp_mem = _row(rows, cl.A_RES, "memory", "waypoint")
    assert wp_mem.verdict == "not supported"  # 46 vs 40 MiB
    assert "waypoint ~60 MB" in wp_mem.published
    assert _row(rows, cl.A_RES, "CPU", "waypoint").verdict == "supported"  # 0.09 vs 0.10


def test_scaling_claim_needs_a_sweep(rows: list[cl.ClaimRow]) -> None:
    slope = _row(rows, cl.A_RES, "grows with pods")
    assert slope.verdict == "not measured"
    assert "needs a pod-count sweep (make bench-scaling)" in slope.result.text()
    assert slope.published.startswith("LiveWyer 2024, Istio 1.22.0")


def test_fanout_and_exposure_are_not_invented(rows: list[cl.ClaimRow]) -> None:
    for claim in (cl.B_FANOUT, cl.C_EXPOSURE):
        row = next(r for r in rows if r.claim == claim)
        assert row.verdict == "not measured"
        assert row.result.text() == cl.FANOUT_MISSING
        assert cl.FANOUT_MISSING.startswith("not measured in the runs drawn from")
        assert row.result.ratio is None and row.measured == ""


def test_latency_claims(rows: list[cl.ClaimRow]) -> None:
    for p in ("p50", "p99"):
        amb = _row(rows, cl.D_LATENCY, p, "ztunnels")
        # superiority on the latencies themselves (A - B < S - B exactly when A < S)
        assert amb.tested.startswith(f"{p} latency") and amb.primary == (p == "p50")
        assert (amb.level, amb.verdict) == (1000, "supported")
        assert amb.result.ratio is not None
        assert amb.result.ratio.ratio == pytest.approx(600 / 900, abs=0.03)
        assert amb.result.ratio.hi < 1 and "t on log ratios" in amb.result.test
        # the overheads and their ratio (Fieller's) are shown beside it
        assert "ms over baseline" in amb.measured and "overhead ratio 0.2" in amb.measured
        assert "100 rps:" in amb.others
        way = _row(rows, cl.D_LATENCY, p, "waypoint")
        assert way.verdict == "not supported" and "t on mean(a) - 1.1 x mean(b)" in way.result.test
        assert way.result.ratio is not None and way.result.ratio.lo > 1
        assert way.result.ratio.ratio == pytest.approx(500 / 400, abs=0.1)
        assert "charts only" in way.published
    p99 = _row(rows, cl.D_LATENCY, "p99", "ztunnels")
    assert "two ztunnels add ~0.20 ms p99" in p99.published
    assert "two sidecars add ~0.298 ms p99" in p99.published
    assert "not divided into 1.22's figure" in p99.published and "≈" not in p99.published


def test_three_repetitions_reach_verdicts(tmp_path: Path) -> None:
    """The fixture run has 3 repetitions with consistent effects: the paired t test on log
    ratios resolves them (the old Mann-Whitney rule could not reach p < 0.01 at 3 vs 3)."""
    rows = cl.claim_rows(load_run(fx.make_run(tmp_path)))
    amb = _row(rows, cl.D_LATENCY, "p50", "ztunnels")
    # overheads at 1000 rps: ambient 80/80/80 us, sidecar 350/360/340 us; the test is on the
    # latencies themselves
    assert amb.verdict == "supported"
    assert "paired by repetition, n=3" in amb.result.test
    assert amb.result.ratio is not None and amb.result.ratio.hi < 1
    cpu = _row(rows, cl.A_RES, "CPU", "ambient")
    assert cpu.verdict == "supported" and cpu.result.n_a == 3


def test_a_run_without_sidecar_says_what_is_missing(tmp_path: Path) -> None:
    rows = cl.claim_rows(load_run(fx.make_series_run(tmp_path, modes=("baseline", "ambient"),
                                                     hdr=False)))
    assert all(r.verdict == "not measured" for r in rows)
    cpu = _row(rows, cl.A_RES, "CPU", "ambient")
    assert cpu.measured == "ambient 0.400 cores (sidecar not measured)"
    assert cpu.result.text() == "not measured (no sidecar data-plane rows in the runs drawn from)"
    p50 = _row(rows, cl.D_LATENCY, "p50", "ztunnels")
    assert p50.tested.startswith("p50 latency")
    assert p50.measured.startswith("ambient +0.1") and "(sidecar not measured)" in p50.measured
    way = _row(rows, cl.D_LATENCY, "p50", "waypoint")
    assert (way.measured, way.result.reason) == (
        "", "no waypoint or sidecar latency in the runs drawn from")


def test_scaling_claim_from_a_pod_sweep(tmp_path: Path) -> None:
    rows = cl.claim_rows(load_run(fx.make_series_run(tmp_path, pods=(1, 4, 8), reps=(0, 1, 2),
                                                     hdr=False)))
    cores, pss = [r for r in rows if "grows with pods" in r.tested]
    assert (cores.verdict, pss.verdict) == ("supported", "supported")
    assert "sidecar b = 0.5" in cores.measured  # 0.05 cores per pod per 100 rps, at 1000 rps
    assert "sidecar b = 20" in pss.measured and "ambient b = 0.5" in pss.measured
    assert cores.others == "100 rps: supported"
    # the one-size rows use the largest pod count
    assert "at 8 pods" in _row(rows, cl.A_RES, "CPU", "ambient").tested


def test_scaling_claim_from_the_sweep_a_run_belongs_to(tmp_path: Path) -> None:
    """`meshbench sweep` writes one run per size beside sweep.json (analysis.scaling)."""
    sweep = tmp_path / "20250101T000000Z-scaling-sweep-1"
    runs = []
    for i, size in enumerate((1, 4, 8), start=1):
        run_id = f"{i:02d}-p{size}"
        fx.make_series_run(sweep, run_id=run_id, reps=(0, 1), seed=i, hdr=False,
                           cost_scale={"sidecar": float(size)},
                           manifest_updates={"sweep": {"id": sweep.name,
                                                       "pods_per_service": size}})
        runs.append({"pods_per_service": size, "dir": run_id, "exit": 0})
    (sweep / "sweep.json").write_text(json.dumps({"scenario": "series", "scenario_hash": "h",
                                                  "sizes": [1, 4, 8], "runs": runs}))
    rows = cl.claim_rows(load_run(sweep / "02-p4"))
    cores, pss = [r for r in rows if "grows with pods" in r.tested]
    assert (cores.verdict, pss.verdict) == ("supported", "supported")
    assert f"(sweep {sweep.name}, 3 sizes)" in cores.measured
    # sidecar's cost is size x base: 1.0 cores per pod at 1000 rps, 40 MiB per pod
    def slope(text: str, mode: str) -> float:
        return float(text.split(f"{mode} b = ")[1].split()[0])

    assert slope(cores.measured, "sidecar") == pytest.approx(1.0, rel=0.03)
    assert slope(pss.measured, "sidecar") == pytest.approx(40.0, rel=0.03)
    assert abs(slope(pss.measured, "ambient")) < 0.5
    # a run outside any sweep still says it needs one
    alone = cl.claim_rows(load_run(fx.make_series_run(tmp_path / "alone", hdr=False)))
    assert _row(alone, cl.A_RES, "grows with pods").verdict == "not measured"


def test_xds_rows_without_a_comparable_pair_are_not_judged(tmp_path: Path) -> None:
    from bench.store import Cell, RunStore, Sample

    run_dir = fx.make_run(tmp_path, finalize=False)
    store = RunStore(run_dir, json.loads((run_dir / "manifest.json").read_text()))
    store.append([Sample.for_cell(Cell(0, "sidecar", 0), source="xds", metric="updates",
                                  unit="count", value=4.0, entity="sidecar-client-0")])
    rows = cl.claim_rows(load_run(run_dir))
    fan = next(r for r in rows if r.claim == cl.B_FANOUT)
    assert fan.verdict == "not measured" and "none comparable" in fan.result.reason


# --- report outputs: claims first, HTML, SMP ------------------------------------------------

def test_report_md_puts_the_claims_table_first(series: Path) -> None:
    text = (series / "report.md").read_text()
    sections = [line for line in text.splitlines() if line.startswith("## ")]
    assert sections[:3] == ["## Claims", "## Runs drawn from", "## Latency"]
    claims = text[text.index("## Claims"):text.index("## Runs drawn from")]
    # the first screen: one answer line per measured row, before the table
    answers = claims[claims.index("### Answers"):claims.index("### Detail")]
    lines = [ln for ln in answers.splitlines() if ln.startswith("- ")]
    # the answer that matters most first: the cost per pod (here: which target answers it)
    assert lines[0] == f"- (a) {cl.COST_PER_POD}"
    assert lines[1].startswith("- (a) **supported** in this run: ambient's data plane used "
                               "0.40x the sidecars' CPU at 1000 rps [95 % CI 0.")
    assert "(superiority, 5 repetitions, 80 % power for a " in lines[1]
    assert lines[1].endswith("% reduction)")
    assert any(ln.startswith("- (d) **not supported** in this run: the waypoint path added "
                             "1.2") and "(non-inferiority, margin 10 %, 5 repetitions" in ln
               for ln in lines)
    # one line per primary endpoint: CPU per mode, p50 per mode; memory and p99 describe
    assert len(lines) == 6 and not any("memory" in ln or "p99" in ln for ln in lines)
    assert lines[-1] == f"- (b), (c) **not measured**: {cl.FANOUT_MISSING}"
    assert ("| (d) latency (primary) | p50 latency: two ztunnels add less than two sidecars "
            "(ambient < sidecar) | 1000 rps |" in claims)
    assert "| (d) latency (descriptive) | p99 latency" in claims
    assert "| supported (CI upper bound 0.6" in claims
    assert "t on log ratios, paired by repetition, n=5); detects a " in claims
    assert "Summary:" not in claims  # no tally inviting a family reading
    assert f"| {cl.FANOUT_MISSING} |" in claims
    assert 'read from the source "load"' in claims
    assert "Local backend: these are Envoy-in-namespaces numbers" in claims
    runs = text[text.index("## Runs drawn from"):text.index("## Latency")]
    assert f"`{fx.SERIES_RUN_ID}` (this run): baseline, sidecar, ambient, waypoint" in runs


class _Resources(HTMLParser):
    """Every tag with its attributes, and the text of <style> blocks."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.styles: list[str] = []
        self.open: list[str] = []  # unclosed elements, innermost last
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_style = tag == "style"
        if tag not in ("img", "meta", "br", "hr"):
            self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        self._in_style = False
        assert self.open and self.open[-1] == tag, (tag, self.open[-5:])
        self.open.pop()

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.styles.append(data)


def _parse(path: Path) -> _Resources:
    p = _Resources()
    p.feed(path.read_text())
    p.close()
    assert p.open == [], p.open  # well nested and closed
    return p


def assert_self_contained(page: Path) -> _Resources:
    p = _parse(page)
    names = {t for t, _ in p.tags}
    assert not names & {"script", "link", "iframe", "object", "embed", "base"}
    for tag, attrs in p.tags:
        for key in ("src", "srcset", "poster", "data", "background", "action"):
            assert key not in attrs or (tag == "img" and key == "src"), (tag, attrs)
        if tag == "img":
            assert (attrs.get("src") or "").startswith("data:image/png;base64,")
        if "href" in attrs:
            assert tag == "a", (tag, attrs)  # a plain text link, never a loaded resource
        assert "url(" not in (attrs.get("style") or "")
    style = "".join(p.styles)
    assert "url(" not in style and "@import" not in style
    return p


def test_html_report_is_self_contained(series: Path) -> None:
    page = series / "report.html"
    p = assert_self_contained(page)
    images = [a for t, a in p.tags if t == "img"]
    # the forest plot, latency.png and resources.png, embedded; the forest plot first,
    # on the first screen: right after the answers, before the detail table
    assert len(images) == 3 and images[0]["alt"].startswith("Primary claims")
    text = page.read_text()
    # URLs appear only as the published figures' sources, in text, never as a resource
    assert "http://" not in text
    assert 'src="http' not in text and "url(http" not in text
    assert "Source: https://istio.io/" in text
    headings = [t for t, _ in p.tags if t in ("h1", "h2")]
    assert headings[:2] == ["h1", "h2"]
    assert text.index("<h2>Claims</h2>") < text.index("<h2>Latency</h2>")
    assert text.index("<h3>Answers</h3>") < text.index("<img") < text.index("<h3>Detail</h3>")
    assert '<td class="v-supported">supported (CI upper bound 0.' in text
    assert f'<td class="v-not-measured">{cl.FANOUT_MISSING}' in text


def test_html_report_of_a_run_without_resources_says_so(tmp_path: Path) -> None:
    files = write_outputs(fx.make_run(tmp_path, resources=False))
    assert [p.name for p in files.all()] == ["claims.png", "latency.png", "smp.json",
                                             "report.html", "report.md"]
    p = assert_self_contained(files.html)
    assert sum(t == "img" for t, _ in p.tags) == 2
    text = files.html.read_text()
    assert "no data-plane resource rows in the runs drawn from" in text
    assert "No resource samples in this run" in text


def test_html_keeps_links_as_text_links() -> None:
    from analysis.html_report import render

    page = render("# t\n\nsee [istio.io](https://istio.io/) and `x<y`\n\n![gone](nope.png)\n"
                  "\n- a\n  - b\n- c\n", Path("/nonexistent"), "t")
    assert '<a href="https://istio.io/">istio.io</a>' in page
    assert "<code>x&lt;y</code>" in page
    assert "figure nope.png (gone) is missing" in page and "<img" not in page
    assert "<ul>\n<li>a\n<ul>\n<li>b\n</li>\n</ul></li>\n<li>c\n</li>\n</ul>" in page


def test_smp_export_fields(series: Path) -> None:
    doc = json.loads((series / "smp.json").read_text())
    assert doc["smp_version"] == "v0.6.1"
    env = doc["environment"]
    assert env["nodes"] == [{"type": fx.CPU_MODEL, "cores": 2}]
    assert [c["labels"]["meshbench.mode"] for c in doc["mesh_configs"]] == list(fx.MODES)
    assert [t["clients"][0]["rps"] for t in doc["test_configs"]] == list(fx.SERIES_LEVELS)
    assert doc["test_configs"][0]["clients"][0] == {
        "internal": True, "load_generator": "locust", "protocol": "PROTOCOL_HTTP", "rps": 100,
        "connections": 4}
    # the run's measurement: 40 cells 20 s apart, 10 s windows, the first at started + 20
    span = (fx.SERIES_STARTED + 20, fx.SERIES_STARTED + 20 * 40 + 10)
    assert {t["duration"] for t in doc["test_configs"]} == {f"{span[1] - span[0]:g}s"}
    meshes = {c["labels"]["meshbench.mode"]: c for c in doc["mesh_configs"]}
    assert "mesh_type" not in meshes["baseline"] and not meshes["baseline"]["mtls_enabled"]
    # the series manifest records no modelled Istio release: no version, and it says so
    assert all(meshes[m]["mesh_type"] == {"type": "ISTIO"} for m in ("sidecar", "ambient"))
    assert meshes["sidecar"]["labels"]["meshbench.mesh_version"].startswith("not recorded")
    assert (meshes["sidecar"]["profile"], meshes["ambient"]["profile"]) == ("minimal", "ambient")
    assert meshes["sidecar"]["sidecar"]["count"] == 2
    assert meshes["sidecar"]["sidecar"]["cpu_mcores"] == pytest.approx(1000, rel=0.03)
    # the traffic carried through the sidecars (achieved 0.99 x 1000), not the target
    assert meshes["sidecar"]["sidecar"]["rps"] == 990
    assert "sidecar" not in meshes["ambient"]  # SMP's sidecar block is for sidecars only
    results = {(r["labels"]["meshbench.mode"], int(r["labels"]["meshbench.level_rps"])): r
               for r in doc["results"]}
    assert len(results) == len(fx.MODES) * len(fx.SERIES_LEVELS)
    run = load_run(series)
    for (mode, level), r in results.items():
        lat = r["latencies_ms"]
        assert list(lat) == ["min", "p50", "p90", "p99", "average", "max"]

        def per_rep(metric: str, mode: str = mode, level: int = level) -> np.ndarray:
            c = run.client
            return c[(c["metric"] == metric) & (c["mode"] == mode)
                     & (c["level"] == level)]["value"].to_numpy()

        p50s, maxes = per_rep("latency_p50"), per_rep("latency_max")
        # one statistic for every field: the median of the repetitions' own values
        assert lat["p50"] == pytest.approx(float(np.median(p50s)) / 1000)
        assert lat["max"] == pytest.approx(float(np.median(maxes)) / 1000)
        assert lat["max"] < maxes.max() / 1000  # not the largest over the repetitions
        # each repetition's HDR minimum is half its p50: their median, not the smallest
        assert lat["min"] == pytest.approx(0.5 * float(np.median(p50s)) / 1000, rel=2e-3)
        assert lat["min"] > 0.5 * p50s.min() / 1000 * (1 + 2e-3)
        assert lat["min"] < lat["p50"] < lat["p90"] < lat["p99"] < lat["max"]
        assert r["actual_qps"] == pytest.approx(0.99 * level)
        assert r["labels"]["meshbench.repetitions"] == "5"
        assert r["labels"]["meshbench.statistic"].startswith("median across repetitions")
        assert r["labels"]["meshbench.under_load_s"] == "50"  # 5 windows of 10 s
        assert r["mesh_config_id"] == f"{fx.SERIES_RUN_ID}/mesh/{mode}"
        # start and end: the same span as the duration
        start = dt.datetime.fromisoformat(r["start_time"])
        end = dt.datetime.fromisoformat(r["end_time"])
        assert (start.timestamp(), end.timestamp()) == pytest.approx(span)
    assert "meshbench.dataplane_cpu_mcores" not in results[("baseline", 100)]["labels"]
    assert results[("ambient", 1000)]["labels"]["meshbench.dataplane_memory"] == "pss"


def test_smp_without_hdr_files_says_min_is_missing(tmp_path: Path) -> None:
    files = write_outputs(fx.make_run(tmp_path))
    doc = json.loads(files.smp.read_text())
    first = doc["results"][0]
    assert "min" not in first["latencies_ms"]
    assert first["labels"]["meshbench.min_latency"] == "not recorded (no HDR files)"
    # the failed cell's absurd partial value stays out of SMP too
    assert all(r["latencies_ms"]["max"] < fx.FAILED_VALUE for r in doc["results"])


def test_fanout_and_exposure_claims_from_xds_rows(tmp_path: Path) -> None:
    from bench.store import Cell, RunStore, Sample

    st = RunStore.create(tmp_path, "x", {"scenario": {"name": "x"}, "backend": "local"})
    for rep in range(1, 6):
        for mode, updated, nbytes, held in (("sidecar", 30, 30_000, 90_000),
                                            ("ambient", 2, 4_000, 20_000)):
            cell = Cell(rep, mode, 0)
            lab = {"experiment": "new_service", "view": "control-plane"}
            st.append([
                Sample.for_cell(cell, source="xds", metric="push_bytes_total", unit="bytes",
                                value=nbytes * (1 + rep / 100), entity="mesh", labels=lab),
                Sample.for_cell(cell, source="xds", metric="proxies_updated", unit="count",
                                value=updated, entity="mesh", labels=lab),
                Sample.for_cell(cell, source="xds", metric="proxies_total", unit="count",
                                value=updated, entity="mesh", labels=lab),
                Sample.for_cell(cell, source="xds", metric="config_bytes", unit="bytes",
                                value=held * (1 + rep / 100), entity=f"{mode}-proxy",
                                labels={"view": "exposure"}),
            ])
    st.finalize()
    rows = {(r.claim, r.tested): r for r in cl.claim_rows(load_run(st.dir))}
    fan = rows[(cl.B_FANOUT, "new_service: bytes pushed, ambient < sidecar")]
    assert fan.verdict == cl.SUPPORTED
    assert "ambient 2/2 proxies" in fan.measured and "sidecar 30/30 proxies" in fan.measured
    exp = rows[(cl.C_EXPOSURE, "config held by all proxies: ambient < sidecar")]
    assert exp.verdict == cl.SUPPORTED and exp.result.ratio is not None
    assert exp.result.ratio.hi < 1


def test_exposure_uses_the_state_after_changes_and_shows_each_roles_range(tmp_path: Path) -> None:
    from analysis.push import exposure_figure, exposure_section
    from bench.store import Cell, RunStore, Sample

    st = RunStore.create(tmp_path, "x", {"scenario": {"name": "x"}, "backend": "local"})
    for rep in range(1, 6):
        for mode, role, proxies, held in (("sidecar", "sidecar", 4, 9_000),
                                          ("ambient", "ztunnel", 2, 3_000)):
            cell = Cell(rep, mode, 0)
            for i in range(proxies):
                name = f"{role}-{i}"
                for state, scale, policies in (("initial", 100, 0), ("after_changes", 1, 1)):
                    lab = {"view": "exposure", "role": role, "state": state}
                    # sidecars: only the first holds the policy; ztunnels: all of them
                    known = policies if role == "ztunnel" or i == 0 else 0
                    st.append([Sample.for_cell(cell, source="xds", metric=m, unit=u, value=v,
                                               entity=name, labels=lab) for m, u, v in (
                        ("config_bytes", "bytes", held * scale * (1 + rep / 100)),
                        ("policies_known", "count", known),
                        ("policies_total", "count", policies),
                        ("services_known", "count", 3), ("services_total", "count", 3))])
    st.finalize()
    run = load_run(st.dir)
    rows = {(r.claim, r.tested): r for r in cl.claim_rows(run)}
    exp = rows[(cl.C_EXPOSURE, "config held by all proxies: ambient < sidecar")]
    # after the changes: 2 x 3,000 vs 4 x 9,000 (the initial rows, 100x larger, are left out)
    assert exp.verdict == cl.SUPPORTED and exp.result.ratio is not None
    assert 0.15 < exp.result.ratio.ratio < 0.2
    text = "\n".join(exposure_section(run))
    assert "| sidecar | sidecar | 4 | 3 / 3 | not measured | 0–1 / 1 |" in text
    assert "| ambient | ztunnel | 2 | 3 / 3 | not measured | 1 / 1 |" in text
    assert exposure_figure(run, tmp_path / "e.png") is not None
    assert (tmp_path / "e.png").stat().st_size > 10_000


def test_identical_push_counts_get_an_exact_verdict(tmp_path: Path) -> None:
    """The same counts in every repetition (e.g. ambient 0/2 proxies, 0 B against sidecar
    2/2 proxies, 3448 B) are compared as numbers, not put through statistics."""
    from bench.store import Cell, RunStore, Sample

    st = RunStore.create(tmp_path, "x", {"scenario": {"name": "x"}, "backend": "local"})
    for rep in range(3):
        for mode, updated, nbytes, held in (("sidecar", 2, 3448, 9000), ("ambient", 0, 0, 3000)):
            cell = Cell(rep, mode, 0)
            lab = {"experiment": "l7_route", "view": "control-plane"}
            st.append([Sample.for_cell(cell, source="xds", metric=m, unit=u, value=v,
                                       entity="mesh", labels=lab)
                       for m, u, v in (("push_bytes_total", "bytes", nbytes),
                                       ("proxies_updated", "count", updated),
                                       ("proxies_total", "count", 2))]
                      + [Sample.for_cell(cell, source="xds", metric="config_bytes",
                                         unit="bytes", value=held, entity=f"{mode}-proxy",
                                         labels={"view": "exposure"})])
    st.finalize()
    rows = {(r.claim, r.tested): r for r in cl.claim_rows(load_run(st.dir))}
    fan = rows[(cl.B_FANOUT, "l7_route: bytes pushed, ambient < sidecar")]
    assert fan.measured == "ambient 0/2 proxies, 0 B; sidecar 2/2 proxies, 3448 B"
    assert fan.verdict == cl.SUPPORTED
    assert fan.result.text() == ("supported (0 < 3448, identical in every repetition "
                                 "(n=3 vs 3); exact comparison of counts)")
    assert fan.ratio_text() == "0.000 (no CI)"
    way = rows[(cl.B_FANOUT, "l7_route: bytes pushed, waypoint < sidecar")]
    assert way.result.text() == "not measured (no waypoint push rows in the runs drawn from)"
    exp = rows[(cl.C_EXPOSURE, "config held by all proxies: ambient < sidecar")]
    assert exp.verdict == cl.SUPPORTED and "exact comparison" in exp.result.test
    assert exp.measured == "ambient 3000 B, sidecar 9000 B"


def test_forest_plot_has_a_row_per_primary_claim(series: Path, tmp_path: Path) -> None:
    from analysis.forest import claims_figure

    rows = cl.claim_rows(load_run(series))
    primary = [r for r in rows if r.primary]
    # paired rows carry their per-repetition ratios, which the plot draws
    cpu = _row(rows, cl.A_RES, "CPU", "ambient")
    assert cpu.primary and len(cpu.result.points) == 5
    assert min(cpu.result.points) <= cpu.result.ratio.ratio <= max(cpu.result.points)
    assert cpu.published_ratio == pytest.approx(0.30)
    out = claims_figure(rows, tmp_path / "claims.png")
    assert out is not None and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert claims_figure([r for r in rows if not r.primary], tmp_path / "none.png") is None
    assert len(primary) == 7 and not (tmp_path / "none.png").exists()
