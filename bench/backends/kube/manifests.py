"""The Kubernetes objects of one mode, from the plain manifests in workloads/k8s/.

The YAML files there are complete, appliable examples. This module copies their objects
and sets only what the scenario and the mesh model decide: names, namespace, run labels,
the mode's Istio labels, node placement, payload. No text templating.

    objs = workloads(mesh, scenario, namespace="mb-bench", run_id="r1",
                     placement=NODE_LABELS, workers=1)
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import yaml

from bench.backends.kube import versions
from bench.mesh import APP_PORT, Mesh
from bench.paths import SOURCE_ROOT
from bench.paths import workloads as workloads_dir
from bench.scenario import Scenario

MANIFEST_DIR = workloads_dir() / "k8s"
APP_SOURCE = "bench/apps/http_server.py"
LOCUST_SOURCES = ("workloads/locustfiles/mesh_http.py", "workloads/locustfiles/hdr_recorder.py",
                  "workloads/locustfiles/arrivals.py")
SOURCES_ANNOTATION = "meshbench.io/sources"  # ConfigMap keys that are copies of repo files


def _source(name: str) -> Path:
    """A file the pods run, by its path in the checkout ("workloads/..." or "bench/..."),
    found where this meshbench keeps it (bench.paths)."""
    if name.startswith("workloads/"):
        return workloads_dir() / name.removeprefix("workloads/")
    return SOURCE_ROOT / name
WAYPOINT = "waypoint"
WAYPOINT_POD_LABEL = "gateway.networking.k8s.io/gateway-name"

Placement = Literal["node-labels", "anti-affinity"]
NODE_LABELS: Placement = "node-labels"  # kind: nodes carry meshbench.io/node=nodeN
ANTI_AFFINITY: Placement = "anti-affinity"  # existing cluster: nodes are not ours to label

Obj = dict[str, Any]


def label_value(text: str) -> str:
    """A valid label value (<= 63 chars of [A-Za-z0-9_.-], alphanumeric at both ends)."""
    s = re.sub(r"[^A-Za-z0-9_.-]", "-", text)[:63]
    return re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", s)


def run_labels(run_id: str, mode: str) -> dict[str, str]:
    return {versions.RUN_ID: label_value(run_id), versions.MANAGED_BY: versions.MANAGER, versions.MODE: mode}


def run_selector(run_id: str) -> str:
    return f"{versions.MANAGED_BY}={versions.MANAGER},{versions.RUN_ID}={label_value(run_id)}"


# The Locust master only coordinates the workers: it stays out of the mesh in every mode
# (no sidecar, no ztunnel capture), and its Service never goes through the waypoint, so
# the mesh carries the measured requests and nothing of the load generator's own traffic.
OUT_OF_MESH_POD = {"sidecar.istio.io/inject": "false", "istio.io/dataplane-mode": "none"}
OUT_OF_WAYPOINT_SERVICE = {"istio.io/use-waypoint": "none"}
MASTER = "locust-master"


def proxy_annotations() -> dict[str, str]:
    """The injector's resource annotations (injection-template.yaml, "resources"): an
    injected istio-proxy and istio-init get requests = limits = PROXY_RESOURCES."""
    r = versions.PROXY_RESOURCES
    return {"sidecar.istio.io/proxyCPU": r["cpu"], "sidecar.istio.io/proxyCPULimit": r["cpu"],
            "sidecar.istio.io/proxyMemory": r["memory"],
            "sidecar.istio.io/proxyMemoryLimit": r["memory"]}


def guaranteed(resources: Mapping[str, str]) -> dict[str, dict[str, str]]:
    """requests = limits: with every container so, the pod's QoS class is Guaranteed."""
    return {"requests": dict(resources), "limits": dict(resources)}


def is_default_revision(revision: str) -> bool:
    return revision in ("", "default")


def mode_labels(mode: str, revision: str = "") -> dict[str, str]:
    """The namespace labels that enrol the mode's pods in Istio's data plane. A revisioned
    istiod (istio.io/rev=<rev>) injects only namespaces labelled with its revision."""
    if mode == "sidecar":
        return ({"istio-injection": "enabled"} if is_default_revision(revision)
                else {"istio.io/rev": revision})
    if mode == "ambient":
        return {"istio.io/dataplane-mode": "ambient"}
    if mode == "waypoint":
        return {"istio.io/dataplane-mode": "ambient", "istio.io/use-waypoint": WAYPOINT}
    return {}


def _templates(file: str) -> dict[tuple[str, str], Obj]:
    docs = yaml.safe_load_all((MANIFEST_DIR / file).read_text())
    return {(d["kind"], d["metadata"]["name"]): d for d in docs if d}


