"""The real-istiod sweep's pure parts: the simulated cluster's objects, the proxies'
identities, the changes, the exposure count, the sweep file's checks, the slopes."""

from __future__ import annotations

import base64
import json
import os
import socket

import pandas as pd
import pytest

from analysis.istiod import slope_row
from bench.errors import PrerequisiteError, ScenarioError
from bench.istiod import build, changes, cluster, proxies
from bench.istiod.cluster import Shape
from bench.istiod.kubeapi import KubeAPI, path_of
from bench.istiod.sweep import exposure_of, read_spec


def test_shape_counts_nodes_namespaces_services() -> None:
    s = Shape(10_000, "ambient")
    assert (s.services, s.namespaces, s.nodes) == (1000, 100, 1000)
    assert Shape(7, "sidecar", pods_per_service=5, services_per_namespace=1).namespaces == 2


def test_pods_are_unique_and_placed() -> None:
    refs = list(cluster.pods(Shape(1200, "sidecar")))
    assert len({r.ip for r in refs}) == 1200
    assert len({(r.namespace, r.name) for r in refs}) == 1200
    assert refs[0].namespace == "mb-ns-0" and refs[-1].namespace == "mb-ns-11"
    assert all(r.ip.startswith("10.250.") for r in refs)


def test_mode_labels_as_injector_and_cni_leave_them() -> None:
    ref = next(cluster.pods(Shape(10, "sidecar")))
    side = Shape(10, "sidecar")
    amb = Shape(10, "ambient")
    assert cluster.pod_labels(side, ref)["security.istio.io/tlsMode"] == "istio"
    assert "security.istio.io/tlsMode" not in cluster.pod_labels(amb, ref)
    assert cluster.pod_annotations(amb) == {"ambient.istio.io/redirection": "enabled"}
    assert "sidecar.istio.io/status" in cluster.pod_annotations(side)
    ns = cluster.namespace_objects(Shape(10, "waypoint"))[0]["metadata"]["labels"]
    assert ns["istio.io/use-waypoint"] == "waypoint"


def test_pod_status_is_running_ready_with_its_ip() -> None:
    ref = next(cluster.pods(Shape(10, "ambient")))
    st = cluster.pod_status(ref, {"metadata": {}})["status"]
    assert st["podIP"] == ref.ip and st["phase"] == "Running"
    assert {"type": "Ready", "status": "True"}.items() <= next(
        c for c in st["conditions"] if c["type"] == "Ready").items()


def test_proxy_identities_per_mode() -> None:
    shape = Shape(20, "waypoint", pods_per_service=5, services_per_namespace=2, pods_per_node=5)
    refs = list(cluster.pods(shape))
    wp = cluster.waypoint_objects(shape, 0)[1]
    px = proxies.for_mode(shape, [*refs, wp])
    roles = [p.role for p in px]
    assert roles.count("ztunnel") == shape.nodes == 4 and roles.count("waypoint") == 1
    w = next(p for p in px if p.role == "waypoint")
    assert w.node_id.startswith("waypoint~10.252.") and w.node_id.endswith(
        "~mb-ns-0.svc.cluster.local")
    side = proxies.for_mode(Shape(20, "sidecar"), refs)
    assert len(side) == 20
    first = side[0]
    assert first.node_id == (f"sidecar~{refs[0].ip}~{refs[0].name}.{refs[0].namespace}"
                             f"~{refs[0].namespace}.svc.cluster.local")
    assert isinstance(first.metadata["INSTANCE_IPS"], str)
    assert first.metadata["CLUSTER_ID"] == "Kubernetes"


def test_changes_are_istio_objects() -> None:
    shape = Shape(20, "sidecar", pods_per_service=5, services_per_namespace=2)
    refs = list(cluster.pods(shape))
    svc, sl = changes.objects("new_service", shape, refs)
    assert svc["kind"] == "Service" and sl["metadata"]["labels"][
        "kubernetes.io/service-name"] == "svc-new"
    assert len(sl["endpoints"]) == 5
    one = changes.objects("l4_authz_one", shape, refs)[0]
    assert one["metadata"]["namespace"] == refs[-1].namespace
    assert list(one["spec"]["selector"]["matchLabels"]) == [cluster.POD_LABEL]
    with pytest.raises(Exception, match="unknown experiment"):
        changes.objects("l9_magic", shape, refs)


