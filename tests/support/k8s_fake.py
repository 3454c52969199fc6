"""In-memory fakes for unit tests: `FakeKube` (a `bench.backends.kube.k8s.Kube`), `FakeClock`, and
`CommandRecorder` (a `Commands` that records argv and runs no binary).

FakeKube keeps objects as dicts and fills in the status a healthy cluster would show
(Pod Ready, Deployment Available, ...). Faults are injected per test:

    kube = FakeKube()
    kube.never_ready.add(("Pod", "svc-0-0"))       # stays Pending forever
    kube.fail_call(7)                              # the 7th API call raises KubeError(500)
    kube.stuck.add(("Namespace", "mb-bench"))      # deletion never finishes
    kube.ready_after_reads = 2                     # objects show not-ready on their first reads

With `simulate_istio` it also plays Istio's part: it injects an istio-proxy container into
pods of istio-injection=enabled namespaces, marks pods of ambient namespaces
`ambient.istio.io/redirection: enabled`, and turns an istio-waypoint Gateway into a
waypoint pod -- each only when the matching Istio parts exist (see `seed_istio`).
`simulate_kind(recorder, kube, ...)` wires the recorder so kind, istioctl and kubectl
commands change the fake cluster as the real ones would.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.backends.kube.commands import CommandResult
from bench.backends.kube.k8s import KubeError

Key = tuple[str, str, str, str]  # apiVersion, kind, namespace, name
ISTIO_NS = "istio-system"
CLUSTER_SCOPED = {"Namespace", "Node", "CustomResourceDefinition", "GatewayClass",
                  "MutatingWebhookConfiguration"}


def matches(labels: Mapping[str, str], selector: str) -> bool:
    """Label selector terms: k=v, k==v, k!=v, k, !k (comma = and)."""
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            k, val = term.split("!=", 1)
            if labels.get(k) == val:
                return False
        elif "=" in term:
            k, val = term.replace("==", "=").split("=", 1)
            if labels.get(k) != val:
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


class FakeClock:
    """Time that moves only when someone sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept = 0.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.slept += seconds