def _fresh(template: Obj, name: str, namespace: str, labels: Mapping[str, str]) -> Obj:
    obj = copy.deepcopy(template)
    md = obj["metadata"]
    md["name"] = name
    if obj["kind"] != "Namespace":
        md["namespace"] = namespace
    md["labels"] = {**md.get("labels", {}), **labels}
    return obj


def _config_map(name: str, namespace: str, labels: Mapping[str, str],
                sources: tuple[str, ...]) -> Obj:
    return {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(labels),
                     "annotations": {SOURCES_ANNOTATION: ",".join(sources)}},
        "data": {Path(s).name: _source(s).read_text() for s in sources},
    }


def _place(pod: Obj, mesh: Mesh, node: str, placement: Placement, kind: str) -> None:
    spec = pod["spec"]
    if placement == NODE_LABELS:
        spec["nodeSelector"] = {versions.NODE: node}
        return
    # Without node labels: keep the load generator off every node that runs a server pod.
    if kind in ("client", "locust-master"):
        spec["affinity"] = _anti("server")
    else:
        spec["affinity"] = _anti("client")


def _anti(kind: str) -> Obj:
    return {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{
        "labelSelector": {"matchLabels": {versions.POD_KIND: kind}},
        "topologyKey": "kubernetes.io/hostname"}]}}


def _resources(pod: Obj, main: Mapping[str, str]) -> None:
    """requests = limits on every container the pod declares (init containers included)."""
    spec = pod["spec"]
    for c in spec.get("initContainers", []):
        c["resources"] = guaranteed(versions.INIT_RESOURCES)
    for c in spec["containers"]:
        c["resources"] = guaranteed(main)


def _in_mesh(pod: Obj) -> None:
    pod["metadata"]["annotations"] = {**pod["metadata"].get("annotations", {}),
                                      **proxy_annotations()}


def workloads(mesh: Mesh, scenario: Scenario, *, namespace: str, run_id: str,
              placement: Placement, workers: int, revision: str = "") -> list[Obj]:
    """Every object of the mode, in apply order. `workers` = Locust worker pods;
    `revision`: the istio.io/rev of the istiod in use ("" or "default": the default one)."""
    mode, labels = mesh.mode, run_labels(run_id, mesh.mode)
    ns_t, srv_t = _templates("namespace.yaml"), _templates("server.yaml")
    lc_t = _templates("locust.yaml")
    ns = _fresh(ns_t[("Namespace", "mb-bench")], namespace, namespace,
                {**labels, **mode_labels(mode, revision)})
    out: list[Obj] = [ns]
    out.append(_fresh(lc_t[("ServiceAccount", "client")], "client", namespace, labels))
    for svc in mesh.services:
        out.append(_fresh(srv_t[("ServiceAccount", "svc-0")], svc.name, namespace, labels))
    out.append(_config_map("mb-app", namespace, labels, (APP_SOURCE,)))
    out.append(_config_map("mb-locust", namespace, labels, LOCUST_SOURCES))
    for svc in mesh.services:
        s = _fresh(srv_t[("Service", "svc-0")], svc.name, namespace, labels)
        s["spec"]["selector"] = {"app": svc.name}
        s["spec"]["ports"][0].update(port=svc.port, targetPort=svc.target_port)
        out.append(s)
    out.append(_fresh(lc_t[("Service", MASTER)], MASTER, namespace,
                      {**labels, **OUT_OF_WAYPOINT_SERVICE}))
    if mode == "waypoint":
        out += waypoint_objects(mesh, namespace, labels, placement, revision)
    w = scenario.workload
    for pod in mesh.pods:
        if pod.kind != "server":
            continue
        p = _fresh(srv_t[("Pod", "svc-0-0")], pod.name, namespace, {**labels, "app": pod.service})
        p["spec"]["serviceAccountName"] = pod.service_account
        p["spec"]["containers"][0]["args"] = [
            "--port", str(APP_PORT), "--payload-bytes", str(w.payload_bytes),
            "--delay-ms", f"{w.server_delay_ms:g}"]
        _place(p, mesh, pod.node, placement, "server")
        _resources(p, versions.APP_RESOURCES)
        _in_mesh(p)
        out.append(p)
    client_node = mesh.pod(mesh.client).node
    master = _fresh(lc_t[("Pod", MASTER)], MASTER, namespace, {**labels, **OUT_OF_MESH_POD})
    _place(master, mesh, client_node, placement, "locust-master")
    _resources(master, versions.LOCUST_MASTER_RESOURCES)
    out.append(master)
    for i in range(workers):
        p = _fresh(lc_t[("Pod", "client-0")], f"client-{i}", namespace, labels)
        _place(p, mesh, client_node, placement, "client")
        _resources(p, versions.LOCUST_RESOURCES)
        _in_mesh(p)
        out.append(p)
    return out


