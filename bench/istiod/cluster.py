"""A simulated cluster for the real istiod: the harness plays kubelet and
controller-manager, writing into the real API server what they would (Nodes, Namespaces,
ServiceAccounts, Services, Pods with their status, EndpointSlices), and the proxies'
identities for bench.istiod.proxies.

Shape of one size: `pods` application pods, `pods_per_service` per Service,
`services_per_namespace` Services per namespace (so several namespaces from 100 pods on,
for the policy that selects one workload in a namespace of many), `pods_per_node` per
Node (ambient: one ztunnel per node). Per mode:
- sidecar: pods labelled as Istio's injector leaves them (security.istio.io/tlsMode,
  service.istio.io/canonical-name, the sidecar.istio.io/status annotation);
- ambient: namespaces labelled istio.io/dataplane-mode=ambient, pods annotated
  ambient.istio.io/redirection=enabled as istio-cni writes it (istiod's ambient index
  gives such a workload the HBONE tunnel protocol);
- waypoint: ambient, plus per namespace a Gateway of class istio-waypoint with its Service,
  EndpointSlice and Pod (the deployment controller is off), and the namespace labelled
  istio.io/use-waypoint.
Addresses are data in the API server, never a traffic target: pods in 10.250.0.0/16,
nodes in 10.251.0.0/16, Services from the API server's 10.112.0.0/16.
Every object carries the label meshbench.io/owned=true and the sweep's run id.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from bench.istiod.kubeapi import KubeAPI

OWNED = {"meshbench.io/owned": "true"}
POD_LABEL = "meshbench.io/pod"  # one per pod: lets a policy select one workload
WAYPOINT = "waypoint"
APP_PORT = 8080
SVC_PORT = 80
Obj = dict[str, Any]


def ip(prefix: int, i: int) -> str:
    """The i-th address of a /16 that starts at 10.<prefix>.0.0 (skipping .0 and .255)."""
    return f"10.{prefix}.{i // 250}.{i % 250 + 1}"


@dataclass(frozen=True)
class Shape:
    pods: int
    mode: str  # sidecar, ambient, waypoint
    pods_per_service: int = 10
    services_per_namespace: int = 10
    pods_per_node: int = 10
    run_id: str = ""

    @property
    def services(self) -> int:
        return max(1, math.ceil(self.pods / self.pods_per_service))

    @property
    def namespaces(self) -> int:
        return max(1, math.ceil(self.services / self.services_per_namespace))

    @property
    def nodes(self) -> int:
        return max(1, math.ceil(self.pods / self.pods_per_node))

    @property
    def ambient(self) -> bool:
        return self.mode in ("ambient", "waypoint")

    def labels(self) -> dict[str, str]:
        return {**OWNED, **({"meshbench.io/run-id": self.run_id} if self.run_id else {})}


@dataclass(frozen=True)
class PodRef:
    name: str
    namespace: str
    service: str
    ip: str
    node: str
    index: int


def namespace_name(i: int) -> str:
    return f"mb-ns-{i}"


def service_name(i: int) -> str:
    return f"svc-{i}"


def node_name(i: int) -> str:
    return f"mb-node-{i}"


def pods(shape: Shape) -> Iterator[PodRef]:
    for i in range(shape.pods):
        s = i // shape.pods_per_service
        ns = namespace_name(s // shape.services_per_namespace)
        yield PodRef(f"{service_name(s)}-{i % shape.pods_per_service}", ns, service_name(s),
                     ip(250, i), node_name(i // shape.pods_per_node), i)


def _md(name: str, namespace: str, shape: Shape, labels: dict[str, str] | None = None,
        annotations: dict[str, str] | None = None) -> Obj:
    md: Obj = {"name": name, "labels": {**shape.labels(), **(labels or {})}}
    if namespace:
        md["namespace"] = namespace
    if annotations:
        md["annotations"] = annotations
    return md


def namespace_objects(shape: Shape) -> list[Obj]:
    out = []
    for n in range(shape.namespaces):
        labels: dict[str, str] = {}
        if shape.ambient:
            labels["istio.io/dataplane-mode"] = "ambient"
        if shape.mode == "waypoint":
            labels["istio.io/use-waypoint"] = WAYPOINT
        out.append({"apiVersion": "v1", "kind": "Namespace",
                    "metadata": _md(namespace_name(n), "", shape, labels)})
    return out


def node_objects(shape: Shape) -> list[Obj]:
    return [{"apiVersion": "v1", "kind": "Node",
             "metadata": _md(node_name(n), "", shape,
                             {"kubernetes.io/hostname": node_name(n),
                              "topology.kubernetes.io/region": "mb-region",
                              "topology.kubernetes.io/zone": "mb-zone"}),
             "status": {"addresses": [{"type": "InternalIP", "address": ip(251, n)}]}}
            for n in range(shape.nodes)]


def service_objects(shape: Shape) -> list[Obj]:
    out = []
    for s in range(shape.services):
        ns = namespace_name(s // shape.services_per_namespace)
        name = service_name(s)
        out.append({"apiVersion": "v1", "kind": "ServiceAccount",
                    "metadata": _md(name, ns, shape)})
        out.append({"apiVersion": "v1", "kind": "Service",
                    "metadata": _md(name, ns, shape, {"app": name}),
                    "spec": {"selector": {"app": name},
                             "ports": [{"name": "http", "port": SVC_PORT,
                                        "targetPort": APP_PORT, "protocol": "TCP"}]}})
    return out


def pod_labels(shape: Shape, p: PodRef) -> dict[str, str]:
    labels = {"app": p.service, "version": "v1", POD_LABEL: p.name}
    if shape.mode == "sidecar":
        labels.update({"security.istio.io/tlsMode": "istio",
                       "service.istio.io/canonical-name": p.service,
                       "service.istio.io/canonical-revision": "v1"})
    return labels


def pod_annotations(shape: Shape) -> dict[str, str]:
    if shape.mode == "sidecar":
        return {"sidecar.istio.io/status": json.dumps(
            {"initContainers": ["istio-init"], "containers": ["istio-proxy"],
             "volumes": ["istio-envoy", "istio-data", "istiod-ca-cert"],
             "imagePullSecrets": None, "revision": "default"})}
    return {"ambient.istio.io/redirection": "enabled"}


def pod_object(shape: Shape, p: PodRef, labels: dict[str, str],
               annotations: dict[str, str], sa: str, port: int = APP_PORT) -> Obj:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": _md(p.name, p.namespace, shape, labels, annotations),
            "spec": {"nodeName": p.node, "serviceAccountName": sa,
                     "automountServiceAccountToken": False,
                     "containers": [{"name": "app", "image": "mb/none:0",
                                     "ports": [{"containerPort": port}]}]}}


def pod_status(p: PodRef, pod: Obj) -> Obj:
    """What the kubelet writes: Running, Ready, the IP (bench.istiod.kubeapi.put_status)."""
    now = "2026-01-01T00:00:00Z"
    return {**pod, "status": {
        "phase": "Running", "podIP": p.ip, "podIPs": [{"ip": p.ip}], "hostIP": "",
        "conditions": [{"type": t, "status": "True", "lastTransitionTime": now}
                       for t in ("PodScheduled", "Initialized", "ContainersReady", "Ready")],
        "startTime": now}}


def endpoint_slice(shape: Shape, service: str, namespace: str, members: list[PodRef],
                   port: int = APP_PORT, port_name: str = "http") -> Obj:
    """What the EndpointSlice controller writes for a Service's ready pods."""
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": _md(f"{service}-mb", namespace, shape,
                            {"kubernetes.io/service-name": service,
                             "endpointslice.kubernetes.io/managed-by": "meshbench"}),
            "addressType": "IPv4",
            "ports": [{"name": port_name, "port": port, "protocol": "TCP"}],
            "endpoints": [{"addresses": [m.ip], "conditions": {"ready": True},
                           "nodeName": m.node,
                           "targetRef": {"kind": "Pod", "name": m.name,
                                         "namespace": m.namespace}}
                          for m in members]}