class FakeKube:
    def __init__(self, *, version: str = "v1.33.1", simulate_istio: bool = True) -> None:
        self.objects: dict[Key, dict[str, Any]] = {}
        self.calls: list[tuple[str, ...]] = []
        self.version = version
        self.simulate_istio = simulate_istio
        self.never_ready: set[tuple[str, str]] = set()
        self.stuck: set[tuple[str, str]] = set()
        self.ready_after_reads = 0
        self.delete_after_reads = 1  # a deleted object is still listed (terminating) this often
        self.metrics_served = False
        self.pod_metrics: dict[str, list[dict[str, Any]]] = {}  # namespace -> PodMetrics
        self.proxy_texts: dict[tuple[str, str, int], str] = {}
        self._fail: dict[int, KubeError] = {}
        self._reads: dict[Key, int] = {}
        self._dying: dict[Key, int] = {}
        self._uids = itertools.count(1)

    # ---- fault injection ------------------------------------------------------------------
    def fail_call(self, n: int, status: int = 500, message: str = "injected failure") -> None:
        """Make the n-th API call (1-based, any method) raise KubeError."""
        self._fail[n] = KubeError(f"{message} (call {n})", status=status)

    def _call(self, *what: str) -> None:
        self.calls.append(what)
        err = self._fail.pop(len(self.calls), None)
        if err is not None:
            raise err

    # ---- Kube ---------------------------------------------------------------------------------
    def apply(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        self._call("apply", obj["kind"], obj["metadata"].get("namespace", ""),
                   obj["metadata"]["name"])
        return self.put(obj)

    def get(self, api_version: str, kind: str, name: str, namespace: str = "") -> dict[str, Any] | None:
        self._call("get", kind, namespace, name)
        self._served(api_version)
        key = (api_version, kind, namespace, name)
        if key not in self.objects:
            return None
        return self._read(key)

    def list(self, api_version: str, kind: str, namespace: str = "",
             selector: str = "") -> list[dict[str, Any]]:
        self._call("list", kind, namespace, selector)
        self._served(api_version)
        if kind == "PodMetrics":
            return copy.deepcopy(self.pod_metrics.get(namespace, []))
        keys = [k for k in list(self.objects) if k[0] == api_version and k[1] == kind
                and (not namespace or k[2] == namespace)
                and matches(self.objects[k]["metadata"].get("labels", {}), selector)]
        return [o for o in (self._read(k) for k in keys) if o is not None]

    def delete(self, api_version: str, kind: str, name: str, namespace: str = "") -> bool:
        self._call("delete", kind, namespace, name)
        key = (api_version, kind, namespace, name)
        if key not in self.objects:
            return False
        doomed = [key]
        if kind == "Namespace":
            doomed += [k for k in self.objects if k[2] == name]
        for k in doomed:
            self.objects[k]["metadata"]["deletionTimestamp"] = "2025-01-01T00:00:00Z"
            if k[1] == "Namespace":
                self.objects[k].setdefault("status", {})["phase"] = "Terminating"
            self._dying.setdefault(k, self.delete_after_reads)
        return True

    def proxy_get(self, namespace: str, pod: str, port: int, path: str) -> str:
        self._call("proxy_get", namespace, pod, str(port), path)
        try:
            return self.proxy_texts[(namespace, pod, port)]
        except KeyError:
            raise KubeError(f"GET {namespace}/{pod}:{port}/{path}: 503", status=503) from None

    def server_version(self) -> str:
        self._call("version")
        return self.version

    # ---- helpers ------------------------------------------------------------------------------
    def _served(self, api_version: str) -> None:
        if api_version.startswith("metrics.k8s.io") and not self.metrics_served:
            raise KubeError("the API server does not serve PodMetrics (metrics.k8s.io/v1beta1)",
                            status=404)

    def _read(self, key: Key) -> dict[str, Any] | None:
        if key in self._dying and (key[1], key[3]) not in self.stuck:
            if self._dying[key] <= 0:
                # a namespace disappears last, with whatever it still held
                for k in [key, *(k for k in self.objects if key[1] == "Namespace" and k[2] == key[3])]:
                    self.objects.pop(k, None)
                    self._dying.pop(k, None)
                return None
            self._dying[key] -= 1
        self._reads[key] = self._reads.get(key, 0) + 1
        obj = copy.deepcopy(self.objects[key])
        ready = ((key[1], key[3]) not in self.never_ready
                 and self._reads[key] > self.ready_after_reads)
        obj["status"] = {**_status(obj, ready), **obj.get("status", {})} \
            if key[1] == "Namespace" else _status(obj, ready)
        return obj

    def put(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Store an object as the API server would (no call recorded, no fault)."""
        o = copy.deepcopy(dict(obj))
        md = o["metadata"]
        ns = "" if o["kind"] in CLUSTER_SCOPED else md.get("namespace", "default")
        key = (o["apiVersion"], o["kind"], ns, md["name"])
        old = self.objects.get(key)
        md["uid"] = old["metadata"]["uid"] if old else f"00000000-0000-0000-0000-{next(self._uids):012d}"
        if ns:
            md["namespace"] = ns
        if self.simulate_istio:
            self._istio_effects(o)
        self.objects[key] = o
        return copy.deepcopy(o)

    def _istio_effects(self, o: dict[str, Any]) -> None:
        ns = self.objects.get(("v1", "Namespace", "", o["metadata"].get("namespace", "")))
        ns_labels = ns["metadata"].get("labels", {}) if ns else {}
        if o["kind"] == "Pod":
            labels = o["metadata"].get("labels", {})
            revs = {d["metadata"].get("labels", {}).get("istio.io/rev", "default")
                    for k, d in self.objects.items() if k[1] == "Deployment" and k[2] == ISTIO_NS
                    and d["metadata"].get("labels", {}).get("app") == "istiod"}
            # the injector's selection: istio-injection=enabled for the default revision,
            # istio.io/rev=<rev> for a revision; the pod label sidecar.istio.io/inject=false
            # opts out (Istio's injection webhook namespaceSelector / objectSelector)
            wanted = ("default" if ns_labels.get("istio-injection") == "enabled"
                      else ns_labels.get("istio.io/rev", ""))
            if wanted in revs and labels.get("sidecar.istio.io/inject") != "false":
                _inject(o)
            if (ns_labels.get("istio.io/dataplane-mode") == "ambient"
                    and labels.get("istio.io/dataplane-mode") != "none"
                    and self._ztunnel()):
                o["metadata"].setdefault("annotations", {})["ambient.istio.io/redirection"] = "enabled"
        if (o["kind"] == "Gateway" and o["spec"].get("gatewayClassName") == "istio-waypoint"
                and self.objects.get(("gateway.networking.k8s.io/v1", "GatewayClass", "",
                                      "istio-waypoint"))):
            name, ns_name = o["metadata"]["name"], o["metadata"]["namespace"]
            infra = o["spec"].get("infrastructure", {})
            labels = {**infra.get("labels", {}), "gateway.networking.k8s.io/gateway-name": name}
            proxy: dict[str, Any] = {"name": "istio-proxy"}
            ref = infra.get("parametersRef") or {}
            cm = self.objects.get(("v1", "ConfigMap", ns_name, ref.get("name", "")))
            if cm is not None:  # istiod merges the ConfigMap's `deployment` patch
                import yaml

                patch = yaml.safe_load(cm["data"].get("deployment", "")) or {}
                for c in patch.get("spec", {}).get("template", {}).get("spec", {}).get(
                        "containers", []):
                    if c.get("name") == "istio-proxy":
                        proxy.update({k: val for k, val in c.items() if k != "name"})
            self.put({"apiVersion": "v1", "kind": "Pod",
                      "metadata": {"name": f"{name}-5d9c7-abcde", "namespace": ns_name,
                                   "labels": labels},
                      "spec": {"containers": [proxy], "nodeName": "w2"}})

    def _ztunnel(self) -> bool:
        return any(k[1] == "DaemonSet" and k[2] == ISTIO_NS
                   and d["metadata"].get("labels", {}).get("app") == "ztunnel"
                   for k, d in self.objects.items())

    # ---- seeds --------------------------------------------------------------------------------
    def seed_nodes(self, labels: Sequence[dict[str, str]], version: str = "v1.33.1") -> None:
        """A control plane plus one worker per label set (kind's node names)."""
        self.put(_node("mb-kind-control-plane", {}, version))
        for i, lab in enumerate(labels):
            self.put(_node(f"mb-kind-worker{i + 1 if i else ''}", lab, version))

    def seed_gateway_crds(self, version: str = "v1.3.0") -> None:
        """The CRDs of the Gateway API standard bundle, each annotated with its version."""
        for plural in ("gateways", "gatewayclasses", "httproutes"):
            self.put({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                      "metadata": {"name": f"{plural}.gateway.networking.k8s.io",
                                   "annotations": {"gateway.networking.k8s.io/bundle-version":
                                                   version,
                                                   "gateway.networking.k8s.io/channel":
                                                   "standard"}}})

    def seed_cni(self, cni: str) -> None:
        """The CNI DaemonSet in kube-system: kind's kindnet, or calico-node from Calico's
        manifest (manifests/calico.yaml: DaemonSet calico-node, label k8s-app=calico-node)."""
        name = {"kindnet": "kindnet", "calico": "calico-node"}[cni]
        self.put({"apiVersion": "apps/v1", "kind": "DaemonSet",
                  "metadata": {"name": name, "namespace": "kube-system",
                               "labels": {"k8s-app": name} if cni == "calico" else
                               {"app": "kindnet", "k8s-app": "kindnet"}}})

    def seed_istio(self, profile: str, version: str = "1.27.3", *, revision: str = "",
                   node_selector: Mapping[str, str] | None = None,
                   ztunnel_nodes: Sequence[str] = ("w1", "w2")) -> None:
        """What `istioctl install` leaves, in the charts' shapes (Istio 1.27.3):
        istiod per manifests/charts/istio-control/istio-discovery/templates/deployment.yaml
        (named istiod[-<rev>], labels app=istiod and istio.io/rev, image
        docker.io/istio/pilot:<version>[-<variant>], where the ambient profile sets the
        variant distroless: manifests/helm-profiles/ambient.yaml); the ingress gateway only
        on the `default` profile (manifests/profiles/minimal.yaml and ambient.yaml disable it);
        ztunnel and istio-cni-node on `ambient`. tests/fixtures/istio/ holds the same shapes
        as recorded objects; test_k8s_fake checks that the two agree."""
        self.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ISTIO_NS}})
        rev = revision or "default"
        name = "istiod" + (f"-{revision}" if revision and revision != "default" else "")
        variant = "-distroless" if profile == "ambient" else ""
        labels = {"app": "istiod", "app.kubernetes.io/name": "istiod",
                  "install.operator.istio.io/owning-resource": "unknown", "istio": "pilot",
                  "istio.io/rev": rev, "operator.istio.io/component": "Pilot",
                  "release": "istiod"}
        selector = {"istio": "pilot"} if rev == "default" else {"app": "istiod", "istio.io/rev": rev}
        pod_spec: dict[str, Any] = {"serviceAccountName": name, "containers": [
            {"name": "discovery", "image": f"docker.io/istio/pilot:{version}{variant}"}]}
        if node_selector:
            pod_spec["nodeSelector"] = dict(node_selector)
        self.put({"apiVersion": "apps/v1", "kind": "Deployment",
                  "metadata": {"name": name, "namespace": ISTIO_NS, "labels": labels},
                  "spec": {"replicas": 1, "selector": {"matchLabels": selector},
                           "template": {"metadata": {"labels": {
                               "app": "istiod", "istio.io/rev": rev,
                               "istio": "pilot" if rev == "default" else "istiod",
                               "sidecar.istio.io/inject": "false",
                               "istio.io/dataplane-mode": "none"}},
                               "spec": pod_spec}}})
        self.put({"apiVersion": "v1", "kind": "Pod",
                  "metadata": {"name": f"{name}-6f7d8c9b5-q2w3e", "namespace": ISTIO_NS,
                               "labels": {"app": "istiod", "istio.io/rev": rev}},
                  "spec": {**pod_spec, "nodeName": "mb-kind-worker3"}})
        self.put({"apiVersion": "admissionregistration.k8s.io/v1",
                  "kind": "MutatingWebhookConfiguration",
                  "metadata": {"name": "istio-sidecar-injector" + (
                      f"-{revision}" if rev != "default" else ""),
                      "labels": {"app": "sidecar-injector", "istio.io/rev": rev}}})
        if profile == "default":
            self.put({"apiVersion": "apps/v1", "kind": "Deployment",
                      "metadata": {"name": "istio-ingressgateway", "namespace": ISTIO_NS,
                                   "labels": {"app": "istio-ingressgateway",
                                              "istio": "ingressgateway"}},
                      "spec": {"template": {"spec": {"containers": [
                          {"name": "istio-proxy", "image": f"docker.io/istio/proxyv2:{version}"}]}}}})
        if profile == "ambient":
            for ds in ("ztunnel", "istio-cni-node"):
                self.put({"apiVersion": "apps/v1", "kind": "DaemonSet",
                          "metadata": {"name": ds, "namespace": ISTIO_NS, "labels": {"app": ds}}})
            for i, node in enumerate(ztunnel_nodes):
                self.put({"apiVersion": "v1", "kind": "Pod",
                          "metadata": {"name": f"ztunnel-{i}", "namespace": ISTIO_NS,
                                       "labels": {"app": "ztunnel"}},
                          "spec": {"nodeName": node, "containers": [{"name": "istio-proxy"}]}})
            if self.objects.get(("apiextensions.k8s.io/v1", "CustomResourceDefinition", "",
                                 "gatewayclasses.gateway.networking.k8s.io")):
                self.put({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
                          "metadata": {"name": "istio-waypoint"}})

    def remove_istio(self) -> None:
        for k in [k for k in self.objects if k[2] == ISTIO_NS
                  or k[1] in ("MutatingWebhookConfiguration", "GatewayClass")]:
            del self.objects[k]