def test_exposure_counts_services_workloads_policies() -> None:
    shape = Shape(20, "sidecar", pods_per_service=5, services_per_namespace=2)
    refs = list(cluster.pods(shape))
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    cds = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
    eds = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
    lds = "type.googleapis.com/envoy.config.listener.v3.Listener"
    bodies = {cds: {"outbound|80||svc-0.mb-ns-0.svc.cluster.local": b64(b"x"),
                    "outbound|80||svc-3.mb-ns-1.svc.cluster.local": b64(b"x"),
                    "outbound|80||elsewhere.example": b64(b"x")},
              eds: {"e": b64(b"".join(b"\x12" + bytes([len(r.ip)]) + r.ip.encode()
                                      for r in (refs[0], refs[7])))},
              lds: {"l": b64(b"ns[mb-ns-0]-policy[deny-intruder]-rule[0]")}}
    pol = [("mb-ns-0", "deny-intruder"), ("mb-ns-1", "other")]
    ex = exposure_of("sidecar", bodies, shape, refs, pol)
    assert ex["services_known"] == 2 and ex["services_total"] == 4
    assert ex["workloads_known"] == 2 and ex["policies_known"] == 1
    # an address is matched whole: pod 10.250.0.10 is not found inside 10.250.0.100
    long_ip = "10.250.0.100"
    inside = {eds: {"e": b64(b"\x12" + bytes([len(long_ip)]) + long_ip.encode())}}
    assert refs[9].ip == "10.250.0.10" and len(refs) == 20
    assert exposure_of("sidecar", inside, shape, refs, [])["workloads_known"] == 0
    addr = "type.googleapis.com/istio.workload.Address"
    zt = {addr: {"Kubernetes//Pod/mb-ns-0/svc-0-0": b64(socket.inet_aton(refs[0].ip)),
                 "mb-ns-0/svc-0.mb-ns-0.svc.cluster.local": b64(b"")}}
    ez = exposure_of("ztunnel", zt, shape, refs, [])
    assert ez["workloads_known"] == 1 and ez["services_known"] == 1
    authz = "type.googleapis.com/istio.security.Authorization"
    zt[authz] = {"mb-ns-0/deny-intruder-one": b64(b"")}
    two = [("mb-ns-0", "deny-intruder"), ("mb-ns-0", "deny-intruder-one")]
    assert exposure_of("ztunnel", zt, shape, refs, two)["policies_known"] == 1
    assert exposure_of("sidecar", bodies, shape, refs, two)["policies_known"] == 1


def test_spec_refuses_typos_and_unknown_modes(tmp_path) -> None:
    assert read_spec("fanout-istiod").sizes == (10, 100, 1000, 3000, 10000)
    smoke = read_spec("fanout-istiod-smoke")
    assert set(smoke.modes) == {"sidecar", "ambient", "waypoint"}
    bad = tmp_path / "x.yaml"
    bad.write_text("name: x\nmodes: [sidecar]\nsizes: [10]\npods_per_servce: 3\n")
    with pytest.raises(ScenarioError, match="pods_per_servce"):
        read_spec(str(bad))
    bad.write_text("name: x\nmodes: [baseline]\nsizes: [10]\n")
    with pytest.raises(ScenarioError, match="baseline"):
        read_spec(str(bad))
    with pytest.raises(ScenarioError, match="no real-istiod sweep"):
        read_spec("nope")


def test_slope_of_a_line_and_its_exponent() -> None:
    pts = pd.DataFrame({"pods": [10, 100, 1000, 10000], "value": [30.0, 300.0, 3000.0, 30000.0]})
    r = slope_row(pts)
    assert r["slope"] == pytest.approx(3.0) and r["exponent"] == pytest.approx(1.0)
    assert "why" in slope_row(pts.head(2))


def test_pseudo_version_commit_and_date() -> None:
    assert build.pseudo_commit(build.ISTIO_VERSION) == ("eed52ebb66ad", "2026-08-27T12:45:20Z")
    assert build.pseudo_commit("v1.2.3") == ("", "")


def test_binaries_cache_outside_the_repo(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MB_CACHE", str(tmp_path))
    for b in build.binaries().values():
        assert str(b.path).startswith(str(tmp_path)) and b.version in str(b.path)
        assert not b.built


def test_api_paths_and_loopback_only() -> None:
    assert path_of("v1", "Pod", "ns", "p", "status") == "/api/v1/namespaces/ns/pods/p/status"
    assert path_of("v1", "Namespace", "", "n") == "/api/v1/namespaces/n"
    assert path_of("security.istio.io/v1", "AuthorizationPolicy", "a") == (
        "/apis/security.istio.io/v1/namespaces/a/authorizationpolicies")
    with pytest.raises(ValueError):
        KubeAPI("https://10.0.0.1:6443", "t")
    json.dumps(cluster.node_objects(Shape(10, "ambient")))


def test_teardown_kills_only_its_own_processes(tmp_path) -> None:
    """remove_all (meshbench teardown --all): a listed PID still running the listed
    executable is killed; one now running something else (a reused PID) is left alone."""
    import subprocess

    from bench.istiod.controlplane import remove_all

    d = tmp_path / "istiod"
    d.mkdir()
    ours = subprocess.Popen(["sleep", "60"])
    stranger = subprocess.Popen(["sleep", "60"])
    try:
        exe = os.readlink(f"/proc/{ours.pid}/exe")
        (d / "pids").write_text(f"{ours.pid} {exe}\n{stranger.pid} /usr/bin/not-sleep\n")
        removed = remove_all(d)
        assert ours.wait(timeout=30) is not None
        assert stranger.poll() is None, "a PID running another executable was killed"
        assert not d.exists() and any(str(ours.pid) in r for r in removed)
    finally:
        for p in (ours, stranger):
            p.kill()
            p.wait()


def test_compat_profile_env(tmp_path) -> None:
    from bench.istiod.controlplane import COMPAT_PROFILE, compat_env

    f = tmp_path / COMPAT_PROFILE
    f.parent.mkdir(parents=True)
    f.write_text("pilot:\n  env:\n    PILOT_AUTO_SEND_UNHEALTHY_ENDPOINTS: false\n")
    assert compat_env(tmp_path, "1.27") == {"PILOT_AUTO_SEND_UNHEALTHY_ENDPOINTS": "false"}
    with pytest.raises(PrerequisiteError, match="no Istio compatibility profile 1.20"):
        compat_env(tmp_path, "1.20")
