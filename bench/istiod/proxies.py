"""The simulated proxies' identities, as Istio's proxies present themselves to istiod: one
per sidecar pod, one ztunnel per node (ambient modes), one per waypoint pod. The node id
is `TYPE~IP~POD.NAMESPACE~NAMESPACE.svc.cluster.local` (pkg/model/context.go
ParseServiceNodeWithMetadata); the metadata is what pilot-agent sends (pkg/model/context.go
NodeMetadata), reduced to the fields istiod reads to place a proxy: NAMESPACE (with the node
id's pod name, how istiod finds the pod, its labels and its services), CLUSTER_ID (a wrong
one loses the service VIPs), INSTANCE_IPS (a comma-separated string), ISTIO_VERSION.
The list goes to mb-xdsload (bench.istiod.xdsload) as JSON."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bench.istiod import cluster
from bench.istiod.cluster import PodRef, Shape

PROXY_VERSION = "1.27.3"  # what the simulated proxies say they run (ISTIO_VERSION)
SYSTEM_NS = "istio-system"


@dataclass(frozen=True)
class Proxy:
    role: str  # sidecar, ztunnel, waypoint
    name: str  # pod name (ztunnel: ztunnel-<node>)
    namespace: str
    ip: str
    node_id: str
    metadata: dict[str, Any]

    def to_json(self, keep: bool) -> dict[str, Any]:
        return {"id": self.node_id, "role": self.role, "cluster": cluster_id(),
                "metadata": self.metadata, "keep": keep}


def cluster_id() -> str:
    from bench.istiod.controlplane import CLUSTER_ID

    return CLUSTER_ID


def _meta(name: str, namespace: str, ip: str, labels: dict[str, str], sa: str,
          node: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"ISTIO_VERSION": PROXY_VERSION, "CLUSTER_ID": cluster_id(), "NAME": name,
            "NAMESPACE": namespace, "LABELS": labels, "SERVICE_ACCOUNT": sa,
            "INSTANCE_IPS": ip, "NODE_NAME": node, "WORKLOAD_NAME": labels.get("app", name),
            "MESH_ID": "cluster.local", "INTERCEPTION_MODE": "REDIRECT",
            "PROXY_CONFIG": {}, **(extra or {})}


def sidecar(shape: Shape, p: PodRef) -> Proxy:
    labels = cluster.pod_labels(shape, p)
    return Proxy("sidecar", p.name, p.namespace, p.ip,
                 f"sidecar~{p.ip}~{p.name}.{p.namespace}~{p.namespace}.svc.cluster.local",
                 _meta(p.name, p.namespace, p.ip, labels, p.service, p.node))


def waypoint(p: PodRef) -> Proxy:
    labels = cluster.waypoint_pod_labels()
    # istiod's IsWaypointProxy is the node type alone (pkg/model/context.go); the labels are
    # the pod's, found by name (serviceregistry/kube/controller/util.go podKeyByProxy)
    return Proxy("waypoint", p.name, p.namespace, p.ip,
                 f"waypoint~{p.ip}~{p.name}.{p.namespace}~{p.namespace}.svc.cluster.local",
                 _meta(p.name, p.namespace, p.ip, labels, cluster.WAYPOINT, p.node))


def ztunnel(shape: Shape, n: int) -> Proxy:
    node = cluster.node_name(n)
    name = f"ztunnel-{n}"
    addr = cluster.ip(251, n)
    return Proxy("ztunnel", name, SYSTEM_NS, addr,
                 f"ztunnel~{addr}~{name}.{SYSTEM_NS}~{SYSTEM_NS}.svc.cluster.local",
                 _meta(name, SYSTEM_NS, addr, {"app": "ztunnel"}, "ztunnel", node))


def for_mode(shape: Shape, refs: Sequence[PodRef]) -> list[Proxy]:
    """Every proxy of the mode: sidecars, or ztunnels (+ waypoints)."""
    if shape.mode == "sidecar":
        return [sidecar(shape, p) for p in refs if p.service != cluster.WAYPOINT]
    out = [ztunnel(shape, n) for n in range(shape.nodes)]
    out += [waypoint(p) for p in refs if p.service == cluster.WAYPOINT]
    return out
