"""Find mesh processes from the host of a kind (or any Linux) cluster.

kind nodes are containers on the host kernel, so the host's /proc shows every pod's
processes. A process's role comes from its name and its parent's (`classify`), its pod
from its cgroup path (`parse_cgroup`): kubelet puts each container in a cgroup named
after the pod UID and the container ID, which the Kubernetes API maps to a pod name,
namespace and node. Sidecar and waypoint Envoys look alike here; the pod's labels tell
them apart (`envoy_role`). An Istio sidecar or waypoint is two processes in its istio-proxy
container: pilot-agent (certificates, health, the xDS proxy) and the Envoy it starts; both
are part of the proxy's cost, as the metrics API's per-container figure is (`AGENT`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from bench.probes.processes import ProxyRole

ENVOY = "envoy"  # classify(): an Istio Envoy, sidecar or waypoint, not yet told apart
AGENT = "pilot-agent"  # classify(): the agent of an Istio sidecar or waypoint, likewise
WAYPOINT_LABEL = "gateway.networking.k8s.io/gateway-name"

_UID = r"[0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12}|[0-9a-f]{32}"
# systemd driver: ...kubepods[-<qos>]-pod<uid, '-' written as '_'>.slice/<runtime>-<id>.scope
# (kind's kubelet nests it under kubelet.slice, so the slice names gain a "kubelet-" prefix)
_SYSTEMD = re.compile(
    rf"kubepods(?:-(?P<qos>burstable|besteffort))?-pod(?P<uid>{_UID})\.slice"
    r"(?:/(?:[a-z]+-)*(?P<cid>[0-9a-f]{64})\.scope)?"
)
# cgroupfs driver: .../kubepods[/<qos>]/pod<uid>[/<id>]
_CGROUPFS = re.compile(
    rf"/kubepods(?:/(?P<qos>burstable|besteffort))?/pod(?P<uid>{_UID})"
    r"(?:/(?:[a-z]+-)*(?P<cid>[0-9a-f]{64}))?(?:/|$)"
)
# the kind node's own container, when the path shows it (docker-<id>.scope or /docker/<id>)
_NODE = re.compile(r"(?:docker-(?P<a>[0-9a-f]{64})\.scope|/docker/(?P<b>[0-9a-f]{64}))")


@dataclass(frozen=True)
class PodRef:
    """Where a process lives: pod UID (with dashes), container ID ("" if the process sits
    in the pod's cgroup itself), QoS class, and the kind node container's ID if visible."""

    pod_uid: str
    container_id: str
    qos: str  # "guaranteed", "burstable" or "besteffort"
    node_container_id: str = ""


@dataclass(frozen=True)
class DiscoveredProcess:
    """A process `classify` recognised; `role` may be ENVOY (see `envoy_role`)."""

    pid: int
    comm: str
    parent_comm: str
    role: str
    pod: PodRef | None


def parse_cgroup(text: str) -> PodRef | None:
    """Parse /proc/PID/cgroup (v1 or v2, systemd or cgroupfs driver); None outside a pod."""
    for line in text.splitlines():
        path = line.split(":", 2)[-1]
        m = _SYSTEMD.search(path) or _CGROUPFS.search(path)
        if m is None:
            continue
        uid = m["uid"].replace("_", "-")
        node = _NODE.search(path)
        return PodRef(
            pod_uid=uid,
            container_id=m["cid"] or "",
            # a Guaranteed pod has no QoS level in its path
            qos=m["qos"] or "guaranteed",
            node_container_id=(node["a"] or node["b"]) if node else "",
        )
    return None


def classify(comm: str, parent_comm: str) -> str | None:
    """Role from a process name and its parent's, as /proc/PID/comm shows them (15 chars).

    Returns a ProxyRole value, ENVOY for an Istio Envoy (child of pilot-agent) or AGENT for
    pilot-agent, whose pod labels must decide, or None for anything else -- including an
    Envoy that pilot-agent did not start, which is not an Istio proxy. (pilot-agent also
    runs istio-init's iptables set-up, which exits before a window; a gateway's pilot-agent
    is left out by its pod, which is none of the run's.)
    """
    if comm == "envoy":
        return ENVOY if parent_comm == "pilot-agent" else None
    if comm == "pilot-agent":
        return AGENT
    if comm == "ztunnel":
        return ProxyRole.ZTUNNEL.value
    if comm == "pilot-discovery":
        return ProxyRole.CONTROL_PLANE.value
    return None


def envoy_role(pod_labels: Mapping[str, str]) -> ProxyRole:
    """Waypoint if the pod is a Gateway API gateway (as waypoints are), else sidecar."""
    return ProxyRole.WAYPOINT if WAYPOINT_LABEL in pod_labels else ProxyRole.SIDECAR


def _comm_and_ppid(proc: Path) -> tuple[str, int]:
    comm = (proc / "comm").read_text().rstrip("\n")
    stat = (proc / "stat").read_text()
    # comm may hold spaces and parentheses: fields start after the last ')'
    return comm, int(stat[stat.rfind(")") + 2:].split()[1])


def _parent_comm(proc_root: Path, ppid: int) -> str:
    try:
        return (proc_root / str(ppid) / "comm").read_text().rstrip("\n") if ppid > 0 else ""
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return ""  # parent gone: the child was reparented and is no Istio proxy we know


def discover(proc_root: Path = Path("/proc")) -> list[DiscoveredProcess]:
    """Scan a proc tree (redirectable for tests) for mesh processes, sorted by PID.

    Processes that exit during the scan, or cannot be read, are left out.
    """
    found = []
    for entry in proc_root.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            comm, ppid = _comm_and_ppid(entry)
            if comm not in ("envoy", "pilot-agent", "ztunnel", "pilot-discovery"):
                continue  # cheap filter first: most processes are none of these
            parent_comm = _parent_comm(proc_root, ppid)
            role = classify(comm, parent_comm)
            if role is None:
                continue
            pod = parse_cgroup((entry / "cgroup").read_text())
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue  # exited mid-scan, or not ours to read
        found.append(DiscoveredProcess(pid=int(entry.name), comm=comm,
                                       parent_comm=parent_comm, role=role, pod=pod))
    return sorted(found, key=lambda p: p.pid)
