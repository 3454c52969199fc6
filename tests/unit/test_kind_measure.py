"""Measurements on kube backends: Prometheus text, istiod metric families, metrics-API
quantities, and host process discovery mapped to pods through a fake /proc."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import scenario as scen
from bench.backends.kind import measure
from bench.k8s import KubeError
from bench.k8s_fake import FakeKube

ISTIOD_TEXT = """\
# HELP pilot_xds_pushes Pilot build and send errors for lds, rds, cds and eds.
# TYPE pilot_xds_pushes counter
pilot_xds_pushes{type="cds"} 12
pilot_xds_pushes{type="eds"} 40
pilot_proxy_convergence_time_bucket{le="0.1"} 30
pilot_proxy_convergence_time_bucket{le="+Inf"} 31
pilot_proxy_convergence_time_sum 1.25
pilot_proxy_convergence_time_count 31
pilot_xds_config_size_bytes_bucket{type="type.googleapis.com/envoy.config.cluster.v3.Cluster",le="1000"} 3
pilot_xds{version="1.27.3"} 4
pilot_k8s_cfg_events{type="ServiceEntry",event="add"} 1
go_goroutines 310
"""


def test_scrape_keeps_the_istiod_families_only() -> None:
    got = measure.scrape(ISTIOD_TEXT)
    assert got['pilot_xds_pushes{type="cds"}'] == 12
    assert got["pilot_proxy_convergence_time_count"] == 31
    assert got['pilot_proxy_convergence_time_bucket{le="+Inf"}'] == 31
    assert any(k.startswith("pilot_xds_config_size_bytes_bucket") for k in got)
    assert got['pilot_xds{version="1.27.3"}'] == 4
    assert not any(k.startswith(("go_", "pilot_k8s_cfg_events")) for k in got)
    assert set(measure.ISTIOD_METRICS) >= {"pilot_xds_pushes", "pilot_proxy_convergence_time",
                                           "pilot_xds_config_size_bytes"}


def test_totals_sum_matching_labels() -> None:
    text = ('istio_requests_total{reporter="source",response_code="200"} 5\n'
            'istio_requests_total{reporter="source",response_code="503"} 2\n'
            'istio_requests_total{reporter="destination",response_code="200"} 4\n'
            'garbage line\n')
    assert measure.totals(text, "istio_requests_total") == 11
    assert measure.totals(text, "istio_requests_total", reporter="source") == 7
    assert measure.totals(text, "nothing") == 0


@pytest.mark.parametrize("q,cores", [("250m", 0.25), ("123456n", 0.000123456), ("2", 2.0),
                                     ("1500u", 0.0015)])
def test_cpu_quantities(q: str, cores: float) -> None:
    assert measure.cpu_cores(q) == pytest.approx(cores)


@pytest.mark.parametrize("q,b", [("12Ki", 12 * 1024), ("60Mi", 60 * 2**20), ("1G", 1e9),
                                 ("512", 512)])
def test_memory_quantities(q: str, b: float) -> None:
    assert measure.memory_bytes(q) == b


def test_bad_quantity_raises() -> None:
    with pytest.raises(ValueError):
        measure.cpu_cores("1.5 cores")


def test_pod_usage_from_the_metrics_api() -> None:
    kube = FakeKube()
    assert measure.metrics_api_status(kube)[0] == "skipped"
    with pytest.raises(KubeError):
        measure.pod_usage(kube, "mb-bench")
    kube.metrics_served = True
    kube.pod_metrics["mb-bench"] = [{
        "metadata": {"name": "client-0"}, "window": "10.5s",
        "containers": [{"name": "istio-proxy", "usage": {"cpu": "210m", "memory": "61Mi"}},
                       {"name": "locust", "usage": {"cpu": "900000000n", "memory": "80Mi"}}]}]
    assert measure.metrics_api_status(kube) == ("ok", "")
    usage = measure.pod_usage(kube, "mb-bench")
    assert [(u.container, u.cpu_cores, u.memory_bytes, u.window_s) for u in usage] == [
        ("istio-proxy", 0.21, 61 * 2**20, 10.5), ("locust", 0.9, 80 * 2**20, 10.5)]


# ---- discovery from a fake /proc --------------------------------------------------------------

NODE_CID = "a" * 64


def cgroup(uid: str, cid: str) -> str:
    u = uid.replace("-", "_")
    return (f"0::/system.slice/docker-{NODE_CID}.scope/kubelet.slice/kubelet-kubepods.slice/"
            f"kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod{u}.slice/"
            f"cri-containerd-{cid}.scope\n")


def proc(root: Path, pid: int, comm: str, ppid: int, cg: str = "0::/\n") -> None:
    d = root / str(pid)
    d.mkdir(parents=True)
    (d / "comm").write_text(comm + "\n")
    (d / "stat").write_text(f"{pid} ({comm}) S {ppid} {pid} {pid} 0 -1 4194560 0 0\n")
    (d / "cgroup").write_text(cg)


def test_discover_maps_host_processes_to_our_pods(tmp_path: Path) -> None:
    pytest.importorskip("bench.probes.discovery")
    kube = FakeKube(simulate_istio=False)
    kube.put({"apiVersion": "v1", "kind": "Node",
              "metadata": {"name": "mb-kind-worker", "labels": {"meshbench.io/node": "node0"}}})
    uids = {}
    for name, ns, labels in [("client-0", "mb-bench", {}),
                             ("waypoint-x", "mb-bench",
                              {"gateway.networking.k8s.io/gateway-name": "waypoint"}),
                             ("ztunnel-1", "istio-system", {"app": "ztunnel"})]:
        obj = kube.put({"apiVersion": "v1", "kind": "Pod",
                        "metadata": {"name": name, "namespace": ns, "labels": labels},
                        "spec": {"nodeName": "mb-kind-worker", "containers": []}})
        uids[name] = obj["metadata"]["uid"]
    root = tmp_path / "proc"
    proc(root, 100, "pilot-agent", 1, cgroup(uids["client-0"], "b" * 64))
    proc(root, 101, "envoy", 100, cgroup(uids["client-0"], "b" * 64))
    proc(root, 110, "pilot-agent", 1, cgroup(uids["waypoint-x"], "c" * 64))
    proc(root, 111, "envoy", 110, cgroup(uids["waypoint-x"], "c" * 64))
    proc(root, 200, "ztunnel", 1, cgroup(uids["ztunnel-1"], "d" * 64))
    proc(root, 300, "envoy", 1)  # not started by pilot-agent: not an Istio proxy
    proc(root, 400, "ztunnel", 1, cgroup("11111111-2222-3333-4444-555555555555", "e" * 64))
    d = measure.discover(kube, ["mb-bench", "istio-system"], root)
    assert d.status == "ok"
    got = {(r.pid, r.role, r.entity, r.pod, r.node, r.namespace) for r in d.processes}
    assert got == {(101, "sidecar", "sidecar/client-0", "client-0", "node0", "mb-bench"),
                   (111, "waypoint", "waypoint/waypoint-x", "waypoint-x", "node0", "mb-bench"),
                   (200, "ztunnel", "ztunnel/node0", "ztunnel-1", "node0", "istio-system")}


def test_discover_says_why_when_the_host_sees_no_pods(tmp_path: Path) -> None:
    (tmp_path / "proc").mkdir()
    d = measure.discover(FakeKube(), ["mb-bench"], tmp_path / "proc")
    assert d.status == "skipped" and d.processes == ()
    assert "metrics API" in d.reason


def test_discovered_kind_processes_become_hop_targets_in_path_order() -> None:
    """The per-hop probe on kind: host PIDs of the discovered proxies, sides from the mesh
    model's client pod and node (kind workers are labelled with the model's node names)."""
    from bench.backends.base import Deployment, ProcessRef
    from bench.backends.kind.orchestrator import kube_mesh
    from bench.probes.hops import path_order, targets_for

    s = scen.from_dict({"name": "t", "backend": "kind"})
    mesh = kube_mesh(s, "waypoint")
    client_node = mesh.pod(mesh.client).node
    server_node = next(n.name for n in mesh.nodes if n.name != client_node)
    procs = [ProcessRef(300, "ztunnel", f"ztunnel/{server_node}", "ztunnel-b", server_node,
                        "istio-system"),
             ProcessRef(200, "waypoint", "waypoint/waypoint-x", "waypoint-x", server_node,
                        "mb-bench"),
             ProcessRef(100, "ztunnel", f"ztunnel/{client_node}", "ztunnel-a", client_node,
                        "istio-system"),
             ProcessRef(50, "controlplane", "istiod", "istiod-1", server_node, "istio-system")]
    dep = Deployment(mesh=mesh, load_netns=None, url="http://svc-0", processes=procs)
    targets = targets_for(dep)
    assert [(t.role, t.side) for t in targets] == path_order("waypoint")
    assert [t.pid for t in targets] == [100, 200, 300]


def test_bcc_status_follows_discovery() -> None:
    from bench.backends.base import ProcessRef

    skipped = measure.bcc_status(measure.Discovery((), "skipped", "no pods visible"))
    assert skipped["status"] == "skipped" and "host PIDs" in skipped["reason"]
    seen = measure.Discovery((ProcessRef(101, "sidecar", "sidecar/client-0", "client-0",
                                         "node0", "mb-bench"),), "ok")
    status = measure.bcc_status(seen)
    assert status["targets"] == 1 and "unmatched" in status["note"]
    # whether BCC itself can run here decides the rest, with its reason when it cannot
    assert status["status"] in ("ok", "skipped") and (status["status"] == "ok" or status["reason"])
