"""Measurements on kube backends: Prometheus text, istiod metric families, metrics-API
quantities, and host process discovery mapped to pods through a fake /proc."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import scenario as scen
from bench.backends.kube import measure
from bench.backends.kube.k8s import KubeError
from tests.support.k8s_fake import FakeKube

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
    """pilot-agent is part of a sidecar's and a waypoint's cost (entity <proxy>/pilot-agent,
    same role), as the metrics API's istio-proxy container is; only the pods given (the
    run's, its ztunnels) count: an istio-ingressgateway's Envoy and agent are left out."""
    kube = FakeKube(simulate_istio=False)
    kube.put({"apiVersion": "v1", "kind": "Node",
              "metadata": {"name": "mb-kind-worker", "labels": {"meshbench.io/node": "node0"}}})
    objs = {}
    for name, ns, labels in [("client-0", "mb-bench", {}),
                             ("waypoint-x", "mb-bench",
                              {"gateway.networking.k8s.io/gateway-name": "waypoint"}),
                             ("ztunnel-1", "istio-system", {"app": "ztunnel"}),
                             ("istio-ingressgateway-1", "istio-system",
                              {"app": "istio-ingressgateway", "istio": "ingressgateway"})]:
        objs[name] = kube.put({"apiVersion": "v1", "kind": "Pod",
                               "metadata": {"name": name, "namespace": ns, "labels": labels},
                               "spec": {"nodeName": "mb-kind-worker", "containers": []}})
    uids = {n: o["metadata"]["uid"] for n, o in objs.items()}
    root = tmp_path / "proc"
    proc(root, 100, "pilot-agent", 1, cgroup(uids["client-0"], "b" * 64))
    proc(root, 101, "envoy", 100, cgroup(uids["client-0"], "b" * 64))
    proc(root, 110, "pilot-agent", 1, cgroup(uids["waypoint-x"], "c" * 64))
    proc(root, 111, "envoy", 110, cgroup(uids["waypoint-x"], "c" * 64))
    proc(root, 120, "pilot-agent", 1, cgroup(uids["istio-ingressgateway-1"], "f" * 64))
    proc(root, 121, "envoy", 120, cgroup(uids["istio-ingressgateway-1"], "f" * 64))
    proc(root, 200, "ztunnel", 1, cgroup(uids["ztunnel-1"], "d" * 64))
    proc(root, 300, "envoy", 1)  # not started by pilot-agent: not an Istio proxy
    proc(root, 400, "ztunnel", 1, cgroup("11111111-2222-3333-4444-555555555555", "e" * 64))
    ours = [objs[n] for n in ("client-0", "waypoint-x", "ztunnel-1")]
    d = measure.discover(kube, ours, root)
    assert d.status == "ok"
    got = {(r.pid, r.role, r.entity, r.pod, r.node, r.namespace, r.process) for r in d.processes}
    assert got == {
        (100, "sidecar", "sidecar/client-0/pilot-agent", "client-0", "node0", "mb-bench",
         "pilot-agent"),
        (101, "sidecar", "sidecar/client-0", "client-0", "node0", "mb-bench", "envoy"),
        (110, "waypoint", "waypoint/waypoint-x/pilot-agent", "waypoint-x", "node0", "mb-bench",
         "pilot-agent"),
        (111, "waypoint", "waypoint/waypoint-x", "waypoint-x", "node0", "mb-bench", "envoy"),
        (200, "ztunnel", "ztunnel/node0", "ztunnel-1", "node0", "istio-system", "ztunnel")}


def test_pilot_agent_counts_in_the_role_but_not_as_another_proxy(tmp_path: Path) -> None:
    """The role sum of the host path includes pilot-agent, as the metrics API's container
    figure does; the proxy count stays one per sidecar."""
    from bench.probes.processes import Target, write_targets  # noqa: F401
    from bench.probes.resources import summarize_window
    from bench.store import Cell

    rows = []
    for seq, ts in enumerate((0.0, 10.0)):
        for pid, entity, cpu_s in ((101, "sidecar/client-0", 1.0),
                                   (100, "sidecar/client-0/pilot-agent", 0.2)):
            rows.append({"ts": ts, "mono": ts, "seq": seq, "pid": pid, "entity": entity,
                         "role": "sidecar", "pod": "client-0", "namespace": "mb-bench",
                         "node": "node0", "mode": "sidecar", "cpu_ns": int(cpu_s * ts * 1e9),
                         "cpu_ticks_s": cpu_s * ts, "rss_bytes": 50 * 2**20, "threads": 2})
    path = tmp_path / "resources.jsonl"
    import json
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    res = summarize_window(path, 0.0, 10.0, Cell(1, "sidecar", 200))
    role = next(r for r in res.samples if r.entity == "role:sidecar" and r.metric == "cpu_cores")
    assert role.value == pytest.approx(1.2)
    assert role.labels["entities"] == 1 and role.labels["processes"] == 2


def test_metrics_api_rows_count_the_whole_istio_proxy_container() -> None:
    """The metrics-API path: per container of our pods only, named like the host path's
    entities, role sums and the data plane; memory is the working set, said so."""
    from bench.store import Cell

    pods = [
        {"metadata": {"name": "client-0", "namespace": "mb-bench",
                      "labels": {"meshbench.io/kind": "client"}}, "spec": {"nodeName": "w1"}},
        {"metadata": {"name": "svc-0-0", "namespace": "mb-bench",
                      "labels": {"meshbench.io/kind": "server"}}, "spec": {"nodeName": "w2"}},
        {"metadata": {"name": "ztunnel-0", "namespace": "istio-system",
                      "labels": {"app": "ztunnel"}}, "spec": {"nodeName": "w1"}},
    ]
    usage = [measure.Usage("mb-bench", "client-0", "istio-proxy", 0.25, 64 * 2**20, 15.0),
             measure.Usage("mb-bench", "client-0", "locust", 0.5, 80 * 2**20, 15.0),
             measure.Usage("mb-bench", "svc-0-0", "istio-proxy", 0.15, 60 * 2**20, 15.0),
             measure.Usage("mb-bench", "svc-0-0", "app", 0.05, 30 * 2**20, 15.0),
             measure.Usage("istio-system", "ztunnel-0", "istio-proxy", 0.1, 20 * 2**20, 15.0),
             measure.Usage("team-a", "reviews-1", "istio-proxy", 9.0, 2**30, 15.0)]
    rows = measure.usage_samples(usage, pods, {"w1": "node0", "w2": "node1"},
                                 Cell(1, "sidecar", 200), 100.0)
    cpu = {r.entity: r.value for r in rows if r.metric == "cpu_cores"}
    assert cpu["sidecar/client-0"] == 0.25 and cpu["loadgen/client-0"] == 0.5
    assert cpu["ztunnel/node0"] == 0.1 and cpu["app/svc-0-0"] == 0.05
    assert cpu["role:sidecar"] == pytest.approx(0.4)
    assert cpu["dataplane"] == pytest.approx(0.5)  # sidecars + ztunnel, never team-a's
    assert {r.metric for r in rows} == {"cpu_cores", "working_set_mib"}
    assert all(r.labels["via"] == "metrics-api" for r in rows)


def test_discover_says_why_when_the_host_sees_no_pods(tmp_path: Path) -> None:
    (tmp_path / "proc").mkdir()
    d = measure.discover(FakeKube(), [], tmp_path / "proc")
    assert d.status == "skipped" and d.processes == ()
    assert "metrics API" in d.reason


def test_measure_imports_discovery_without_a_fallback() -> None:
    """A broken discovery module must fail loudly, not turn into a skip with a TODO."""
    import inspect

    src = inspect.getsource(measure)
    assert "except ImportError" not in src and "TODO" not in src


def test_discovered_kind_processes_become_hop_targets_in_path_order() -> None:
    """The per-hop probe on kind: host PIDs of the discovered proxies, sides from the mesh
    model's client pod and node (kind workers are labelled with the model's node names)."""
    from bench.backends.base import Deployment, ProcessRef
    from bench.backends.kube.orchestrator import kube_mesh
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
