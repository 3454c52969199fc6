"""`plan(mode)` of the kube backends, golden-tested per mode, plus the ordering rules a
reviewer relies on. Regenerate the golden files after an intended change with

    MB_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/unit/test_kind_plan.py
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from bench import scenario as scen
from bench.backends.cluster.backend import ClusterBackend
from bench.backends.kind.backend import KindBackend
from bench.backends.kube.steps import Check
from tests.support.k8s_fake import CommandRecorder, FakeClock, FakeKube

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
UPDATE = os.environ.get("MB_UPDATE_GOLDEN") == "1"

# Spelled out here rather than loaded from workloads/scenarios/, so that editing a shipped
# scenario does not change the golden plans.
SCENARIO = scen.from_dict({
    "name": "golden", "backend": "kind",
    "topology": {"nodes": 2, "services": 1, "pods_per_service": 1, "client_node": 0,
                 "server_node": 1, "waypoint_node": 1, "namespace": "bench"},
    "workload": {"payload_bytes": 1024},
    "load": {"levels": [200, 500], "connections": 4, "processes": 1},
    "timing": {"warmup_s": 3, "window_s": 10},
})


def kind() -> KindBackend:
    kube = FakeKube()
    return KindBackend(SCENARIO, run_id="golden", commands=CommandRecorder(),
                       kube_factory=lambda ctx: kube, clock=FakeClock(), cluster="mb-kind")


def cluster() -> ClusterBackend:
    kube = FakeKube()
    return ClusterBackend(SCENARIO, run_id="golden", context="my-cluster",
                          commands=CommandRecorder(), kube_factory=lambda ctx: kube,
                          clock=FakeClock())


def check_golden(name: str, lines: list[str]) -> None:
    path = GOLDEN / name
    text = "\n".join(lines) + "\n"
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"{path} missing: run with MB_UPDATE_GOLDEN=1 to create it"
    assert text == path.read_text(), f"plan differs from {path}; if intended, MB_UPDATE_GOLDEN=1"


@pytest.mark.parametrize("mode", scen.MODES)
def test_kind_plan_matches_golden(mode: str) -> None:
    check_golden(f"kind_plan_{mode}.txt", kind().plan(mode))


@pytest.mark.parametrize("mode", scen.MODES)
def test_cluster_plan_matches_golden(mode: str) -> None:
    check_golden(f"cluster_plan_{mode}.txt", cluster().plan(mode))


@pytest.mark.parametrize("make_backend", [kind, cluster])
def test_every_check_a_step_names_is_in_the_check_table_and_none_is_unused(make_backend) -> None:
    """provision runs a Check step through backend.checks(): a name missing there would fail
    only midway through a real run, and a check no step names is dead code."""
    b = make_backend()
    named = set()
    for mode in scen.MODES:
        named |= {s.action.name for s in b.steps(mode) + b.teardown_steps()
                  if isinstance(s.action, Check)}
    assert named == set(b.checks())


def test_plan_runs_nothing_and_touches_no_cluster() -> None:
    kube, rec = FakeKube(), CommandRecorder()
    b = KindBackend(SCENARIO, run_id="golden", commands=rec, kube_factory=lambda c: kube,
                    clock=FakeClock(), cluster="mb-kind")
    for mode in scen.MODES:
        b.plan(mode)
    assert rec.calls == [] and kube.calls == []


def index(lines: list[str], text: str) -> int:
    return next(i for i, line in enumerate(lines) if text in line)


def test_plan_order_crds_then_istio_then_gateway() -> None:
    lines = kind().plan("waypoint")
    crds = index(lines, "standard-install.yaml")
    install = index(lines, "istioctl install")
    gateway = index(lines, "apply Gateway")
    assert index(lines, "kind create cluster") < crds < install < gateway
    assert index(lines, "apply Namespace") < gateway < index(lines, "apply Pod")
    assert index(lines, "Gateway mb-bench/waypoint programmed") > gateway
    assert index(lines, "## teardown") > index(lines, "## per cell")


@pytest.mark.parametrize("mode,profile", [("sidecar", "minimal"), ("ambient", "ambient"),
                                          ("waypoint", "ambient")])
def test_each_mode_installs_its_profile_crds_first_and_istiod_pinned(mode: str,
                                                                    profile: str) -> None:
    lines = kind().plan(mode)
    installs = [line for line in lines if "istioctl install" in line]
    assert len(installs) == 1
    assert installs[0].startswith("$ istioctl install --context kind-mb-kind -f - "
                                  "--skip-confirmation <<'EOF'")
    iop = yaml.safe_load(installs[0].split("\n", 1)[1].rsplit("\nEOF", 1)[0])
    assert iop["spec"]["profile"] == profile  # never `default`: no istio-ingressgateway
    assert iop["spec"]["values"]["pilot"]["nodeSelector"] == {"meshbench.io/node": "istiod"}
    # the pinned Gateway API CRDs before Istio in every mode with a mesh
    assert index(lines, "v1.3.0/standard-install.yaml") < index(lines, "istioctl install")
    assert index(lines, "httproutes.gateway.networking.k8s.io established") < \
        index(lines, "istioctl install")


@pytest.mark.parametrize("mode", scen.MODES)
def test_plan_shows_out_of_mesh_master_and_guaranteed_pods(mode: str) -> None:
    text = "\n".join(kind().plan(mode))
    master = text[text.index("--- # apply Pod mb-bench/locust-master"):]
    master = master[:master.index("--- # apply", 5)]
    assert "sidecar.istio.io/inject: 'false'" in master and "istio.io/dataplane-mode: none" in master
    svc = text[text.index("--- # apply Service mb-bench/locust-master"):]
    assert "istio.io/use-waypoint: none" in svc[:svc.index("--- # apply", 5)]
    assert "# check: every pod of the run is Guaranteed" in text
    assert text.count("sidecar.istio.io/proxyCPULimit: '2'") == 2  # server and client pods


def test_calico_variant_in_the_plan() -> None:
    s = scen.from_dict({**SCENARIO.to_dict(), "kind": {"cni": "calico"}})
    b = KindBackend(s, run_id="golden", commands=CommandRecorder(),
                    kube_factory=lambda ctx: FakeKube(), clock=FakeClock(), cluster="mb-kind")
    lines = b.plan("ambient")
    text = "\n".join(lines)
    assert "disableDefaultCNI: true" in text and "podSubnet: 10.244.0.0/16" in text
    assert index(lines, "kind create cluster") < index(lines, "v3.30.2/manifests/calico.yaml") \
        < index(lines, "DaemonSet kube-system/calico-node daemonset-ready") \
        < index(lines, "Node in the cluster") < index(lines, "istioctl install")
    assert "--wait" not in lines[index(lines, "kind create cluster")]
    assert "CNI calico v3.30.2" in lines[1]


def test_baseline_installs_no_istio_and_cluster_backend_installs_nothing() -> None:
    assert not [line for line in kind().plan("baseline") if "istioctl" in line]
    for mode in scen.MODES:
        text = "\n".join(cluster().plan(mode))
        for forbidden in ("kind create", "kind delete", "istioctl", "apply --server-side -f http"):
            assert forbidden not in text, (mode, forbidden)
        assert "--context my-cluster" in text


def test_plan_shows_file_copies_by_name_not_content() -> None:
    text = "\n".join(kind().plan("sidecar"))
    assert "<contents of workloads/locustfiles/hdr_recorder.py>" in text
    assert "import gevent" not in text