def waypoint_pod_labels() -> dict[str, str]:
    """The labels Istio's deployment controller gives a waypoint's pods
    (manifests/charts/istio-control/istio-discovery/files/waypoint.yaml)."""
    return {"gateway.networking.k8s.io/gateway-name": WAYPOINT,
            "gateway.istio.io/managed": "istio.io-mesh-controller",
            "gateway.networking.k8s.io/gateway-class-name": "istio-waypoint",
            "istio.io/dataplane-mode": "none", "sidecar.istio.io/inject": "false"}


WAYPOINT_PORTS = (("mesh", 15008, "hbone"), ("status-port", 15021, "tcp"))


def waypoint_objects(shape: Shape, n: int) -> tuple[list[Obj], PodRef]:
    """A namespace's waypoint: the Gateway, and what its deployment controller would make
    (ServiceAccount, Service), since that controller is off here; the Pod and EndpointSlice
    are written by `write` like every pod's. istiod makes the Gateway a waypoint once it
    writes status.addresses, which it does when the Service has endpoints on 15008
    (pilot/pkg/serviceregistry/ambient/waypoints.go, gateway/conversion.go)."""
    ns = namespace_name(n)
    managed = {"gateway.networking.k8s.io/gateway-name": WAYPOINT,
               "gateway.istio.io/managed": "istio.io-mesh-controller"}
    ref = PodRef(f"{WAYPOINT}-0", ns, WAYPOINT, ip(252, n), node_name(0), n)
    gw = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
          "metadata": _md(WAYPOINT, ns, shape, {"istio.io/waypoint-for": "service"}),
          "spec": {"gatewayClassName": "istio-waypoint",
                   "listeners": [{"name": "mesh", "port": 15008, "protocol": "HBONE"}]}}
    svc = {"apiVersion": "v1", "kind": "Service",
           "metadata": _md(WAYPOINT, ns, shape, managed),
           "spec": {"selector": {"gateway.networking.k8s.io/gateway-name": WAYPOINT},
                    "ports": [{"name": name, "port": port, "targetPort": port,
                               "appProtocol": proto, "protocol": "TCP"}
                              for name, port, proto in WAYPOINT_PORTS]}}
    sa = {"apiVersion": "v1", "kind": "ServiceAccount",
          "metadata": _md(WAYPOINT, ns, shape, managed)}
    return [gw, sa, svc], ref