# Istio 1.27.3's sidecar resources when the pod sets no sidecar.istio.io/proxy* annotation:
# global.proxy.resources in manifests/charts/istio-control/istio-discovery/values.yaml.
PROXY_DEFAULT_RESOURCES = {"requests": {"cpu": "100m", "memory": "128Mi"},
                           "limits": {"cpu": "2000m", "memory": "1024Mi"}}


def _proxy_resources(annotations: Mapping[str, str]) -> dict[str, Any]:
    """The "resources" template of injection-template.yaml: from the four annotations
    when any is set, else the chart's global.proxy.resources."""
    keys = {("requests", "cpu"): "sidecar.istio.io/proxyCPU",
            ("requests", "memory"): "sidecar.istio.io/proxyMemory",
            ("limits", "cpu"): "sidecar.istio.io/proxyCPULimit",
            ("limits", "memory"): "sidecar.istio.io/proxyMemoryLimit"}
    if not any(a in annotations for a in keys.values()):
        return copy.deepcopy(PROXY_DEFAULT_RESOURCES)
    out: dict[str, dict[str, str]] = {}
    for (section, res), ann in keys.items():
        if ann in annotations:
            out.setdefault(section, {})[res] = annotations[ann]
    return out


def _inject(pod: dict[str, Any]) -> None:
    """What the injector adds without istio-cni: istio-init and istio-proxy, both with the
    "resources" template (injection-template.yaml)."""
    res = _proxy_resources(pod["metadata"].get("annotations", {}))
    spec = pod["spec"]
    spec.setdefault("initContainers", []).append(
        {"name": "istio-init", "image": "docker.io/istio/proxyv2:1.27.3",
         "resources": copy.deepcopy(res)})
    spec["containers"].append({"name": "istio-proxy", "image": "docker.io/istio/proxyv2:1.27.3",
                               "resources": res})


