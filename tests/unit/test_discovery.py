"""Host-side discovery: cgroup paths -> pods, process names -> roles, a fake /proc."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.probes.discovery import (
    AGENT,
    ENVOY,
    DiscoveredProcess,
    PodRef,
    classify,
    discover,
    envoy_role,
    parse_cgroup,
)
from bench.probes.processes import ProxyRole

NODE = "3f" * 32
CID = "ab" * 32
UID = "1c2d3e4f-aaaa-bbbb-cccc-123456789abc"
U_ = UID.replace("-", "_")
KIND = f"0::/system.slice/docker-{NODE}.scope/kubelet.slice/kubelet-kubepods.slice"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            f"{KIND}/kubelet-kubepods-burstable.slice/"
            f"kubelet-kubepods-burstable-pod{U_}.slice/cri-containerd-{CID}.scope\n",
            PodRef(UID, CID, "burstable", NODE), id="kind-systemd-burstable"),
        pytest.param(
            f"{KIND}/kubelet-kubepods-besteffort.slice/"
            f"kubelet-kubepods-besteffort-pod{U_}.slice/cri-containerd-{CID}.scope\n",
            PodRef(UID, CID, "besteffort", NODE), id="kind-systemd-besteffort"),
        pytest.param(
            f"{KIND}/kubelet-kubepods-pod{U_}.slice/cri-containerd-{CID}.scope\n",
            PodRef(UID, CID, "guaranteed", NODE), id="kind-systemd-guaranteed"),
        pytest.param(
            f"0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{U_}.slice/"
            f"crio-{CID}.scope\n",
            PodRef(UID, CID, "burstable"), id="node-systemd-crio"),
        pytest.param(
            f"0::/kubepods.slice/kubepods-pod{U_}.slice\n",
            PodRef(UID, "", "guaranteed"), id="systemd-pod-level-no-container"),
        pytest.param(
            f"0::/kubepods/burstable/pod{UID}/{CID}\n",
            PodRef(UID, CID, "burstable"), id="cgroupfs-burstable"),
        pytest.param(
            f"0::/kubepods/besteffort/pod{UID}/{CID}\n",
            PodRef(UID, CID, "besteffort"), id="cgroupfs-besteffort"),
        pytest.param(
            f"0::/kubepods/pod{UID}/{CID}\n",
            PodRef(UID, CID, "guaranteed"), id="cgroupfs-guaranteed"),
        pytest.param(
            f"0::/docker/{NODE}/kubelet/kubepods/burstable/pod{UID}/{CID}\n",
            PodRef(UID, CID, "burstable", NODE), id="cgroupfs-in-docker"),
        pytest.param(
            "12:pids:/\n11:cpu,cpuacct:/\n"
            f"4:memory:/kubepods/burstable/pod{UID}/{CID}\n1:name=systemd:/\n",
            PodRef(UID, CID, "burstable"), id="cgroup-v1-lines"),
        pytest.param(
            f"0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{'e' * 32}"
            f".slice/cri-containerd-{CID}.scope\n",
            PodRef("e" * 32, CID, "besteffort"), id="static-pod-hash-uid"),
    ],
)
def test_parse_cgroup_kubernetes(text: str, expected: PodRef) -> None:
    assert parse_cgroup(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "0::/\n",
        "0::/user.slice/user-1000.slice/session-2.scope\n",
        f"0::/system.slice/docker-{NODE}.scope\n",  # the kind node itself, not a pod
        (f"0::/system.slice/docker-{NODE}.scope/kubelet.slice/kubelet-kubepods.slice/"
         "kubelet-kubepods-burstable.slice\n"),  # a QoS slice, no pod
        "9:name=systemd:/\n4:memory:/process_api/d8bb1de0197dff5186e0f07f198df7dd\n0::/\n",
        "0::/kubepods/burstable/podnot-a-uid/x\n",
        "",
    ],
)
def test_parse_cgroup_outside_kubernetes(text: str) -> None:
    assert parse_cgroup(text) is None


@pytest.mark.parametrize(
    ("comm", "parent", "role"),
    [
        ("envoy", "pilot-agent", ENVOY),
        ("envoy", "bash", None),  # an Envoy pilot-agent did not start is not Istio's
        ("ztunnel", "containerd-shim", "ztunnel"),
        ("pilot-discovery", "containerd-shim", "control-plane"),
        ("pilot-agent", "containerd-shim", AGENT),  # part of a sidecar or waypoint
        ("python3", "bash", None),
    ],
)
def test_classify(comm: str, parent: str, role: str | None) -> None:
    assert classify(comm, parent) == role


def test_envoy_role_from_pod_labels() -> None:
    assert envoy_role({"gateway.networking.k8s.io/gateway-name": "waypoint"}) == "waypoint"
    assert envoy_role({"app": "client", "security.istio.io/tlsMode": "istio"}) == "sidecar"
    assert envoy_role({}) is ProxyRole.SIDECAR


def _proc(root: Path, pid: int, comm: str, ppid: int, cgroup: str) -> None:
    d = root / str(pid)
    d.mkdir()
    (d / "comm").write_text(comm + "\n")
    (d / "stat").write_text(f"{pid} ({comm}) S {ppid} {pid} {pid} 0 -1 4194560 0 0\n")
    (d / "cgroup").write_text(cgroup)


def test_discover_fake_proc(tmp_path: Path) -> None:
    pod = (f"{KIND}/kubelet-kubepods-burstable.slice/"
           f"kubelet-kubepods-burstable-pod{U_}.slice/cri-containerd-{CID}.scope\n")
    _proc(tmp_path, 1, "systemd", 0, "0::/init.scope\n")
    _proc(tmp_path, 100, "pilot-agent", 1, pod)
    _proc(tmp_path, 101, "envoy", 100, pod)
    _proc(tmp_path, 200, "ztunnel", 1, f"0::/kubepods/pod{UID}/{CID}\n")
    _proc(tmp_path, 300, "envoy", 1, "0::/user.slice\n")  # not under pilot-agent
    _proc(tmp_path, 400, "pilot-discovery", 999, "0::/\n")  # parent gone, outside a pod
    _proc(tmp_path, 500, "weird) name (x", 1, "0::/\n")  # comm with parentheses
    (tmp_path / "self").mkdir()
    (tmp_path / "meminfo").write_text("")

    found = discover(tmp_path)

    assert found == [
        DiscoveredProcess(100, "pilot-agent", "systemd", AGENT, PodRef(UID, CID, "burstable", NODE)),
        DiscoveredProcess(101, "envoy", "pilot-agent", ENVOY, PodRef(UID, CID, "burstable", NODE)),
        DiscoveredProcess(200, "ztunnel", "systemd", "ztunnel", PodRef(UID, CID, "guaranteed")),
        DiscoveredProcess(400, "pilot-discovery", "", "control-plane", None),
    ]


def test_discover_real_proc_runs() -> None:
    # No mesh here; the scan must still walk the real /proc without raising.
    assert isinstance(discover(), list)
