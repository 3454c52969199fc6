"""Turns the mesh model into namespaces, routed veths, routes and iptables rules.

A node is a namespace joined to the others through a bridge in a fabric namespace; a pod is a
namespace with a routed veth to its node (Calico-style: the node side holds a link-scope
gateway address and a /32 route to the pod, so same-node traffic still crosses iptables).
"""

from __future__ import annotations

from bench.backends.local import netns
from bench.backends.local.netns import GATEWAY, ns_name
from bench.mesh import (
    FABRIC_NET,
    HBONE_PORT,
    INBOUND_PORT,
    OUTBOUND_PORT,
    PROXY_UID,
    Mesh,
    Pod,
)

FABRIC = ns_name("fabric")


def pod_ns(pod: Pod | str) -> str:
    return ns_name(pod if isinstance(pod, str) else pod.name)


def node_ns(node: str) -> str:
    return ns_name(node)


def host_if(pod: Pod) -> str:
    """Name of the pod's veth on the node side: unique per node, at most 15 characters."""
    return "cali" + pod.ip.replace(".", "")[-8:]


def namespaces(mesh: Mesh) -> list[str]:
    return [FABRIC] + [node_ns(n.name) for n in mesh.nodes] + [pod_ns(p) for p in mesh.pods]


def build_network(mesh: Mesh) -> None:
    """Create every namespace and link. Raises ProvisionError; the caller tears down."""
    netns.add(FABRIC)
    netns.batch(FABRIC, ["link add mbbr0 type bridge", "link set mbbr0 up"])
    for node in mesh.nodes:
        ns = node_ns(node.name)
        netns.add(ns)
        netns.veth(ns, "eth0", FABRIC, f"n{node.index}")
        netns.batch(FABRIC, [f"link set n{node.index} master mbbr0", f"link set n{node.index} up"])
        cmds = [f"addr add {node.fabric_ip}/{FABRIC_NET.prefixlen} dev eth0", "link set eth0 up"]
        for other in mesh.nodes:
            if other.name != node.name:
                cmds.append(f"route add {other.pod_cidr} via {other.fabric_ip}")
        netns.batch(ns, cmds)
        netns.sysctl(ns, "net.ipv4.ip_forward", "1")
    for pod in mesh.pods:
        ns, nns, hif = pod_ns(pod), node_ns(pod.node), host_if(pod)
        netns.add(ns, lo_up=False)
        netns.veth(ns, "eth0", nns, hif)
        netns.batch(ns, [
            "link set lo up",
            f"addr add {pod.ip}/32 dev eth0", "link set eth0 up",
            f"route add {GATEWAY} dev eth0 scope link",
            f"route add default via {GATEWAY} dev eth0",
        ])
        netns.batch(nns, [
            f"addr add {GATEWAY}/32 dev {hif}", f"link set {hif} up",
            f"route add {pod.ip}/32 dev {hif}",
        ])


def node_rules(mesh: Mesh, node: str) -> str:
    """iptables for one node: kube-proxy-like DNAT of service VIPs in every mode, and in the
    ambient modes the ztunnel capture, placed before the DNAT as istio-cni does."""
    lines = ["*nat", ":MB_SERVICES - [0:0]"]
    ambient = mesh.mode in ("ambient", "waypoint")
    if ambient:
        lines += [":MB_ZTUNNEL - [0:0]", ":MB_ZTUNNEL_LOCAL - [0:0]",
                  "-A PREROUTING -j MB_ZTUNNEL", "-A OUTPUT -p tcp -j MB_ZTUNNEL_LOCAL"]
    lines += ["-A PREROUTING -j MB_SERVICES", "-A OUTPUT -j MB_SERVICES"]
    for svc in mesh.services:
        eps = mesh.endpoints(svc)
        for i, ep in enumerate(eps):
            # kube-proxy's chain: endpoint i of n is taken with probability 1/(n-i)
            left = len(eps) - i
            prob = "" if left == 1 else f"-m statistic --mode random --probability {1 / left:.10f} "
            lines.append(
                f"-A MB_SERVICES -d {svc.vip}/32 -p tcp --dport {svc.port} {prob}"
                f"-j DNAT --to-destination {ep.ip}:{svc.target_port}")
    if ambient:
        for pod in mesh.pods_on(node):
            if not mesh.enrolled(pod):
                continue
            lines += [
                f"-A MB_ZTUNNEL -s {pod.ip}/32 -p tcp -j REDIRECT --to-ports {OUTBOUND_PORT}",
                f"-A MB_ZTUNNEL -d {pod.ip}/32 -p tcp --dport {HBONE_PORT} "
                f"-j REDIRECT --to-ports {HBONE_PORT}",
                # HBONE from this node's own ztunnel to a pod on the same node
                f"-A MB_ZTUNNEL_LOCAL -d {pod.ip}/32 -p tcp --dport {HBONE_PORT} "
                f"-j REDIRECT --to-ports {HBONE_PORT}",
            ]
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def sidecar_rules(pod: Pod) -> str:
    """istio-init's capture: outbound TCP to 15001 except the proxy's own (uid 1337) and
    loopback; inbound TCP to 15006."""
    rules = [
        "*nat", ":MB_OUTPUT - [0:0]", ":MB_INBOUND - [0:0]",
        "-A OUTPUT -p tcp -j MB_OUTPUT",
        f"-A MB_OUTPUT -m owner --uid-owner {PROXY_UID} -j RETURN",
        f"-A MB_OUTPUT -m owner --gid-owner {PROXY_UID} -j RETURN",
        "-A MB_OUTPUT -d 127.0.0.1/32 -j RETURN",
        f"-A MB_OUTPUT -p tcp -j REDIRECT --to-ports {OUTBOUND_PORT}",
    ]
    if pod.kind == "server":
        rules += ["-A PREROUTING -p tcp -j MB_INBOUND",
                  f"-A MB_INBOUND -p tcp -j REDIRECT --to-ports {INBOUND_PORT}"]
    rules.append("COMMIT")
    return "\n".join(rules) + "\n"


def install_capture(mesh: Mesh) -> None:
    for node in mesh.nodes:
        netns.iptables_restore(node_ns(node.name), node_rules(mesh, node.name))
    if mesh.mode == "sidecar":
        for pod in mesh.pods:
            netns.iptables_restore(pod_ns(pod), sidecar_rules(pod))