def qos_class(pod: Mapping[str, Any]) -> str:
    """The QoS class the API server computes (Guaranteed: every container, init containers
    included, has cpu and memory limits and requests equal to them; BestEffort: none sets
    any; else Burstable)."""
    spec = pod.get("spec", {})
    containers = spec.get("containers", []) + spec.get("initContainers", [])
    any_set, guaranteed = False, bool(containers)
    for c in containers:
        r = c.get("resources") or {}
        limits, requests = r.get("limits") or {}, r.get("requests") or {}
        any_set = any_set or bool(limits or requests)
        for res in ("cpu", "memory"):
            if res not in limits or requests.get(res, limits[res]) != limits[res]:
                guaranteed = False
    if guaranteed:
        return "Guaranteed"
    return "Burstable" if any_set else "BestEffort"


def _node(name: str, labels: dict[str, str], version: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels},
            "status": {"nodeInfo": {"kubeletVersion": version}}}


def _cond(ctype: str, ok: bool) -> dict[str, Any]:
    return {"conditions": [{"type": ctype, "status": "True" if ok else "False",
                            "reason": "" if ok else "FakeNotReady"}]}


def _status(obj: Mapping[str, Any], ready: bool) -> dict[str, Any]:
    """The status a healthy (ready) or stuck (not ready) object shows."""
    kind = obj["kind"]
    if kind == "Pod":
        names = [c["name"] for c in obj.get("spec", {}).get("containers", [])]
        return {"phase": "Running" if ready else "Pending", **_cond("Ready", ready),
                "qosClass": qos_class(obj),
                "containerStatuses": [{"name": n, "restartCount": 0, "ready": ready}
                                      for n in names]}
    if kind == "Node":
        return {**obj.get("status", {}), **_cond("Ready", ready)}
    if kind == "Deployment":
        return _cond("Available", ready)
    if kind == "DaemonSet":
        return {"desiredNumberScheduled": 3, "numberReady": 3 if ready else 1,
                "updatedNumberScheduled": 3}
    if kind == "CustomResourceDefinition":
        return _cond("Established", ready)
    if kind == "Gateway":
        return _cond("Programmed", ready)
    if kind == "Namespace":
        return {"phase": "Active"}
    return {}


