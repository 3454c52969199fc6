"""Published figures the claims table sets beside ours, with their setups.

Copied from docs/istio.md ("Published figures"). They are anchors to compare against and
explain, never targets to tune toward. Where a row shows a ratio derived from per-proxy
figures (e.g. two ztunnels over two sidecars), the arithmetic is ours and says so.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Source:
    """Who published a figure, and on what setup."""

    name: str
    setup: str

    def cite(self, figures: str) -> str:
        return f"{self.name} ({self.setup}): {figures}"


ISTIO_124 = Source("istio.io performance page, Istio 1.24",
                   "1 KB http/1.1, 1000 rps, mTLS, 2 workers")
ISTIO_122 = Source("istio.io, Istio 1.22", "istio.io performance page")
ISTIO_120 = Source("istio.io, Istio 1.20", "istio.io performance page")
ARXIV = Source("arXiv 2411.02267", "mTLS test case, GKE, Fortio; secondary summaries")
LIVEWYER = Source("LiveWyer 2024", "EKS, Istio 1.22, bookinfo")

# per proxy at 1000 rps (istio.io 1.24)
VCPU = {"sidecar": 0.20, "ztunnel": 0.06, "waypoint": 0.25}
MB = {"sidecar": 60.0, "ztunnel": 12.0, "waypoint": 60.0}
# the proxies of each mode on a client -> server path across two nodes
PATH_PROXIES = {"sidecar": {"sidecar": 2}, "ambient": {"ztunnel": 2},
                "waypoint": {"ztunnel": 2, "waypoint": 1}}


def path_total(mode: str, per_proxy: dict[str, float]) -> float:
    """Sum of a per-proxy figure over the proxies a mode puts on the path."""
    return sum(n * per_proxy[role] for role, n in PATH_PROXIES[mode].items())


def resources(mode: str, metric: str) -> str:
    """istio.io 1.24's per-proxy figures and the mode / sidecar ratio they imply.
    `metric` is "cpu" or "memory"."""
    per, unit, fmt = (VCPU, "vCPU", ".2f") if metric == "cpu" else (MB, "MB", ".0f")
    roles = ["sidecar", *PATH_PROXIES[mode]]
    each = ", ".join(f"{r} ~{per[r]:{fmt}} {unit}" for r in dict.fromkeys(roles))
    ratio = path_total(mode, per) / path_total("sidecar", per)
    proxies = " + ".join(f"{n} {r}{'s' if n > 1 else ''}"
                         for r, n in PATH_PROXIES[mode].items())
    if len(PATH_PROXIES[mode]) > 1:
        proxies = f"({proxies})"
    return ISTIO_124.cite(f"{each} per proxy; {proxies} / 2 sidecars ≈ {ratio:.2f} "
                          "(our arithmetic)")


LATENCY_P50 = (f"no published p50 overhead. {ARXIV.cite('latency +8 % ambient vs +166 % sidecar')}"
               " (percentile not stated)")
LATENCY_P99 = (f"{ISTIO_122.name}: two ztunnels add ~0.20 ms p99 (~0.17 ms p90); "
               f"{ISTIO_120.name}: two sidecars add 0.298 ms p99 (0.228 ms p90) "
               f"→ ≈ {0.20 / 0.298:.2f} at p99, ≈ {0.17 / 0.228:.2f} at p90 "
               "(different releases; our arithmetic)")
WAYPOINT_LATENCY = f"none: {ISTIO_124.name} shows waypoint latency in charts only"
SCALING = LIVEWYER.cite("mesh memory 226 → 521 MiB for 1 → 8 replicas with sidecars "
                        "(≈ 42 MiB per replica), ambient 23 → 35 MiB (≈ 1.7 MiB per replica)")
FANOUT = ("no published figure; by design (istio.io docs) a sidecar without a Sidecar "
          "resource receives every service, ztunnels receive workloads and authorization, "
          "a waypoint the L7 config of what it serves")
EXPOSURE = ("no published figure; by design every sidecar without a Sidecar resource holds "
            "the config of every service and policy, a ztunnel its L4 authorization set, "
            "a waypoint its namespace's L7 policy")