def waypoint_objects(mesh: Mesh, namespace: str, labels: Mapping[str, str],
                     placement: Placement, revision: str = "") -> list[Obj]:
    """The placement ConfigMap and the waypoint Gateway (see workloads/k8s/waypoint.yaml).
    The ConfigMap's Deployment patch also gives the waypoint's Envoy the sidecar's
    requests = limits (PROXY_RESOURCES), in place of the chart's global.waypoint.resources."""
    t = _templates("waypoint.yaml")
    cm = _fresh(t[("ConfigMap", "waypoint-placement")], "waypoint-placement", namespace, labels)
    node = mesh.pod(WAYPOINT).node
    if placement == NODE_LABELS:
        pod_spec: Obj = {"nodeSelector": {versions.NODE: node}}
    else:
        # next to the servers when the scenario puts it on their node, else next to the client
        server_nodes = {p.node for p in mesh.pods if p.kind == "server"}
        near = "server" if node in server_nodes else "client"
        pod_spec = {"affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{
            "labelSelector": {"matchLabels": {versions.POD_KIND: near}},
            "topologyKey": "kubernetes.io/hostname"}]}}}
    pod_spec["containers"] = [{"name": "istio-proxy", "resources": guaranteed(versions.PROXY_RESOURCES)}]
    cm["data"]["deployment"] = yaml.safe_dump({"spec": {"template": {"spec": pod_spec}}},
                                              sort_keys=True)
    rev = {} if is_default_revision(revision) else {"istio.io/rev": revision}
    gw = _fresh(t[("Gateway", WAYPOINT)], WAYPOINT, namespace, {**labels, **rev})
    gw["spec"]["infrastructure"]["labels"] = dict(labels)
    return [cm, gw]


def source_files(obj: Mapping[str, Any]) -> dict[str, str]:
    """ConfigMap data key -> the repo file it copies (for plans: shown by name, not inline)."""
    ann = obj.get("metadata", {}).get("annotations", {}).get(SOURCES_ANNOTATION, "")
    return {Path(s).name: s for s in ann.split(",") if s}


# ---- checks of what Istio did to the pods ----------------------------------------------------

def qos_problems(pods: Sequence[Mapping[str, Any]]) -> list[str]:
    """Pods whose QoS class (as the API server computed it) is not Guaranteed."""
    out = []
    for p in pods:
        qos = p.get("status", {}).get("qosClass", "")
        if qos != "Guaranteed":
            out.append(f"pod {p['metadata']['name']} is {qos or 'of unknown QoS class'}, "
                       "not Guaranteed")
    return out


def _containers(pod: Mapping[str, Any]) -> set[str]:
    spec = pod.get("spec", {})
    return {c["name"] for c in spec.get("containers", []) + spec.get("initContainers", [])}


def enrolment_problems(mode: str, pods: Sequence[Mapping[str, Any]]) -> list[str]:
    """Why the mode's pods are not in the data plane the mode needs; empty when they are.

    sidecar: every pod has an istio-proxy container (a native sidecar is an init container);
    ambient/waypoint: istio-cni marked every pod `ambient.istio.io/redirection: enabled`;
    baseline: no pod has either; the Locust master has neither in any mode."""
    out = []
    for p in pods:
        name = p["metadata"]["name"]
        injected = "istio-proxy" in _containers(p)
        redirected = p["metadata"].get("annotations", {}).get(
            "ambient.istio.io/redirection") == "enabled"
        if p["metadata"].get("labels", {}).get(versions.POD_KIND) == "locust-master":
            if injected or redirected:
                out.append(f"pod {name} (Locust's master) is in the mesh; it must stay out")
            continue
        if mode == "sidecar" and not injected:
            out.append(f"pod {name} has no istio-proxy sidecar (injection webhook not active?)")
        elif mode in ("ambient", "waypoint") and not redirected:
            out.append(f"pod {name} is not captured by ztunnel (no ambient redirection)")
        elif mode in ("ambient", "waypoint") and injected:
            out.append(f"pod {name} has a sidecar in an ambient mode")
        elif mode == "baseline" and (injected or redirected):
            out.append(f"pod {name} is in the mesh in baseline mode")
    return out

