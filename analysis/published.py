"""Published figures the claims table sets beside ours, each with its provenance.

Every anchor names its source (URL and, where read there, the repository path), the
Istio release, the setup as the source states it (rps, connections, payload, load
generator, hardware), what the figure covers (one proxy, a path of proxies, a whole
mesh), when it was read, and what of it was verified against the primary source. A
figure not read in its primary source says so ("unverified") and why it is still shown.

They are anchors to compare against and explain, never targets to tune toward. Where a
row shows a ratio derived from per-proxy figures (e.g. two ztunnels over two sidecars),
the arithmetic is ours and says so. Ratios are formed only within one release's page:
across releases istio.io re-ran on other hardware (istio/istio.io#14698, 1.19's p90
went from 1.31 to 0.175 ms on CNCF hardware) and changed the load generator (Nighthawk
charts in 1.21, Fortio in 1.22: istio/istio.io#15196).

Checked on ACCESSED with the project's search tool over stored copies of the pages and
repositories named (not the live web).
"""

from __future__ import annotations

from dataclasses import dataclass

ACCESSED = "2026-11-29"
ISTIO_PAGE = "https://istio.io/{release}/docs/ops/deployment/performance-and-scalability/"
# which archive holds which release's text: the stored copy of /latest/ shows 1.24, the
# v1.23 archive shows 1.22; 1.20's text was read in the page source (PR #14228)
ISTIO_LATEST = ISTIO_PAGE.format(release="latest") + " (stored copy: 'Istio 1.24')"
ISTIO_REPO_PATH = ("istio/istio.io content/en/docs/ops/deployment/performance-and-scalability/"
                   "index.md")


@dataclass(frozen=True)
class Anchor:
    """One published figure (or set of figures) and where it comes from."""

    name: str
    url: str
    release: str
    setup: str
    covers: str
    figures: str
    verified: str  # what was checked against the primary source; "unverified: ..." if not
    repo_path: str = ""
    accessed: str = ACCESSED

    @property
    def is_verified(self) -> bool:
        return not self.verified.startswith("unverified")

    @property
    def note(self) -> int:
        """The anchor's number in the report's list of sources (its provenance is given
        there once)."""
        return ANCHORS.index(self) + 1

    def cite(self, figures: str | None = None) -> str:
        """One table cell: source, release, the figures and the note that holds the
        provenance, e.g. "istio.io performance page, Istio 1.22: two ztunnels add ~0.20 ms
        p99 [3]"; "UNVERIFIED" when not read in the source."""
        check = "" if self.is_verified else ", UNVERIFIED"
        return (f"{self.name.split(' (')[0]}, {self.release}: {figures or self.figures} "
                f"[{self.note}{check}]")

    def provenance(self) -> str:
        """The full record, for the report's list of sources."""
        where = self.url + (f"; repository: {self.repo_path}" if self.repo_path else "")
        return (f"[{self.note}] {self.name}, {self.release}: {self.figures}. Covers: {self.covers}. "
                f"Setup: {self.setup}. Source: {where}. Read {self.accessed}. "
                f"Checked: {self.verified}.")


ISTIO_124_RESOURCES = Anchor(
    name="istio.io performance page", release="Istio 1.24",
    url=ISTIO_LATEST, repo_path=ISTIO_REPO_PATH + " (PR istio/istio.io#15727)",
    setup="1000 http requests per second of 1 KB each; sidecar and waypoint with 2 worker "
          "threads; no machine, connection count or load generator stated for these figures",
    covers="one proxy of each kind",
    figures="sidecar ~0.20 vCPU, ~60 MB; waypoint ~0.25 vCPU, ~60 MB; ztunnel ~0.06 vCPU, "
            "~12 MB",
    verified="figures and setup read in the page's text (section 'Sidecar and ztunnel "
             "resource usage')")

ISTIO_124_LATENCY = Anchor(
    name="istio.io performance page", release="Istio 1.24",
    url=ISTIO_LATEST, repo_path=ISTIO_REPO_PATH,
    setup="Istio benchmarks (Fortio charts istio-1.24.0-fortio-90/99.png), http/1.1, 1 KB, "
          "500-1500 rps, 4 client connections, 2 proxy workers, mTLS; 5 bare-metal Equinix "
          "M3 Large machines, Flannel CNI, CNCF Community Infrastructure Lab",
    covers="a client-server path: no mesh, ambient (2 ztunnels), ambient L4+L7 (2 ztunnels "
           "+ waypoint), sidecar (2 sidecars), from the same runs",
    figures="P90 and P99 in charts only; the page states no number",
    verified="setup read in the page's text; the chart values could not be read here")

