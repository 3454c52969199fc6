"""Generated Kubernetes objects: valid for the pinned Kubernetes, labelled, enrolled per mode,
placed as the mesh model says. Gateway (a CRD the Kubernetes schemas lack) is checked
structurally."""

from __future__ import annotations

import copy
from pathlib import Path

import kubernetes_validate as kv
import pytest
import yaml

from bench import scenario as scen
from bench.backends.kind import kindconfig
from bench.backends.kube import manifests as mf
from bench.backends.kube import versions as v
from bench.backends.kube.orchestrator import kube_mesh
from tests.support.gateway_schema import gateway_problems

K8S = v.KUBERNETES_VERSION.lstrip("v")
MODES = scen.MODES


def scenario(**raw: object) -> scen.Scenario:
    return scen.from_dict({"name": "t", "backend": "kind", **raw})


def objects(mode: str, placement: mf.Placement = mf.NODE_LABELS, workers: int = 2,
            **raw: object) -> list[dict]:
    s = scenario(**raw)
    return mf.workloads(kube_mesh(s, mode), s, namespace="mb-bench", run_id="run-1",
                        placement=placement, workers=workers)


def validate(obj: dict) -> None:
    """Strict schema validation (unknown fields fail); CRD kinds are checked structurally."""
    try:
        kv.validate(obj, K8S, strict=True)
    except kv.SchemaNotFoundError:
        assert obj["kind"] == "Gateway", f"no schema for {obj['kind']}"
        assert gateway_problems(obj) == []


@pytest.mark.parametrize("placement", [mf.NODE_LABELS, mf.ANTI_AFFINITY])
@pytest.mark.parametrize("mode", MODES)
def test_every_object_is_valid_for_the_pinned_kubernetes(mode: str, placement: mf.Placement) -> None:
    objs = objects(mode, placement, topology={"services": 2, "pods_per_service": 2, "nodes": 3})
    assert objs
    for o in objs:
        validate(o)


def test_the_schema_check_is_not_vacuous() -> None:
    bad = copy.deepcopy(next(o for o in objects("baseline") if o["kind"] == "Pod"))
    bad["spec"]["contaners"] = bad["spec"].pop("containers")
    with pytest.raises(kv.ValidationError):
        kv.validate(bad, K8S, strict=True)


@pytest.mark.parametrize("name", sorted(p.name for p in mf.MANIFEST_DIR.glob("*.yaml")))
def test_the_plain_manifest_files_are_valid_as_they_stand(name: str) -> None:
    for doc in yaml.safe_load_all((mf.MANIFEST_DIR / name).read_text()):
        validate(doc)
        assert doc["metadata"]["labels"][v.MANAGED_BY] == v.MANAGER


@pytest.mark.parametrize("mode", MODES)
def test_every_object_carries_the_run_labels(mode: str) -> None:
    for o in objects(mode):
        labels = o["metadata"]["labels"]
        assert labels[v.RUN_ID] == "run-1" and labels[v.MANAGED_BY] == "meshbench", o["kind"]
        assert labels[v.MODE] == mode
        if o["kind"] != "Namespace":
            assert o["metadata"]["namespace"] == "mb-bench"


@pytest.mark.parametrize("mode,want", [
    ("baseline", {}),
    ("sidecar", {"istio-injection": "enabled"}),
    ("ambient", {"istio.io/dataplane-mode": "ambient"}),
    ("waypoint", {"istio.io/dataplane-mode": "ambient", "istio.io/use-waypoint": "waypoint"}),
])
def test_namespace_has_exactly_the_istio_labels_of_the_mode(mode: str, want: dict) -> None:
    ns = objects(mode)[0]
    assert ns["kind"] == "Namespace" and ns["metadata"]["name"] == "mb-bench"
    istio = {k: val for k, val in ns["metadata"]["labels"].items() if "istio" in k}
    assert istio == want
    for o in objects(mode)[1:]:  # pods follow the namespace, but for Locust's master
        if o["metadata"]["name"] == "locust-master":
            continue
        assert not any("istio" in k for k in o["metadata"]["labels"] if k != "istio.io/waypoint-for")


