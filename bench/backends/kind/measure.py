"""What a kube backend measures besides load: proxy processes seen from the host,
istiod's push metrics, the metrics API as the fallback for CPU and memory, proxy counters.

- `discover(kube, namespaces)`: host PIDs of Envoys, ztunnels and istiod, each mapped to
  its pod through the pod UID in its cgroup path (bench.probes.discovery). On a kind host
  this works because kind nodes are containers on the host kernel; on a remote cluster or
  Docker Desktop the host sees nothing and the status says so.
- `ISTIOD_METRICS`, `scrape(text)`: the istiod families to read from its /metrics (15014,
  reached through a kubectl port-forward).
- `pod_usage(kube, namespace)`: CPU cores and memory bytes per container from
  metrics.k8s.io (metrics-server), when the host cannot see the processes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.backends.base import ProcessRef
from bench.backends.kind import versions as v
from bench.k8s import Kube, KubeError

# istiod (port 15014, /metrics). pilot_proxy_convergence_time stops at *send*, not ACK;
# pilot_debounce_time is added so that end-to-end convergence can be estimated.
ISTIOD_METRICS = ("pilot_xds_pushes", "pilot_proxy_convergence_time",
                  "pilot_xds_config_size_bytes", "pilot_debounce_time", "pilot_xds",
                  "pilot_total_xds_rejects")
ISTIOD_PORT = 15014
ENVOY_PROM_PORT = 15090  # sidecar and waypoint Envoys: /stats/prometheus
ZTUNNEL_METRICS_PORT = 15020  # ztunnel: /metrics

BCC_NO_PROCESSES = ("this host cannot see the pods' processes (a remote cluster, or Docker "
                    "Desktop's VM): the BCC probes need the proxies' host PIDs")


def bcc_status(d: Discovery) -> dict[str, Any]:
    """The per-hop probe runs on the kind host against the discovered host PIDs (kind nodes
    share the host kernel); without them, or without BCC, a skip with its reason."""
    if d.status != "ok":
        return {"status": "skipped", "reason": BCC_NO_PROCESSES}
    from bench.probes.hops import probe_status

    status = probe_status()
    proxies = sum(1 for p in d.processes if p.role in ("sidecar", "ztunnel", "waypoint"))
    return {**status, "targets": proxies,
            "note": "host PIDs from /proc and cgroup pod UIDs; Istio's proxies run more worker "
                    "threads than the local backend's Envoys (sidecar 2, ztunnel a tokio pool): "
                    "a request handed between threads is counted unmatched, never guessed"}


@dataclass(frozen=True)
class Sample:
    name: str
    labels: tuple[tuple[str, str], ...]
    value: float

    def key(self) -> str:
        inner = ",".join(f'{k}="{val}"' for k, val in self.labels)
        return f"{self.name}{{{inner}}}" if inner else self.name


_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_prometheus(text: str) -> list[Sample]:
    """Samples of the Prometheus text format (comments and bad lines skipped)."""
    out = []
    for line in text.splitlines():
        m = _LINE.match(line)
        if not m or line.startswith("#"):
            continue
        try:
            value = float(m[4])
        except ValueError:
            continue
        labels = tuple(sorted(_LABEL.findall(m[3] or "")))
        out.append(Sample(m[1], labels, value))
    return out


def scrape(text: str, families: tuple[str, ...] = ISTIOD_METRICS) -> dict[str, float]:
    """"name{labels}" -> value for the samples of the given families (a histogram's
    _bucket, _sum and _count belong to its family)."""
    out = {}
    for s in parse_prometheus(text):
        base = re.sub(r"_(bucket|sum|count|total)$", "", s.name)
        if s.name in families or base in families:
            out[s.key()] = s.value
    return out


def totals(text: str, name: str, **match: str) -> float:
    """Sum of a counter's samples whose labels include `match`."""
    return sum(s.value for s in parse_prometheus(text)
               if s.name == name and all((k, val) in s.labels for k, val in match.items()))


# ---- processes seen from the host -------------------------------------------------------------

@dataclass(frozen=True)
class Discovery:
    processes: tuple[ProcessRef, ...]
    status: str  # "ok", or "skipped"
    reason: str = ""