ISTIO_122_LATENCY = Anchor(
    name="istio.io performance page", release="Istio 1.22",
    url=ISTIO_PAGE.format(release="v1.23"), repo_path=ISTIO_REPO_PATH + " (PR istio/istio.io#15196)",
    setup="Istio benchmarks (Fortio), http/1.1, 1 kB, 1000 rps, 1-64 client connections, 2 "
          "proxy workers, mTLS, CNCF Community Infrastructure Lab",
    covers="a client-server path through two ztunnels; sidecar, no mesh and waypoint in "
           "charts only",
    figures="two ztunnels add ~0.17 ms p90 and ~0.20 ms p99 over no mesh",
    verified="the ztunnel figures read in the page's text (the 1.22 page is archived as "
             "v1.23). Caveat: istio/istio.io#15288 says 1.22's sidecar chart was measured "
             "with the ambient profile (HBONE on); a rerun with the default profile was "
             "asked for, and whether the chart was replaced was not checked")

ISTIO_122_RESOURCES = Anchor(
    name="istio.io performance page", release="Istio 1.22",
    url=ISTIO_PAGE.format(release="v1.23"), repo_path=ISTIO_REPO_PATH,
    setup="no rate, payload or machine stated beyond 'per 1000 requests per second'",
    covers="one sidecar",
    figures="a sidecar consumes ~0.5 vCPU per 1000 rps and ~50 MB in a large namespace "
            "with namespace isolation",
    verified="read in the page's text")

ISTIO_120_LATENCY = Anchor(
    name="istio.io performance page", release="Istio 1.20",
    url=ISTIO_PAGE.format(release="v1.20"), repo_path=ISTIO_REPO_PATH + " (PR istio/istio.io#14228)",
    setup="Istio benchmarks (Fortio), http/1.1, 1 kB, 1000 rps, 2-64 client connections, 2 "
          "proxy workers, mTLS; the page states no hardware (istio/istio.io#14585: CNCF "
          "bare metal)",
    covers="a client-server path through two sidecars",
    figures="two sidecars add ~0.228 ms p90 and ~0.298 ms p99 over no mesh",
    verified="read in the page source's text (section 'Latency for Istio 1.20'); the "
             "archived URL was not opened")

ARXIV_2411_02267 = Anchor(
    name="arXiv 2411.02267 (Bremler-Barr et al., 'Performance Comparison of Service Mesh "
         "Frameworks: the MTLS Test Case')",
    url="https://arxiv.org/abs/2411.02267", release="Istio version not read",
    setup="mTLS test case, service-to-service in a Kubernetes cluster on GCP, Fortio "
          "(as secondary summaries describe it)",
    covers="latency of a path, percentile not known",
    figures="latency +8 % ambient vs +166 % sidecar over no mesh",
    verified="unverified: only the abstract and secondary summaries could be read here, "
             "not the paper's own table; the figures are shown as reported, not checked")

LIVEWYER_2024 = Anchor(
    name="LiveWyer 2024 (livewyer-ops/poc-servicemesh2024)",
    url="https://github.com/livewyer-ops/poc-servicemesh2024/blob/main/docs/test-report-istio.md",
    repo_path="livewyer-ops/poc-servicemesh2024 docs/test-report-istio.md and docs/test-report.md",
    release="Istio 1.22.0 (sidecar and ambient)",
    setup="AWS EKS (Kubernetes 1.28.7), c5.xlarge nodes for the resource tests; bookinfo "
          "with 1, 2, 4, 6, 8 productpage replicas; oha closed loop with --disable-keepalive "
          "(a new connection per request), 32/64/128 connections, 30,000 requests per test",
    covers="sidecar: the sum of ALL bookinfo sidecars (6 at 1 replica, 13 at 8: details, "
           "ratings, reviews v1-v3 and the productpage replicas); ambient: the one ztunnel "
           "on the test application's node",
    figures="memory: sidecars 226 -> 521 MiB, ztunnel 23 -> 35 MiB for 1 -> 8 productpage "
            "replicas; CPU: sidecars 0.53 -> 0.96, ztunnel 0.4 -> 0.6 (unit as in the "
            "report, unstated)",
    verified="figures and setup read in the repository's reports")

LINKERD_2025 = Anchor(
    name="Linkerd 2025 benchmark", url="not recorded", release="Istio version not read",
    setup="GKE 3 x e2-standard-8, wrk2, 100 connections (as the project's seed notes "
          "record it; not looked up)",
    covers="a path", figures="p99 at 200 rps: sidecar Istio 19.9 ms above baseline",
    verified="unverified: not looked up in this session; not used by any claim")