# ---- commands -------------------------------------------------------------------------------

@dataclass
class FakeBackground:
    argv: tuple[str, ...]
    pid: int
    returncode: int | None = 0  # what wait() returns; None = never exits by itself
    stopped: bool = False

    def poll(self) -> int | None:
        if self.stopped and self.returncode is None:
            return -15  # killed by SIGTERM
        return self.returncode

    def wait(self, timeout_s: float) -> int | None:
        return self.poll()

    def stop(self) -> None:
        self.stopped = True


@dataclass
class _Rule:
    tokens: tuple[str, ...]
    returncode: int = 0
    stdout: str = ""
    stderr: str = ""
    effect: Callable[[list[str]], None] | None = None
    exits_with: int | None = 0


@dataclass
class CommandRecorder:
    """`Commands` for tests: records every argv, answers by rules, runs nothing.

    A rule matches when its tokens appear in the argv in order (not necessarily
    adjacent); the most recently added matching rule wins. Unmatched commands succeed
    with empty output."""

    tools: dict[str, str] = field(default_factory=lambda: {
        t: f"/usr/bin/{t}" for t in ("docker", "kind", "kubectl", "istioctl")})
    calls: list[tuple[str, ...]] = field(default_factory=list)
    stdins: list[str] = field(default_factory=list)
    started: list[FakeBackground] = field(default_factory=list)
    _rules: list[_Rule] = field(default_factory=list)
    _pids: itertools.count = field(default_factory=lambda: itertools.count(4000))

    def on(self, *tokens: str, returncode: int = 0, stdout: str = "", stderr: str = "",
           effect: Callable[[list[str]], None] | None = None,
           exits_with: int | None = 0) -> None:
        self._rules.append(_Rule(tokens, returncode, stdout, stderr, effect, exits_with))

    def _match(self, argv: list[str]) -> _Rule | None:
        for rule in reversed(self._rules):
            it = iter(argv)
            if all(any(a == t for a in it) for t in rule.tokens):
                return rule
        return None

    def which(self, name: str) -> str | None:
        return self.tools.get(name)

    def run(self, argv: list[str], *, stdin: str = "", timeout_s: float = 60.0) -> CommandResult:
        self.calls.append(tuple(argv))
        self.stdins.append(stdin)
        rule = self._match(argv)
        if rule is None:
            return CommandResult(tuple(argv), 0)
        if rule.effect is not None:
            rule.effect(argv)
        return CommandResult(tuple(argv), rule.returncode, rule.stdout, rule.stderr)

    def start(self, argv: list[str], log_path: Path) -> FakeBackground:
        self.calls.append(tuple(argv))
        self.stdins.append("")
        rule = self._match(argv)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_path.write_text(rule.stdout if rule else "")
        if rule is not None and rule.effect is not None:
            rule.effect(argv)
        bg = FakeBackground(tuple(argv), next(self._pids), rule.exits_with if rule else 0)
        self.started.append(bg)
        return bg

    def ran(self, *tokens: str) -> list[tuple[str, ...]]:
        """The recorded commands containing these tokens in order."""
        out = []
        for argv in self.calls:
            it = iter(argv)
            if all(any(a == t for a in it) for t in tokens):
                out.append(argv)
        return out