def _pods_by_uid(kube: Kube, namespaces: list[str]) -> dict[str, Mapping[str, Any]]:
    out: dict[str, Mapping[str, Any]] = {}
    for ns in namespaces:
        for p in kube.list("v1", "Pod", ns):
            out[p["metadata"]["uid"]] = p
    return out


def _node_names(kube: Kube) -> dict[str, str]:
    """Kubernetes node name -> the mesh model's node name where the node is labelled."""
    return {n["metadata"]["name"]: n["metadata"].get("labels", {}).get(v.NODE, n["metadata"]["name"])
            for n in kube.list("v1", "Node")}


def discover(kube: Kube, namespaces: list[str], proc_root: Path = Path("/proc")) -> Discovery:
    """Map host processes to our pods. Never raises for a host that cannot see pods."""
    try:
        from bench.probes import discovery
    except ImportError:
        return Discovery((), "skipped", "TODO: bench/probes/discovery.py is not available, so "
                         "no proxy processes are sampled; resources come from the metrics API")
    found = discovery.discover(proc_root)
    pods = _pods_by_uid(kube, namespaces)
    nodes = _node_names(kube)
    refs = []
    for d in found:
        if d.pod is None or d.pod.pod_uid not in pods:
            continue  # not a pod of ours (another cluster, or the host's own processes)
        pod = pods[d.pod.pod_uid]
        md = pod["metadata"]
        role = d.role
        if role == discovery.ENVOY:
            role = discovery.envoy_role(md.get("labels", {})).value
        node = nodes.get(pod.get("spec", {}).get("nodeName", ""), "")
        entity = f"ztunnel/{node}" if role == "ztunnel" else f"{role}/{md['name']}"
        refs.append(ProcessRef(d.pid, role, entity, md["name"], node, md["namespace"]))
    if not refs:
        return Discovery((), "skipped", "this host cannot see the pods' processes (a remote "
                         "cluster, or Docker Desktop's VM): resources come from the metrics API")
    return Discovery(tuple(sorted(refs, key=lambda r: r.entity)), "ok")


# ---- the metrics API ----------------------------------------------------------------------------

_CPU = {"n": 1e-9, "u": 1e-6, "m": 1e-3, "": 1.0}
_MEM = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 1e3, "M": 1e6, "G": 1e9, "": 1}


def cpu_cores(q: str) -> float:
    """"250m" -> 0.25, "123456n" -> 0.000123456."""
    m = re.fullmatch(r"([0-9.]+)([num]?)", q)
    if not m:
        raise ValueError(f"not a CPU quantity: {q!r}")
    return float(m[1]) * _CPU[m[2]]


def memory_bytes(q: str) -> float:
    m = re.fullmatch(r"([0-9.]+)(Ki|Mi|Gi|Ti|k|M|G|)", q)
    if not m:
        raise ValueError(f"not a memory quantity: {q!r}")
    return float(m[1]) * _MEM[m[2]]


@dataclass(frozen=True)
class Usage:
    namespace: str
    pod: str
    container: str
    cpu_cores: float
    memory_bytes: float
    window_s: float


def pod_usage(kube: Kube, namespace: str) -> list[Usage]:
    """Per-container usage from metrics-server; KubeError(404) when it is not installed."""
    out = []
    for pm in kube.list("metrics.k8s.io/v1beta1", "PodMetrics", namespace):
        window = _seconds(str(pm.get("window", "0s")))
        for c in pm.get("containers", []):
            out.append(Usage(namespace, pm["metadata"]["name"], c["name"],
                             cpu_cores(c["usage"]["cpu"]), memory_bytes(c["usage"]["memory"]),
                             window))
    return out


def _seconds(duration: str) -> float:
    """A Go duration as metrics-server writes it ("10.5s", "1m0s") in seconds; 0 if odd."""
    parts = re.findall(r"([0-9.]+)(h|ms|m|s)", duration)
    scale = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    return sum(float(n) * scale[u] for n, u in parts)


def metrics_api_status(kube: Kube) -> tuple[str, str]:
    """("ok", "") when metrics.k8s.io answers, else ("skipped", why and how to fix)."""
    try:
        kube.list("metrics.k8s.io/v1beta1", "PodMetrics", v.ISTIO_NS)
    except KubeError as e:
        return "skipped", (f"metrics API not served ({e.message}); install metrics-server "
                           "(on kind with --kubelet-insecure-tls) for the fallback")
    return "ok", ""