ISTIO_SIDECAR_SCOPE = Anchor(
    name="istio.io Sidecar resource reference", release="all releases read (1.2-1.22)",
    url="https://istio.io/v1.22/docs/reference/config/networking/sidecar/",
    setup="design statement, not a measurement",
    covers="every sidecar",
    figures="by default Istio programs every sidecar with the configuration to reach every "
            "workload instance in the mesh",
    verified="read in the reference page's text")

ANCHORS = (ISTIO_124_RESOURCES, ISTIO_124_LATENCY, ISTIO_122_LATENCY, ISTIO_122_RESOURCES,
           ISTIO_120_LATENCY, ARXIV_2411_02267, LIVEWYER_2024, LINKERD_2025,
           ISTIO_SIDECAR_SCOPE)

# per proxy at 1000 rps (istio.io 1.24)
VCPU = {"sidecar": 0.20, "ztunnel": 0.06, "waypoint": 0.25}
MB = {"sidecar": 60.0, "ztunnel": 12.0, "waypoint": 60.0}
# the proxies of each mode on a client -> server path across two nodes
PATH_PROXIES = {"sidecar": {"sidecar": 2}, "ambient": {"ztunnel": 2},
                "waypoint": {"ztunnel": 2, "waypoint": 1}}


def path_total(mode: str, per_proxy: dict[str, float]) -> float:
    """Sum of a per-proxy figure over the proxies a mode puts on the path."""
    return sum(n * per_proxy[role] for role, n in PATH_PROXIES[mode].items())


def resources_ratio(mode: str, metric: str) -> float:
    """The mode / sidecar ratio istio.io 1.24's per-proxy figures imply for the proxies on
    one path (our arithmetic, one release): the forest plot's published mark."""
    per = VCPU if metric == "cpu" else MB
    return path_total(mode, per) / path_total("sidecar", per)


def resources(mode: str, metric: str) -> str:
    """istio.io 1.24's per-proxy figures and the mode / sidecar ratio they imply (one
    release, one page). `metric` is "cpu" or "memory"."""
    per, unit, fmt = (VCPU, "vCPU", ".2f") if metric == "cpu" else (MB, "MB", ".0f")
    roles = ["sidecar", *PATH_PROXIES[mode]]
    each = ", ".join(f"{r} ~{per[r]:{fmt}} {unit}" for r in dict.fromkeys(roles))
    ratio = path_total(mode, per) / path_total("sidecar", per)
    proxies = " + ".join(f"{n} {r}{'s' if n > 1 else ''}"
                         for r, n in PATH_PROXIES[mode].items())
    if len(PATH_PROXIES[mode]) > 1:
        proxies = f"({proxies})"
    return ISTIO_124_RESOURCES.cite(f"{each} per proxy; {proxies} / 2 sidecars ≈ {ratio:.2f} "
                                    "(our arithmetic, same release)")


LATENCY_P50 = ("no published p50 overhead. " + ARXIV_2411_02267.cite(
    "latency +8 % ambient vs +166 % sidecar (percentile not stated)"))
LATENCY_P99 = ("no same-release ratio in text: " + ISTIO_124_LATENCY.cite(
    "no mesh, ambient, waypoint and sidecar charted from the same runs, values in charts "
    "only") + "; " + ISTIO_122_LATENCY.cite("two ztunnels add ~0.20 ms p99 (~0.17 ms p90); "
                                            "sidecar in charts only") + ". "
               + ISTIO_120_LATENCY.cite("two sidecars add ~0.298 ms p99") + " is another "
               "release, hardware and generator: not divided into 1.22's figure")
WAYPOINT_LATENCY = ("none in text: " + ISTIO_124_LATENCY.cite(
    "ambient L4+L7 (waypoint) and sidecar charted from the same runs, values in charts only"))
SCALING = LIVEWYER_2024.cite()
FANOUT = ("no published figure. By design: " + ISTIO_SIDECAR_SCOPE.cite()
          + "; ztunnels receive workloads and authorization, a waypoint the L7 config of what "
            "it serves (Istio's documented scoping, followed by our control plane)")
EXPOSURE = ("no published figure. By design: " + ISTIO_SIDECAR_SCOPE.cite()
            + "; a ztunnel holds its L4 authorization set, a waypoint its namespace's L7 "
              "policy")


def sources_section() -> list[str]:
    """Every anchor's full provenance, as Markdown lines."""
    lines = ["## Published figures: sources", "",
             ("What each published figure in the claims table is, where it comes from and "
              "what of it was checked against its primary source; the table cites them by "
              "number. UNVERIFIED figures are shown as reported by others and carry no "
              "weight in any verdict."), ""]
    return lines + [f"- {a.provenance()}" for a in ANCHORS] + [""]