def simulate_kind(rec: CommandRecorder, kube: FakeKube, *, worker_labels: list[dict[str, str]],
                  payload_bytes: int, clusters: list[str] | None = None) -> list[str]:
    """Make kind, istioctl and kubectl behave against `kube`: creating the cluster seeds
    its nodes (and kindnet, unless the config disables the default CNI), the Calico
    manifest adds calico-node, istioctl installs (from the IstioOperator on stdin) or
    removes Istio, the Gateway API manifest adds the CRDs, the client pod's test request
    returns `payload_bytes`, port-forward prints its port. Returns the live list of kind
    cluster names."""
    import yaml

    names = list(clusters or [])

    def create(argv: list[str]) -> None:
        names.append(argv[argv.index("--name") + 1])
        kube.seed_nodes(worker_labels)
        config = yaml.safe_load(rec.stdins[-1] or "{}") or {}
        if not config.get("networking", {}).get("disableDefaultCNI"):
            kube.seed_cni("kindnet")

    def install(argv: list[str]) -> None:
        kube.remove_istio()
        iop = yaml.safe_load(rec.stdins[-1] or "{}") or {}
        spec = iop.get("spec", {})
        profile = spec.get("profile") or next(
            (a.split("=", 1)[1] for a in argv if a.startswith("profile=")), "default")
        kube.seed_istio(profile, revision=spec.get("revision", ""),
                        node_selector=spec.get("values", {}).get("pilot", {}).get("nodeSelector"))

    def apply_url(argv: list[str]) -> None:
        url = argv[argv.index("-f") + 1]
        if "calico" in url:
            kube.seed_cni("calico")
        else:
            kube.seed_gateway_crds(url.split("/download/")[1].split("/")[0]
                                   if "/download/" in url else "v1.3.0")

    rec.on("docker", "info", stdout="28.2.2\n")
    rec.on("kind", "version", stdout="kind v0.29.0 go1.24.2 linux/amd64\n")
    rec.on("kubectl", "version", "--client", stdout='{"clientVersion": {"gitVersion": "v1.33.1"}}')
    rec.on("istioctl", "version", stdout="client version: 1.27.3\n")
    rec.on("kind", "create", "cluster", effect=create)
    rec.on("istioctl", "install", effect=install)
    rec.on("istioctl", "uninstall", effect=lambda a: kube.remove_istio())
    rec.on("kubectl", "apply", "--server-side", effect=apply_url)
    rec.on("kubectl", "exec", "client-0", "python3", stdout=f"{payload_bytes}\n")
    rec.on("kubectl", "port-forward", stdout="Forwarding from 127.0.0.1:40123 -> 15014\n",
           exits_with=None)
    _clusters_rule(rec, names)
    return names


def _clusters_rule(rec: CommandRecorder, names: list[str]) -> None:
    """`kind get clusters` answers with the live list (a rule whose stdout tracks it)."""
    rule = _Rule(("kind", "get", "clusters"))

    def refresh(argv: list[str]) -> None:
        rule.stdout = "".join(f"{n}\n" for n in names)

    rule.effect = refresh
    rec._rules.append(rule)