@pytest.mark.parametrize("mode", MODES)
def test_locust_master_stays_out_of_the_mesh_and_the_waypoint(mode: str) -> None:
    """Only the measured client (the Locust workers) is in the mesh; the master's pod opts
    out of injection and of ztunnel capture, its Service out of the waypoint."""
    objs = objects(mode)
    master = next(o for o in objs if o["kind"] == "Pod" and o["metadata"]["name"] == "locust-master")
    svc = next(o for o in objs if o["kind"] == "Service" and o["metadata"]["name"] == "locust-master")
    assert master["metadata"]["labels"]["sidecar.istio.io/inject"] == "false"
    assert master["metadata"]["labels"]["istio.io/dataplane-mode"] == "none"
    assert svc["metadata"]["labels"]["istio.io/use-waypoint"] == "none"
    for w in (o for o in objs if o["kind"] == "Pod" and o["metadata"]["name"].startswith("client-")):
        assert "sidecar.istio.io/inject" not in w["metadata"]["labels"]
        assert "istio.io/dataplane-mode" not in w["metadata"]["labels"]


@pytest.mark.parametrize("mode", MODES)
def test_every_pod_is_guaranteed_in_every_mode_sidecar_included(mode: str) -> None:
    """QoS as the API server computes it, after Istio's injector has done its part
    (tests.support.k8s_fake follows injection-template.yaml's "resources" template): the app and
    Locust pods are Guaranteed with and without a sidecar, with the same figures."""
    from tests.support.k8s_fake import FakeKube, qos_class

    kube = FakeKube()
    kube.seed_istio("ambient" if mode in ("ambient", "waypoint") else "minimal")
    objs = objects(mode)
    for o in objs:
        kube.put(o)
    pods = [kube.get("v1", "Pod", o["metadata"]["name"], "mb-bench") for o in objs
            if o["kind"] == "Pod"]
    assert pods and all(qos_class(p) == "Guaranteed" for p in pods), \
        [(p["metadata"]["name"], qos_class(p)) for p in pods]
    assert mf.qos_problems(pods) == []
    injected = [p for p in pods if any(c["name"] == "istio-proxy" for c in p["spec"]["containers"])]
    assert bool(injected) == (mode == "sidecar")
    res = {(p["metadata"]["name"], c["name"]): c["resources"]["limits"]
           for p in pods for c in p["spec"]["containers"]}
    assert res[("svc-0-0", "app")] == v.APP_RESOURCES
    assert res[("client-0", "locust")] == v.LOCUST_RESOURCES
    if mode == "sidecar":
        assert res[("svc-0-0", "istio-proxy")] == res[("client-0", "istio-proxy")] == v.PROXY_RESOURCES
        assert ("locust-master", "istio-proxy") not in res


def test_a_sidecar_without_the_annotations_makes_the_pod_burstable() -> None:
    """The defect the annotations fix: the chart's default sidecar resources (requests
    100m/128Mi, limits 2000m/1024Mi: global.proxy.resources) are unequal."""
    from tests.support.k8s_fake import FakeKube, qos_class

    kube = FakeKube()
    kube.seed_istio("minimal")
    objs = objects("sidecar")
    for o in objs:
        if o["kind"] == "Pod":
            o["metadata"].pop("annotations", None)
        kube.put(o)
    pod = kube.get("v1", "Pod", "svc-0-0", "mb-bench")
    assert qos_class(pod) == "Burstable"
    assert "Burstable" in mf.qos_problems([pod])[0]


