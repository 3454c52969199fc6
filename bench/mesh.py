"""The one in-memory model of a mesh: nodes, pods, services, proxies, for one mode.

Every backend builds what this model says, and every proxy's config is generated from it,
so the same model can later be served over xDS instead of files. Addresses are inside the
harness's own network namespaces only: pods in 10.244.0.0/16 (a /22 per node), service VIPs
in 10.96.0.0/16, node-to-node links in 10.10.0.0/24.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from functools import cached_property

from bench.scenario import Scenario

TRUST_DOMAIN = "cluster.local"
APP_PORT = 8080
SERVICE_PORT = 80
HBONE_PORT = 15008
OUTBOUND_PORT = 15001
INBOUND_PORT = 15006
PROXY_UID = 1337
POD_NET = ipaddress.ip_network("10.244.0.0/16")
VIP_NET = ipaddress.ip_network("10.96.0.0/16")
FABRIC_NET = ipaddress.ip_network("10.10.0.0/24")
MAX_PODS_PER_NODE = 1000  # a /22 per node, minus the first addresses


@dataclass(frozen=True)
class Node:
    name: str
    index: int

    @property
    def pod_cidr(self) -> str:
        return str(ipaddress.ip_network(f"10.244.{self.index * 4}.0/22"))

    @property
    def fabric_ip(self) -> str:
        return str(FABRIC_NET.network_address + 1 + self.index)


@dataclass(frozen=True)
class Pod:
    name: str
    namespace: str
    node: str
    ip: str
    service_account: str
    kind: str  # "client", "server" or "waypoint"
    service: str = ""

    @property
    def spiffe(self) -> str:
        return f"spiffe://{TRUST_DOMAIN}/ns/{self.namespace}/sa/{self.service_account}"


@dataclass(frozen=True)
class Service:
    name: str
    namespace: str
    vip: str
    endpoints: tuple[str, ...]  # pod names
    port: int = SERVICE_PORT
    target_port: int = APP_PORT
    waypoint: str = ""  # pod name of the waypoint that serves it, if any
    route_timeout_s: float = 15.0  # L7 route config: where a VirtualService would land

    @property
    def fqdn(self) -> str:
        return f"{self.name}.{self.namespace}.svc.{TRUST_DOMAIN}"


@dataclass(frozen=True)
class AuthorizationPolicy:
    """An L4 Istio AuthorizationPolicy: `action` on connections from `principals` to the
    workloads of service `selector` (its pods' label app=<service>) in `namespace`."""

    name: str
    namespace: str
    selector: str  # service name whose pods it selects
    principals: tuple[str, ...]  # SPIFFE ids of the sources it matches
    action: str = "DENY"  # ALLOW policies would deny everything else: DENY keeps traffic flowing

    @property
    def key(self) -> str:
        """How the policy is named inside proxy configs (RBAC policy names)."""
        return f"ns/{self.namespace}/{self.name}"


@dataclass(frozen=True)
class Proxy:
    """One Envoy process of the data plane."""

    name: str
    role: str  # "sidecar", "ztunnel" or "waypoint"
    node: str
    pod: str = ""  # the pod it serves (sidecar) or is (waypoint); empty for ztunnel

    @property
    def identity(self) -> str:
        if self.role == "ztunnel":
            return f"spiffe://{TRUST_DOMAIN}/ns/istio-system/sa/ztunnel"
        return ""


@dataclass(frozen=True)
class Mesh:
    mode: str
    nodes: tuple[Node, ...]
    pods: tuple[Pod, ...]
    services: tuple[Service, ...]
    proxies: tuple[Proxy, ...] = field(default=())
    client: str = "client-0"
    policies: tuple[AuthorizationPolicy, ...] = ()

    @cached_property
    def _pods(self) -> dict[str, Pod]:
        return {p.name: p for p in self.pods}

    def pod(self, name: str) -> Pod:
        return self._pods[name]

    def node(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)

    def pods_on(self, node: str) -> list[Pod]:
        return [p for p in self.pods if p.node == node]

    def enrolled(self, pod: Pod) -> bool:
        """Ambient enrolment: app pods are captured by their node's ztunnel; waypoints are not."""
        return self.mode in ("ambient", "waypoint") and pod.kind in ("client", "server")

    def endpoints(self, svc: Service) -> list[Pod]:
        return [self.pod(n) for n in svc.endpoints]

    @property
    def target(self) -> Service:
        """The service the load generator calls."""
        return self.services[0]

    def policies_for(self, pod: Pod) -> list[AuthorizationPolicy]:
        """The policies that select `pod` (same namespace, label app=<its service>)."""
        return [p for p in self.policies
                if p.namespace == pod.namespace and p.selector and p.selector == pod.service]

    def proxies_of(self, role: str) -> list[Proxy]:
        return [p for p in self.proxies if p.role == role]


def build(scenario: Scenario, mode: str) -> Mesh:
    t = scenario.topology
    nodes = tuple(Node(name=f"node{i}", index=i) for i in range(t.nodes))
    server_nodes = [n for n in nodes if n.index != t.client_node] or list(nodes)
    next_host: dict[str, int] = {n.name: 10 for n in nodes}

    def alloc(node: Node) -> str:
        k = next_host[node.name]
        if k >= MAX_PODS_PER_NODE:
            raise ValueError(f"more than {MAX_PODS_PER_NODE - 10} pods on {node.name}")
        next_host[node.name] = k + 1
        return str(ipaddress.ip_network(node.pod_cidr).network_address + k)

    client_node = nodes[t.client_node]
    pods = [Pod("client-0", t.namespace, client_node.name, alloc(client_node), "client", "client")]
    services = []
    waypoint = ""
    if mode == "waypoint":
        wnode = nodes[t.waypoint_node]
        pods.append(Pod("waypoint", t.namespace, wnode.name, alloc(wnode), "waypoint", "waypoint"))
        waypoint = "waypoint"
    k = 0
    for s in range(t.services):
        names = []
        for r in range(t.pods_per_service):
            # the first service's pods land on server_node; the rest spread round-robin
            node = nodes[t.server_node] if s == 0 else server_nodes[k % len(server_nodes)]
            k += 1
            name = f"svc-{s}-{r}"
            pods.append(Pod(name, t.namespace, node.name, alloc(node), f"svc-{s}", "server", f"svc-{s}"))
            names.append(name)
        vip = str(VIP_NET.network_address + 10 + s)
        services.append(Service(f"svc-{s}", t.namespace, vip, tuple(names), waypoint=waypoint))

    proxies: list[Proxy] = []
    if mode == "sidecar":
        proxies = [Proxy(f"sidecar-{p.name}", "sidecar", p.node, p.name) for p in pods]
    elif mode in ("ambient", "waypoint"):
        proxies = [Proxy(f"ztunnel-{n.name}", "ztunnel", n.name) for n in nodes]
        if mode == "waypoint":
            wp = next(p for p in pods if p.kind == "waypoint")
            proxies.append(Proxy("waypoint", "waypoint", wp.node, wp.name))
    return Mesh(mode, nodes, tuple(pods), tuple(services), tuple(proxies))
