"""What a kube backend measures besides load: proxy processes seen from the host,
istiod's push metrics, the metrics API as the fallback for CPU and memory, proxy counters.

- `discover(kube, pods)`: host PIDs of the Envoys and pilot-agents of sidecars and
  waypoints, ztunnels and istiod, each mapped to one of `pods` (the run's own, its
  ztunnels, its istiod) through the pod UID in its cgroup path (bench.probes.discovery).
  On a kind host this works because kind nodes are containers on the host kernel; on a
  remote cluster or Docker Desktop the host sees nothing and the status says so.
- `ISTIOD_METRICS`, `scrape(text)`: the istiod families to read from its /metrics (15014,
  reached through a kubectl port-forward).
- `pod_usage(kube, namespace)`: CPU cores and memory bytes per container from
  metrics.k8s.io (metrics-server); `usage_samples` turns them into the same rows (and role
  sums) as the host sampler's, when the host cannot see the processes. A proxy's figure is
  its istio-proxy container: pilot-agent and Envoy, as the host path counts it too.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.backends.base import ProcessRef
from bench.backends.kube import versions
from bench.backends.kube.k8s import Kube, KubeError
from bench.probes import discovery
from bench.probes.processes import AGENT_SUFFIX, DATAPLANE_ROLES
from bench.store import Cell
from bench.store import Sample as Row

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


def node_names(kube: Kube) -> dict[str, str]:
    """Kubernetes node name -> the mesh model's node name where the node is labelled."""
    return {n["metadata"]["name"]: n["metadata"].get("labels", {}).get(versions.NODE, n["metadata"]["name"])
            for n in kube.list("v1", "Node")}


NO_PROCESSES = ("this host cannot see the pods' processes (a remote cluster, or Docker "
                "Desktop's VM): resources come from the metrics API")


def discover(kube: Kube, pods: Sequence[Mapping[str, Any]],
             proc_root: Path = Path("/proc")) -> Discovery:
    """Map host processes to `pods` (the run's pods, its ztunnels and its istiod: nothing
    else of the cluster counts). Never raises for a host that cannot see pods."""
    found = discovery.discover(proc_root)
    by_uid = {p["metadata"]["uid"]: p for p in pods}
    nodes = node_names(kube)
    refs = []
    for d in found:
        if d.pod is None or d.pod.pod_uid not in by_uid:
            continue  # not one of ours (a gateway, another namespace, another cluster)
        pod = by_uid[d.pod.pod_uid]
        md = pod["metadata"]
        role, process = d.role, d.comm
        if role in (discovery.ENVOY, discovery.AGENT):
            role = discovery.envoy_role(md.get("labels", {})).value
        node = nodes.get(pod.get("spec", {}).get("nodeName", ""), "")
        entity = f"ztunnel/{node}" if role == "ztunnel" else f"{role}/{md['name']}"
        if d.role == discovery.AGENT:
            entity += AGENT_SUFFIX
        refs.append(ProcessRef(d.pid, role, entity, md["name"], node, md["namespace"],
                               process=process))
    if not refs:
        return Discovery((), "skipped", NO_PROCESSES)
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


def container_role(pod: Mapping[str, Any], container: str, node: str) -> tuple[str, str] | None:
    """(role, entity) of one container of our pods for the metrics-API rows, named as the
    host path names its processes; None for a container of no role (istio-cni's, ...)."""
    md = pod["metadata"]
    labels, name = md.get("labels", {}), md["name"]
    if labels.get("app") == "ztunnel":
        return ("ztunnel", f"ztunnel/{node}") if container == "istio-proxy" else None
    if labels.get("app") == "istiod":
        return ("control-plane", f"control-plane/{name}") if container == "discovery" else None
    if container == "istio-proxy":
        role = discovery.envoy_role(labels).value
        return role, f"{role}/{name}"
    kind = labels.get(versions.POD_KIND, "")
    if kind == "server":
        return "app", f"app/{name}"
    if kind in ("client", "locust-master"):
        return "loadgen", f"loadgen/{name}"
    return None


def usage_samples(usages: list[Usage], pods: Sequence[Mapping[str, Any]], nodes: Mapping[str, str],
                  cell: Cell, ts: float) -> list[Row]:
    """Rows of source "resources" from the metrics API, for our pods only: per container
    "cpu_cores" and "working_set_mib" (what metrics-server reports is the working set, not
    RSS), then "role:<role>" sums and "dataplane", as bench.probes.resources writes them.
    Labels say where they come from: via metrics-api, over metrics-server's own window
    (window_s) ending at its last scrape, not the measurement window."""
    by_name = {(p["metadata"]["namespace"], p["metadata"]["name"]): p for p in pods}
    rows: list[tuple[str, str, dict[str, Any], float, float]] = []
    for u in usages:
        pod = by_name.get((u.namespace, u.pod))
        if pod is None:
            continue
        node = nodes.get(pod.get("spec", {}).get("nodeName", ""), "")
        rr = container_role(pod, u.container, node)
        if rr is None:
            continue
        role, entity = rr
        labels = {"role": role, "pod": u.pod, "namespace": u.namespace,
                  "node": node, "via": "metrics-api", "window_s": u.window_s}
        rows.append((entity, role, labels, u.cpu_cores, u.memory_bytes))
    out: list[Row] = []
    for entity, _role, labels, cpu, mem in rows:
        out += [Row.for_cell(cell, source="resources", metric="cpu_cores", unit="cores",
                                entity=entity, value=cpu, ts=ts, labels=labels),
                Row.for_cell(cell, source="resources", metric="working_set_mib",
                                unit="MiB", entity=entity, value=mem / 2**20, ts=ts,
                                labels=labels)]
    groups = {f"role:{r}": [x for x in rows if x[1] == r] for r in sorted({x[1] for x in rows})}
    dp = [x for x in rows if x[1] in DATAPLANE_ROLES]
    if dp:
        groups["dataplane"] = dp
    for entity, members in groups.items():
        labels = {"role": entity.removeprefix("role:"), "entities": len({m[0] for m in members}),
                  "via": "metrics-api"}
        out += [Row.for_cell(cell, source="resources", metric="cpu_cores", unit="cores",
                                entity=entity, value=sum(m[3] for m in members), ts=ts,
                                labels=labels),
                Row.for_cell(cell, source="resources", metric="working_set_mib", unit="MiB",
                                entity=entity, value=sum(m[4] for m in members) / 2**20,
                                ts=ts, labels=labels)]
    return out


def metrics_api_status(kube: Kube) -> tuple[str, str]:
    """("ok", "") when metrics.k8s.io answers, else ("skipped", why and how to fix)."""
    try:
        kube.list("metrics.k8s.io/v1beta1", "PodMetrics", versions.ISTIO_NS)
    except KubeError as e:
        return "skipped", (f"metrics API not served ({e.message}); install metrics-server "
                           "(on kind with --kubelet-insecure-tls) for the fallback")
    return "ok", ""