def test_the_plain_manifests_carry_the_same_resources_as_the_code() -> None:
    docs = {(d["kind"], d["metadata"]["name"]): d for f in ("server.yaml", "locust.yaml")
            for d in yaml.safe_load_all((mf.MANIFEST_DIR / f).read_text())}
    def res(name: str) -> dict:
        return docs[("Pod", name)]["spec"]["containers"][0]["resources"]

    assert res("svc-0-0") == mf.guaranteed(v.APP_RESOURCES)
    assert res("client-0") == mf.guaranteed(v.LOCUST_RESOURCES)
    assert res("locust-master") == mf.guaranteed(v.LOCUST_MASTER_RESOURCES)
    for name in ("svc-0-0", "client-0"):
        assert docs[("Pod", name)]["metadata"]["annotations"] == mf.proxy_annotations()
    assert docs[("Pod", "locust-master")]["metadata"]["labels"]["sidecar.istio.io/inject"] == "false"


def test_a_revisioned_istiod_is_selected_by_its_revision_label() -> None:
    s = scenario()
    objs = mf.workloads(kube_mesh(s, "sidecar"), s, namespace="mb-bench", run_id="r",
                        placement=mf.NODE_LABELS, workers=1, revision="1-27-3")
    ns = objs[0]["metadata"]["labels"]
    assert ns["istio.io/rev"] == "1-27-3" and "istio-injection" not in ns
    wp = mf.workloads(kube_mesh(s, "waypoint"), s, namespace="mb-bench", run_id="r",
                      placement=mf.NODE_LABELS, workers=1, revision="1-27-3")
    gw = next(o for o in wp if o["kind"] == "Gateway")
    assert gw["metadata"]["labels"]["istio.io/rev"] == "1-27-3"


def test_gateway_only_in_waypoint_mode_and_well_formed() -> None:
    for mode in ("baseline", "sidecar", "ambient"):
        assert not [o for o in objects(mode) if o["kind"] == "Gateway"]
    gw = next(o for o in objects("waypoint") if o["kind"] == "Gateway")
    assert gateway_problems(gw) == []
    assert gw["spec"]["listeners"] == [{"name": "mesh", "port": 15008, "protocol": "HBONE"}]
    assert gw["spec"]["infrastructure"]["labels"][v.RUN_ID] == "run-1"
    assert gw["spec"]["infrastructure"]["parametersRef"]["name"] == "waypoint-placement"


def test_gateway_structural_check_catches_mistakes() -> None:
    gw = next(o for o in objects("waypoint") if o["kind"] == "Gateway")
    bad = copy.deepcopy(gw)
    bad["spec"]["gatewayClassName"] = "istio"
    bad["spec"]["listeners"][0]["port"] = "15008"
    bad["metadata"]["labels"][v.RUN_ID] = "not valid!"
    problems = gateway_problems(bad)
    assert len(problems) == 4, problems  # class, port type, HBONE/15008, label value


def _pods(objs: list[dict]) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for o in objs if o["kind"] == "Pod"}


def test_client_and_server_pods_are_pinned_to_different_nodes_as_the_model_says() -> None:
    s = scenario()
    mesh = kube_mesh(s, "waypoint")
    objs = objects("waypoint", workers=2)
    pods = _pods(objs)
    node = lambda name: pods[name]["spec"]["nodeSelector"][v.NODE]
    assert node("client-0") == node("client-1") == node("locust-master") == mesh.pod("client-0").node
    assert node("svc-0-0") == mesh.pod("svc-0-0").node != node("client-0")
    cm = next(o for o in objs if o["metadata"]["name"] == "waypoint-placement")
    patch = yaml.safe_load(cm["data"]["deployment"])
    assert patch["spec"]["template"]["spec"]["nodeSelector"] == {v.NODE: mesh.pod("waypoint").node}


def test_anti_affinity_placement_for_clusters_whose_nodes_are_not_ours() -> None:
    pods = _pods(objects("baseline", mf.ANTI_AFFINITY))
    for name, p in pods.items():
        assert "nodeSelector" not in p["spec"]
        term = p["spec"]["affinity"]["podAntiAffinity"][
            "requiredDuringSchedulingIgnoredDuringExecution"][0]
        avoid = "client" if name.startswith("svc-") else "server"
        assert term["labelSelector"]["matchLabels"] == {v.POD_KIND: avoid}
        assert term["topologyKey"] == "kubernetes.io/hostname"