def write(api: KubeAPI, shape: Shape, say: Callable[[str], None] = print) -> list[PodRef]:
    """Write the whole simulated cluster; returns the application pods (and, last, each
    waypoint's pod). Progress every 1,000 pods."""
    import time

    t0 = time.monotonic()
    api.many(api.apply, namespace_objects(shape))
    api.many(api.create, node_objects(shape))
    api.many(api.create, service_objects(shape))
    refs = list(pods(shape))
    ann = pod_annotations(shape)

    def one(p: PodRef) -> None:
        obj = pod_object(shape, p, pod_labels(shape, p), ann, p.service)
        api.create(obj)
        api.put_status(pod_status(p, obj))
    for start in range(0, len(refs), 1000):
        chunk = refs[start:start + 1000]
        api.many(lambda o: one(o["ref"]), [{"ref": p} for p in chunk])
        if len(refs) > 1000:
            say(f"  pods {start + len(chunk)}/{len(refs)} ({time.monotonic() - t0:.0f} s)")
    by_svc: dict[tuple[str, str], list[PodRef]] = {}
    for p in refs:
        by_svc.setdefault((p.namespace, p.service), []).append(p)
    api.many(api.create, [endpoint_slice(shape, s, ns, m) for (ns, s), m in by_svc.items()])
    waypoints: list[PodRef] = []
    if shape.mode == "waypoint":
        for n in range(shape.namespaces):
            objs, ref = waypoint_objects(shape, n)
            for o in objs:
                api.create(o)
            pod = pod_object(shape, ref, waypoint_pod_labels(), {}, WAYPOINT, 15008)
            api.create(pod)
            api.put_status(pod_status(ref, pod))
            sl = endpoint_slice(shape, WAYPOINT, ref.namespace, [ref], 15008, "mesh")
            sl["ports"] = [{"name": name, "port": port, "protocol": "TCP"}
                           for name, port, _ in WAYPOINT_PORTS]
            api.create(sl)
            waypoints.append(ref)
    return refs + waypoints