def test_server_pods_serve_the_scenarios_payload_behind_a_clusterip_service() -> None:
    objs = objects("sidecar", workload={"payload_bytes": 4096, "server_delay_ms": 1.5},
                   topology={"services": 2, "pods_per_service": 2, "nodes": 3})
    pods = _pods(objs)
    assert sorted(n for n in pods if n.startswith("svc-")) == ["svc-0-0", "svc-0-1", "svc-1-0", "svc-1-1"]
    args = pods["svc-1-1"]["spec"]["containers"][0]["args"]
    assert args == ["--port", "8080", "--payload-bytes", "4096", "--delay-ms", "1.5"]
    svcs = {o["metadata"]["name"]: o for o in objs if o["kind"] == "Service"}
    assert svcs["svc-1"]["spec"]["type"] == "ClusterIP"
    assert svcs["svc-1"]["spec"]["selector"] == {"app": "svc-1"}
    assert pods["svc-1-1"]["metadata"]["labels"]["app"] == "svc-1"
    assert svcs["svc-1"]["spec"]["ports"][0] == {"name": "http", "port": 80, "targetPort": 8080,
                                                "appProtocol": "http"}


def test_locust_files_and_app_ship_verbatim_in_configmaps() -> None:
    cms = {o["metadata"]["name"]: o for o in objects("ambient") if o["kind"] == "ConfigMap"}
    repo = Path(__file__).resolve().parents[2]  # the checkout, read independently
    assert cms["mb-app"]["data"]["http_server.py"] == (repo / mf.APP_SOURCE).read_text()
    for src in mf.LOCUST_SOURCES:
        assert cms["mb-locust"]["data"][Path(src).name] == (repo / src).read_text()
    assert mf.source_files(cms["mb-locust"]) == {Path(s).name: s for s in mf.LOCUST_SOURCES}


def test_apply_order_namespace_first_pods_last() -> None:
    kinds = [o["kind"] for o in objects("waypoint")]
    assert kinds[0] == "Namespace"
    first_pod = kinds.index("Pod")
    assert all(k == "Pod" for k in kinds[first_pod:])
    assert kinds.index("ConfigMap") < first_pod and kinds.index("Gateway") < first_pod


def test_label_value_is_always_valid() -> None:
    assert mf.label_value("20250101T000000Z-quick-123") == "20250101T000000Z-quick-123"
    assert mf.label_value("-a b/c-") == "a-b-c"
    assert len(mf.label_value("x" * 100)) == 63


def pod_obj(name: str, containers: list[str], annotations: dict | None = None) -> dict:
    return {"metadata": {"name": name, "annotations": annotations or {}},
            "spec": {"containers": [{"name": c} for c in containers]}}


def test_enrolment_problems_per_mode() -> None:
    plain = pod_obj("a", ["app"])
    injected = pod_obj("b", ["app", "istio-proxy"])
    native = {"metadata": {"name": "n"}, "spec": {"containers": [{"name": "app"}],
                                                   "initContainers": [{"name": "istio-proxy"}]}}
    ambient = pod_obj("c", ["app"], {"ambient.istio.io/redirection": "enabled"})
    assert mf.enrolment_problems("baseline", [plain]) == []
    assert mf.enrolment_problems("baseline", [injected])
    assert mf.enrolment_problems("sidecar", [injected, native]) == []
    assert "no istio-proxy" in mf.enrolment_problems("sidecar", [plain])[0]
    assert mf.enrolment_problems("ambient", [ambient]) == []
    assert "not captured" in mf.enrolment_problems("waypoint", [plain])[0]


def test_kind_config_one_control_plane_and_a_labelled_worker_per_model_node() -> None:
    s = scenario(topology={"nodes": 3, "client_node": 2, "server_node": 0, "waypoint_node": 0})
    cfg = kindconfig.config(s, "mb-kind")
    assert cfg["apiVersion"] == "kind.x-k8s.io/v1alpha4" and cfg["name"] == "mb-kind"
    roles = [n["role"] for n in cfg["nodes"]]
    assert roles == ["control-plane", "worker", "worker", "worker", "worker"]
    assert {n["image"] for n in cfg["nodes"]} == {v.NODE_IMAGE}
    assert "@sha256:" in v.NODE_IMAGE and v.KUBERNETES_VERSION in v.NODE_IMAGE
    assert [n["labels"] for n in cfg["nodes"][1:]] == [
        {v.NODE: "node0", v.NODE_ROLE: "server"}, {v.NODE: "node1", v.NODE_ROLE: "spare"},
        {v.NODE: "node2", v.NODE_ROLE: "client"},
        {v.NODE: "istiod", v.NODE_ROLE: "istiod"}]  # istiod's own worker
    assert "networking" not in cfg  # kindnet, kind's default


def test_kind_config_with_calico_disables_kindnet_and_sets_the_pod_subnet() -> None:
    cfg = kindconfig.config(scenario(kind={"cni": "calico"}), "mb-kind")
    assert cfg["networking"] == {"disableDefaultCNI": True, "podSubnet": v.POD_SUBNET}
    with pytest.raises(scen.ScenarioError, match="kind.cni is for backend kind"):
        scen.from_dict({"name": "t", "backend": "cluster", "kind": {"cni": "calico"}})
    with pytest.raises(scen.ScenarioError, match="not allowed"):
        scenario(kind={"cni": "flannel"})
    # a default kind section leaves the scenario hash as it was before the section existed
    assert scenario().hash == scenario(kind={"cni": "kindnet"}).hash != \
        scenario(kind={"cni": "calico"}).hash


def test_existing_cluster_matches_only_with_the_same_nodes() -> None:
    s = scenario()
    nodes = [{"metadata": {"name": "cp", "labels": {}},
              "status": {"nodeInfo": {"kubeletVersion": "v1.33.1"}}}]
    for n in kindconfig.config(s, "mb-kind")["nodes"][1:]:
        nodes.append({"metadata": {"name": "w", "labels": n["labels"]},
                      "status": {"nodeInfo": {"kubeletVersion": "v1.33.1"}}})
    assert kindconfig.mismatches(s, nodes) == []
    assert kindconfig.mismatches(s, nodes, "kindnet") == []
    assert "runs kindnet" in kindconfig.mismatches(scenario(kind={"cni": "calico"}), nodes,
                                                   "kindnet")[0]
    assert kindconfig.mismatches(s, nodes[:-1])  # no istiod worker: a mismatch
    assert kindconfig.mismatches(scenario(topology={"nodes": 3}), nodes)
    nodes[1]["status"]["nodeInfo"]["kubeletVersion"] = "v1.32.0"
    assert "v1.32.0" in kindconfig.mismatches(s, nodes)[0]


def test_the_waypoint_envoy_gets_the_sidecars_resources() -> None:
    """Same Envoy budget as a sidecar: Istio's default 2-CPU limit, so pilot-agent gives
    both 2 worker threads (pilot/cmd/pilot-agent/config/config.go derives concurrency
    from the CPU limit)."""
    cm = next(o for o in objects("waypoint") if o["metadata"]["name"] == "waypoint-placement")
    patch = yaml.safe_load(cm["data"]["deployment"])
    (proxy,) = patch["spec"]["template"]["spec"]["containers"]
    assert proxy == {"name": "istio-proxy", "resources": mf.guaranteed(v.PROXY_RESOURCES)}
    assert v.PROXY_RESOURCES["cpu"] == "2"
    plain = {(d["kind"], d["metadata"]["name"]): d
             for d in yaml.safe_load_all((mf.MANIFEST_DIR / "waypoint.yaml").read_text())}
    assert yaml.safe_load(plain[("ConfigMap", "waypoint-placement")]["data"]["deployment"])[
        "spec"]["template"]["spec"]["containers"] == [proxy]
