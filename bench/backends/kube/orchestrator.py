"""What the kind and cluster backends share: the mode's workloads, readiness, measurement
set-up, per-cell load, health checks and teardown, all driven by one list of steps.

A subclass supplies the infrastructure steps (kind: create the cluster and install Istio;
cluster: only check what is there), its conditions and checks, and its preflight.
Provision executes `steps(mode)`; `plan(mode)` prints the same list plus the per-cell
commands and the teardown. On a failure midway everything the run created in the cluster
is deleted; if even that fails, the error's hint prints the command that removes it.
"""

from __future__ import annotations

import re
import shlex
import sys
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from bench import PREFIX
from bench.backends.base import Abilities, Deployment
from bench.backends.kube import manifests, measure, versions
from bench.backends.kube.commands import Background, Commands
from bench.backends.kube.k8s import Clock, Kube, KubeError, WaitSpec, delete_by_label, kubectl, wait_for
from bench.backends.kube.loadgen import InClusterLoad, LoadSpec
from bench.backends.kube.steps import (
    Apply,
    Check,
    Command,
    Condition,
    DeleteByLabel,
    Note,
    Start,
    Step,
    WaitFor,
    render,
)
from bench.errors import BenchError, ProvisionError
from bench.mesh import Mesh, build
from bench.scenario import Scenario
from bench.store import Cell, Sample

GATEWAY_API = "gateway.networking.k8s.io/v1"
PORT_FORWARD = "istiod-port-forward"
ISTIOD_SELECTOR = "app=istiod"  # the istiod Deployment's label, whatever its revision
ISTIOD_REF = "{istiod}"  # in a plan: the Deployment found by ISTIOD_SELECTOR
CRD_API = "apiextensions.k8s.io/v1"
CHECK_INTERVAL_S = 2.0  # the runner asks every 0.5 s; the API server need not answer that often
KubeFactory = Callable[[str], Kube]
CheckFn = Callable[[], None]
Fetch = Callable[[str], str]


def _fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as r:
        return str(r.read().decode())


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%section')}] {msg}", file=sys.stderr, flush=True)


def k8s_namespace(scenario: Scenario) -> str:
    ns = scenario.topology.namespace
    return ns if ns.startswith(PREFIX) else PREFIX + ns


def kube_mesh(scenario: Scenario, mode: str) -> Mesh:
    """The mesh model with the namespace the cluster really uses (mb-<namespace>)."""
    t = replace(scenario.topology, namespace=k8s_namespace(scenario))
    return build(replace(scenario, topology=t), mode)


@dataclass(frozen=True)
class Istiod:
    """The istiod Deployment in istio-system, found by its label app=istiod
    (manifests/charts/istio-control/istio-discovery/templates/deployment.yaml): named
    istiod, or istiod-<rev> on a revisioned install, labelled istio.io/rev."""

    name: str
    revision: str  # "default" for the default revision
    version: str  # from the image tag, its variant suffix removed
    variant: str  # "distroless" on the ambient profile, else usually ""
    image: str


def find_istiods(kube: Kube) -> list[Istiod]:
    """Every istiod in istio-system, the default revision first, then by name."""
    out = []
    for d in kube.list("apps/v1", "Deployment", versions.ISTIO_NS, ISTIOD_SELECTOR):
        md = d["metadata"]
        containers = d["spec"]["template"]["spec"]["containers"]
        image = next((c["image"] for c in containers if c["name"] == "discovery"),
                     containers[0]["image"])
        version, variant = versions.image_version(image)
        out.append(Istiod(md["name"], md.get("labels", {}).get("istio.io/rev", "default"),
                          version or "unknown", variant, image))
    return sorted(out, key=lambda i: (i.revision != "default", i.name))


def istio_profile_of(kube: Kube) -> str:
    """"ambient" when ztunnel runs, "default" when the istio-ingressgateway does, else
    "minimal" (istiod alone; manifests/profiles/*.yaml)."""
    if kube.list("apps/v1", "DaemonSet", versions.ISTIO_NS, "app=ztunnel"):
        return "ambient"
    if kube.list("apps/v1", "Deployment", versions.ISTIO_NS, "istio=ingressgateway"):
        return "default"
    return "minimal"


def istio_state(kube: Kube) -> tuple[str, str]:
    """(version, profile) of the Istio in istio-system; ("", "") when there is none.
    The version is the release without the image variant ("1.27.3" for 1.27.3-distroless)."""
    istiods = find_istiods(kube)
    if not istiods:
        return "", ""
    return istiods[0].version, istio_profile_of(kube)


def gateway_api_version(kube: Kube) -> str:
    """The bundle version of the installed Gateway API CRDs ("" when not installed)."""
    crd = kube.get(CRD_API, "CustomResourceDefinition", "gateways.gateway.networking.k8s.io")
    if crd is None:
        return ""
    return str(crd["metadata"].get("annotations", {}).get(versions.GATEWAY_API_BUNDLE, "unknown"))


def gateway_crds_pinned(kube: Kube) -> bool:
    """Every Gateway API CRD meshbench uses exists at the pinned bundle version."""
    for name in versions.GATEWAY_API_CRDS:
        crd = kube.get(CRD_API, "CustomResourceDefinition", name)
        if crd is None or crd["metadata"].get("annotations", {}).get(
                versions.GATEWAY_API_BUNDLE) != versions.GATEWAY_API_VERSION:
            return False
    return True


_CNI_DAEMONSETS = {"kindnet": "kindnet", "calico-node": "calico", "cilium": "cilium",
                   "kube-flannel-ds": "flannel", "aws-node": "aws-vpc-cni",
                   "azure-cns": "azure-cni", "antrea-agent": "antrea"}


def cni_of_cluster(kube: Kube) -> str:
    """The CNI named by a known DaemonSet in kube-system, or "unknown"."""
    for d in kube.list("apps/v1", "DaemonSet", "kube-system"):
        name = _CNI_DAEMONSETS.get(d["metadata"]["name"])
        if name:
            return name
    return "unknown (no known CNI DaemonSet in kube-system)"


class KubeBackend:
    """Shared by KindBackend and ClusterBackend; not used directly."""

    name = "kube"
    placement: manifests.Placement = manifests.NODE_LABELS

    def manifest_facts(self) -> dict[str, Any]:
        """The versions are found per deployment (`deployment_facts`); a real Istio has no
        simplifications."""
        return {"envoy": "see deployment info", "emulated": False, "simplifications": []}

    def deployment_facts(self, key: str, info: dict[str, Any],
                         manifest: dict[str, Any]) -> dict[str, Any]:
        """The deployment's info under deployment_info[key], and the versions it found
        (Istio, Gateway API, CNI, Kubernetes) merged into "versions" for comparisons."""
        out: dict[str, Any] = {"deployment_info": {**manifest.get("deployment_info", {}),
                                                   key: info}}
        found = info.get("manifest_versions")
        if found:
            out["versions"] = merge_versions(manifest.get("versions", {}), found)
        return out

    def abilities(self) -> Abilities:
        """Pushes measured from istiod, Locust in the cluster's pods, CPU and memory from
        the metrics API where the host sees no pod process, and the proxies' counters."""
        return Abilities(istiod=self, in_cluster_load=self, api_resources=self, path=self,
                         cluster_on_host=self)

    def cluster_cgroups(self) -> tuple[str, ...]:
        """Where this host sees the cluster's processes (a kind node is a Docker container
        on the host kernel, its pods under kubepods): those cgroup paths are the run's own
        for the machine's noise; none when the host sees no pod (a remote cluster). Any
        other container on the host counts as the run's too: stated in docs/noise.md."""
        d = self._discovered
        return ("kubepods", "kubelet", "docker") if d is not None and d.status == "ok" else ()

    def __init__(self, scenario: Scenario, *, run_id: str, context: str, commands: Commands,
                 kube_factory: KubeFactory, clock: Clock, workdir: Path,
                 proc_root: Path = Path("/proc"), timeouts: versions.Timeouts = versions.DEFAULT_TIMEOUTS,
                 fetch: Fetch = _fetch, log: Callable[[str], None] = _log) -> None:
        self.scenario, self.run_id, self.context = scenario, manifests.label_value(run_id), context
        self.commands, self.clock, self.workdir = commands, clock, workdir
        self.proc_root, self.timeouts, self.fetch, self.log = proc_root, timeouts, fetch, log
        self._kube_factory = kube_factory
        self._kube: Kube | None = None
        self.namespace = k8s_namespace(scenario)
        self.workers = tuple(f"client-{i}" for i in range(scenario.load.processes))
        self._background: dict[str, Background] = {}
        self._mode = ""
        self._restarts: dict[str, int] = {}
        self._last_check: tuple[float, list[str]] = (float("-inf"), [])
        self._probes: dict[str, dict[str, Any]] = {}
        self._istiod_port = 0
        self._istiod: Istiod | None = None
        self._discovered = measure.Discovery((), "skipped", "not provisioned")
        self._own: list[dict[str, Any]] = []

    # ---- the client, created when first needed (the cluster may not exist before) ----------
    @property
    def kube(self) -> Kube:
        if self._kube is None:
            self._kube = self._kube_factory(self.context)
        return self._kube

    # ---- subclass hooks -----------------------------------------------------------------------
    def infra_steps(self, mode: str) -> list[Step]:
        raise NotImplementedError

    def conditions(self, mode: str) -> dict[str, Condition]:
        """Named run-time conditions that let steps be skipped (see Step.unless)."""
        return {}

    def checks(self) -> dict[str, CheckFn]:
        """The health checks the steps name (Check.name -> the function that runs it; each
        raises a BenchError when it fails). A subclass adds the checks of its own steps."""
        return {
            "istiod-found": self.check_istiod_found,
            "namespace-free": self.check_namespace_free,
            "enrolment": self.check_enrolment,
            "qos": self.check_qos,
            "request-through": self.check_request_through,
            "waypoint-in-path": self.check_waypoint_in_path,
            "istiod-metrics": self.check_istiod_metrics,
            "processes": self.check_processes,
        }

    def header(self, mode: str) -> list[str]:
        raise NotImplementedError

    def leftover_hint(self) -> str:
        """What stays after teardown, and how to remove it."""
        return ""

    def cni(self) -> str:
        """The cluster's CNI, for the manifest."""
        return cni_of_cluster(self.kube)

    def pinned_versions(self) -> dict[str, str]:
        """What the backend pins (kind), recorded beside what it finds."""
        return {}

    # ---- the steps -----------------------------------------------------------------------------
    @property
    def selector(self) -> str:
        return manifests.run_selector(self.run_id)

    def url(self, mesh: Mesh) -> str:
        return f"http://{mesh.target.fqdn}:{mesh.target.port}"

    def steps(self, mode: str) -> list[Step]:
        """Everything provision does for `mode`, in order."""
        return (self.infra_steps(mode) + self.istiod_steps(mode) + self.workload_steps(mode)
                + self.measure_steps(mode))

    def istiod_steps(self, mode: str) -> list[Step]:
        if mode == "baseline":
            return []
        return [Step("istio", Check("istiod-found",
                                    f"the istiod Deployment in {versions.ISTIO_NS} found by label "
                                    f"{ISTIOD_SELECTOR} ({ISTIOD_REF} below: istiod, or "
                                    "istiod-<rev> on a revisioned install, whose istio.io/rev "
                                    "then labels the namespace and the waypoint); its version "
                                    "from the image tag, variant suffix (-distroless) removed"))]

    @property
    def revision(self) -> str:
        return self._istiod.revision if self._istiod is not None else ""

    def workload_steps(self, mode: str) -> list[Step]:
        mesh = kube_mesh(self.scenario, mode)
        objs = manifests.workloads(mesh, self.scenario, namespace=self.namespace, run_id=self.run_id,
                            placement=self.placement, workers=len(self.workers),
                            revision=self.revision)
        t, ns, section = self.timeouts.workloads, self.namespace, "workloads"
        out = [Step(section, Check("namespace-free", f"namespace {ns} is absent (or this run's own)"))]
        out += [Step(section, Apply(o)) for o in objs]
        if mode == "waypoint":
            out.append(Step(section, WaitFor(WaitSpec(GATEWAY_API, "Gateway", "programmed", ns,
                                                name=manifests.WAYPOINT, timeout_s=t))))
            out.append(Step(section, WaitFor(WaitSpec("v1", "Pod", "ready", ns, timeout_s=t,
                                                selector=f"{manifests.WAYPOINT_POD_LABEL}={manifests.WAYPOINT}"))))
        pods = sum(1 for o in objs if o["kind"] == "Pod")
        out.append(Step(section, WaitFor(WaitSpec("v1", "Pod", "ready", ns, selector=self.selector,
                                            count=pods, timeout_s=t))))
        out.append(Step(section, Check("enrolment", _ENROLMENT[mode] + "; the Locust master in no "
                                 "mode (no sidecar, no ambient redirection)")))
        out.append(Step(section, Check("qos", "every pod of the run is Guaranteed (status.qosClass): "
                                 "requests = limits on the app, Locust and, when injected, "
                                 "istio-proxy and istio-init")))
        out.append(Step(section, Check("request-through",
                                 f"a GET from client-0 to {self.url(mesh)}/ returns "
                                 f"{self.scenario.workload.payload_bytes} bytes, retried up to "
                                 f"{self.timeouts.request:.0f} s: "
                                 f"{shlex.join(self._request_argv(mesh))}")))
        if mode == "waypoint":
            out.append(Step(section, Check("waypoint-in-path", "the waypoint's istio_requests_total "
                                     "counted that request (its Envoy on :15090)")))
        return out

    def measure_steps(self, mode: str) -> list[Step]:
        section, out = "measure", []
        if mode != "baseline":
            out.append(Step(section, Start(PORT_FORWARD, tuple(kubectl(
                self.context, "port-forward", f"deployment/{ISTIOD_REF}",
                f":{measure.ISTIOD_PORT}", namespace=versions.ISTIO_NS)))))
            out.append(Step(section, Check("istiod-metrics",
                                     "istiod's /metrics answers through the port-forward "
                                     "(local port from kubectl's 'Forwarding from' line); "
                                     f"scraped per window: {', '.join(measure.ISTIOD_METRICS)}")))
        out.append(Step(section, Check("processes",
                                 "proxy processes (a sidecar's or waypoint's envoy and "
                                 "pilot-agent, ztunnel, pilot-discovery) of this run's pods, "
                                 "its ztunnels and its istiod only, found from this host via "
                                 "/proc and cgroup pod UIDs (bench.probes.discovery); if the "
                                 "host sees none: CPU and working set per container from the "
                                 "metrics API (metrics.k8s.io; istio-proxy = pilot-agent + "
                                 "envoy), read at the end of every window, or recorded as "
                                 "missing with the reason; BCC per-hop probe on the Envoy and "
                                 "ztunnel host PIDs (kind nodes share the host kernel), else "
                                 "skipped with the reason recorded")))
        out.append(Step(section, Note("load generator CPU: measured inside each Locust worker "
                                "(its process CPU time per second, written with its latency "
                                "histograms) for the saturation check; a cell whose files "
                                "carry none records it as not checked, with the reason")))
        return out

    def cell_steps(self, mode: str) -> list[Step]:
        """Plan only: what each (mode, level, repetition) cell runs, shown for the first level."""
        mesh = kube_mesh(self.scenario, mode)
        level, t = self.scenario.load.levels[0], self.scenario.timing
        # the runner's Locust run time: 2 s start-up + warm-up + window + 1 s
        spec = self._load_spec(mesh, f"r1-{mode}-{level}rps", level,
                               2.0 + t.warmup_s + t.window_s + 1.0)
        section = f"per cell (shown for r1, {level} rps; hdr files copied to results/<run>/hdr/)"
        out = [Step(section, Start(f"locust worker in {w}", tuple(spec.worker_argv(w)),
                             until="the master exits")) for w in self.workers]
        out.append(Step(section, Command(tuple(spec.master_argv()))))
        out += [Step(section, Command(tuple(spec.copy_argv(w, Path(f"results/<run>/hdr/tmp-{w}")))))
                for w in self.workers]
        return out

    def experiment_steps(self, mode: str) -> list[Step]:
        """Plan only: the config changes pushed once per mode after its cells, each applied
        on top of the previous one and watched through istiod's /debug/syncz and metrics."""
        from bench.backends.kube import push

        if mode == "baseline" or not self.scenario.experiments:
            return []
        mesh = kube_mesh(self.scenario, mode)
        section = "config-push experiments (after the cells of the mode)"
        out = []
        for name in self.scenario.experiments:
            out.append(Step(section, Note(f"{name}: apply, then poll istiod /debug/syncz every "
                                    f"{push.POLL_S:g} s until every proxy whose nonce moved "
                                    f"has ACKed and nothing moved for {push.QUIET_S:g} s; "
                                    "istiod metric deltas over the experiment")))
            out += [Step(section, Apply(obj)) for obj in push.experiment_objects(
                mesh, name, self.namespace, manifests.run_labels(self.run_id, mode))]
        return out

    def teardown_steps(self) -> list[Step]:
        section = "teardown"
        out = [Step(section, DeleteByLabel("v1", "Namespace", self.selector, name_prefix=PREFIX)),
               Step(section, WaitFor(WaitSpec("v1", "Namespace", "gone", selector=self.selector,
                                        timeout_s=self.timeouts.teardown)))]
        hint = self.leftover_hint()
        if hint:
            out.append(Step(section, Note(hint)))
        return out

    def plan(self, mode: str) -> list[str]:
        """Every command and manifest a run of `mode` would use, in order, without running any."""
        names = {k: c.text for k, c in self.conditions(mode).items()}
        return render(self.header(mode), self.steps(mode) + self.cell_steps(mode)
                      + self.experiment_steps(mode) + self.teardown_steps(), names)

    # ---- execution -----------------------------------------------------------------------------
    def _execute(self, steps: list[Step]) -> None:
        conds, checks = self.conditions(self._mode), self.checks()
        for step in steps:
            if step.unless and conds[step.unless].holds():
                self.log(f"{step.section}: skipped, {conds[step.unless].text}")
                continue
            self._do(step, checks)

    def _do(self, step: Step, checks: Mapping[str, CheckFn]) -> None:
        a = step.action
        if isinstance(a, Command):
            self.log(f"{step.section}: {' '.join(a.argv[:4])} ...")
            self.commands.run(list(a.argv), stdin=a.stdin, timeout_s=a.timeout_s).check()
        elif isinstance(a, Apply):
            self.kube.apply(a.manifest)
        elif isinstance(a, WaitFor):
            self.log(f"{step.section}: waiting for {a.spec.describe()}")
            wait_for(self.kube, a.spec, self.clock)
        elif isinstance(a, Check):
            checks[a.name]()
        elif isinstance(a, Start):
            self._stop_background(a.name)
            istiod = self._istiod.name if self._istiod is not None else "istiod"
            self._background[a.name] = self.commands.start(
                [x.replace(ISTIOD_REF, istiod) for x in a.argv],
                self.workdir / "logs" / f"{a.name}.log")
        elif isinstance(a, DeleteByLabel):
            delete_by_label(self.kube, a.api_version, a.kind, a.selector, a.namespace,
                            a.name_prefix)

    def provision(self, mode: str) -> Deployment:
        """Build the mode and wait until a request from the client pod crosses the path."""
        self._mode, self._probes, self._istiod = mode, {}, None
        try:
            # the workloads depend on the istiod found (its revision labels the namespace)
            self._execute(self.infra_steps(mode) + self.istiod_steps(mode))
            self._execute(self.workload_steps(mode) + self.measure_steps(mode))
            return self._deployment(mode)
        except BenchError as e:
            raise ProvisionError(f"mode {mode}: {e.message}",
                                 hint=self._after_failure(e.hint)) from e

    def _after_failure(self, hint: str | None) -> str:
        parts = [hint] if hint else []
        try:
            self.teardown()
            parts.append("everything this run created in the cluster was deleted")
        except BenchError as e:
            parts.append(f"clean-up failed too ({e.message}); remove it with: "
                         f"{' '.join(kubectl(self.context, 'delete', 'namespace', '-l', self.selector))}")
        left = self.leftover_hint()
        if left:
            parts.append(left)
        return "; ".join(parts)

    def teardown(self) -> None:
        """Delete this run's namespaces by label and wait until they are gone; stop the
        port-forward. Safe twice, and a no-op when nothing reached the cluster."""
        for name in list(self._background):
            self._stop_background(name)
        if self._kube is None:
            return
        self._execute(self.teardown_steps())

    def _stop_background(self, name: str) -> None:
        b = self._background.pop(name, None)
        if b is not None:
            b.stop()

    # ---- checks (named by the steps; the table is checks()) ---------------------------------
    def check_namespace_free(self) -> None:
        ns = self.kube.get("v1", "Namespace", self.namespace)
        if ns is None:
            return
        labels = ns["metadata"].get("labels", {})
        if labels.get(versions.RUN_ID) == self.run_id:
            return
        ours = labels.get(versions.MANAGED_BY) == versions.MANAGER
        owner = (f"meshbench run {labels[versions.RUN_ID]}" if ours
                 else "someone else (no meshbench labels)")
        raise ProvisionError(f"namespace {self.namespace} already exists and belongs to {owner}",
                             hint="meshbench teardown --all removes meshbench's leftovers; "
                                  "or set topology.namespace to another name")

    def _run_pods(self) -> list[dict[str, Any]]:
        return [p for p in self.kube.list("v1", "Pod", self.namespace, self.selector)
                if manifests.WAYPOINT_POD_LABEL not in p["metadata"].get("labels", {})]

    def check_istiod_found(self) -> None:
        istiods = find_istiods(self.kube)
        if not istiods:
            raise ProvisionError(f"no istiod Deployment ({ISTIOD_SELECTOR}) in {versions.ISTIO_NS}")
        self._istiod = istiods[0]
        if len(istiods) > 1:
            self._probes["istiod_revisions"] = {
                "used": istiods[0].revision, "found": [i.revision for i in istiods]}

    def check_enrolment(self) -> None:
        problems = manifests.enrolment_problems(self._mode, self._run_pods())
        if problems:
            raise ProvisionError(f"{problems[0]} ({len(problems)} pods affected)",
                                 hint="check the namespace labels and that Istio's "
                                      "webhook / istio-cni run")

    def check_qos(self) -> None:
        problems = manifests.qos_problems(self._run_pods())
        if problems:
            raise ProvisionError(f"{problems[0]} ({len(problems)} pods affected)",
                                 hint="every container needs requests = limits; a sidecar "
                                      "gets them from the sidecar.istio.io/proxy* annotations")

    def own_pods(self) -> list[dict[str, Any]]:
        """The pods whose processes and usage belong to this run: its namespace's (the
        waypoint's included: it carries the run labels), the ztunnels of an ambient mode,
        the istiod in use. Not the rest of the cluster: gateways, other namespaces."""
        pods = list(self.kube.list("v1", "Pod", self.namespace, self.selector))
        if self._mode in ("ambient", "waypoint"):
            pods += self.kube.list("v1", "Pod", versions.ISTIO_NS, "app=ztunnel")
        if self._istiod is not None:
            pods += self.kube.list("v1", "Pod", versions.ISTIO_NS,
                                   f"{ISTIOD_SELECTOR},istio.io/rev={self._istiod.revision}")
        return pods

    def proxy_ids(self) -> Callable[[str], bool]:
        """Which /debug/syncz entries are this run's: proxy ids are <pod>.<namespace>."""
        own = {f"{p['metadata']['name']}.{p['metadata']['namespace']}" for p in self.own_pods()}
        return lambda proxy: proxy in own

    def _request_argv(self, mesh: Mesh) -> list[str]:
        script = ("import urllib.request as u; "
                  f'print(len(u.urlopen("{self.url(mesh)}/", timeout=2).read()))')
        return kubectl(self.context, "exec", "client-0", "-c", "locust", "--",
                       "python3", "-c", script, namespace=self.namespace)

    def check_request_through(self) -> None:
        argv = self._request_argv(kube_mesh(self.scenario, self._mode))
        want = str(self.scenario.workload.payload_bytes)
        deadline = self.clock.monotonic() + self.timeouts.request
        while True:
            r = self.commands.run(argv, timeout_s=30)
            if r.ok and r.stdout.strip() == want:
                return
            last = f"got {r.stdout.strip()!r}" if r.ok else r.first_error_line()
            if self.clock.monotonic() >= deadline:
                raise ProvisionError(f"no request from client-0 got through to the service in "
                                     f"{self.timeouts.request:.0f} s ({last})",
                                     hint=f"try it: {' '.join(argv[:8])} ...")
            self.clock.sleep(1.0)

    def _waypoint_pod(self) -> str:
        pods = self.kube.list("v1", "Pod", self.namespace,
                              f"{manifests.WAYPOINT_POD_LABEL}={manifests.WAYPOINT}")
        if not pods:
            raise ProvisionError(f"no waypoint pod in {self.namespace}")
        return str(pods[0]["metadata"]["name"])

    def check_waypoint_in_path(self) -> None:
        text = self.kube.proxy_get(self.namespace, self._waypoint_pod(),
                                   measure.ENVOY_PROM_PORT, "stats/prometheus")
        if measure.totals(text, "istio_requests_total") <= 0:
            raise ProvisionError("the request got through but the waypoint did not see it",
                                 hint="check the namespace label istio.io/use-waypoint")

    def check_istiod_metrics(self) -> None:
        """Never fails provisioning: a missing measurement is recorded, not fatal."""
        log = self.workdir / "logs" / f"{PORT_FORWARD}.log"
        deadline = self.clock.monotonic() + 15.0
        port = 0
        while not port and self.clock.monotonic() < deadline:
            m = re.search(r"Forwarding from 127\.0\.0\.1:(\d+)",
                          log.read_text() if log.exists() else "")
            port = int(m[1]) if m else 0
            if not port:
                self.clock.sleep(0.5)
        status: dict[str, Any] = {"metrics": list(measure.ISTIOD_METRICS), "port": port}
        if not port:
            status.update(status="skipped", reason=f"kubectl port-forward printed no local "
                          f"port in 15 s (see {log})")
        else:
            try:
                found = measure.scrape(self.fetch(f"http://127.0.0.1:{port}/metrics"))
                status.update(status="ok", reason="", samples=len(found))
            except OSError as e:
                status.update(status="skipped", reason=f"istiod /metrics: {e}")
        self._istiod_port = port if status["status"] == "ok" else 0
        self._probes["istiod"] = status

    def check_processes(self) -> None:
        self._own = self.own_pods()
        d = measure.discover(self.kube, self._own, self.proc_root)
        self._discovered = d
        self._probes["processes"] = {"status": d.status, "reason": d.reason,
                                     "count": len(d.processes)}
        status, reason = measure.metrics_api_status(self.kube)
        self._probes["metrics_api"] = {"status": status, "reason": reason,
                                       "used": d.status != "ok" and status == "ok"}
        if d.status != "ok" and status != "ok":
            self._probes["resources_in_cluster"] = {
                "status": "missing", "reason": f"{d.reason}; and {reason}"}
        self._probes["bcc"] = measure.bcc_status(d)

    # ---- the deployment and what the runner asks of it ------------------------------------------
    def _deployment(self, mode: str) -> Deployment:
        mesh = kube_mesh(self.scenario, mode)
        pods = self._run_pods()
        self._restarts = {p["metadata"]["name"]: _restarts(p) for p in pods}
        server = self.kube.server_version()
        found = {"kubernetes": server, "gateway_api": gateway_api_version(self.kube) or
                 "not installed", "cni": self.cni()}
        istio: dict[str, Any] = {}
        if self._istiod is not None:
            profile = istio_profile_of(self.kube)
            found.update(istio=self._istiod.version)
            istio = {"version": self._istiod.version, "variant": self._istiod.variant,
                     "revision": self._istiod.revision, "deployment": self._istiod.name,
                     "image": self._istiod.image, "profile": profile,
                     # the ambient profile turns on HBONE for sidecars too
                     "hbone_for_sidecars": profile == "ambient",
                     "istiod_nodes": self._istiod_nodes(mesh)}
        return Deployment(
            mesh=mesh, load_netns=None, url=self.url(mesh),
            processes=list(self._discovered.processes),
            info={"backend": self.name, "context": self.context, "run_id": self.run_id,
                  "namespace": self.namespace,
                  "versions": {**self.pinned_versions(), "kubernetes_server": server},
                  # merged into the manifest's top-level "versions" by the runner
                  "manifest_versions": found,
                  "istio": istio,
                  "load": {"where": "in-cluster", "master": "locust-master",
                           "workers": list(self.workers)},
                  "probes": dict(self._probes)})

    def _istiod_nodes(self, mesh: Mesh) -> dict[str, str]:
        """istiod pod -> the model node it runs on ("istiod" on kind); a node shared with
        the client or a server is named so, and noted."""
        names = measure.node_names(self.kube)
        load_nodes = {p.node for p in mesh.pods}
        out = {}
        for p in self.kube.list("v1", "Pod", versions.ISTIO_NS,
                                f"{ISTIOD_SELECTOR},istio.io/rev={self.revision}"):
            node = names.get(p.get("spec", {}).get("nodeName", ""), "")
            out[p["metadata"]["name"]] = node
            if node in load_nodes:
                self._probes.setdefault("istiod_placement", {}).setdefault("notes", []).append(
                    f"istiod {p['metadata']['name']} shares node {node} with the workloads")
        return out

    def check(self, deployment: Deployment) -> list[str]:
        """Pods of the run that are not Ready or restarted since provision (asked at most
        every CHECK_INTERVAL_S; in between the last answer is repeated)."""
        now = self.clock.monotonic()
        if now - self._last_check[0] < CHECK_INTERVAL_S:
            return self._last_check[1]
        out = []
        for p in self._run_pods():
            name = p["metadata"]["name"]
            ready = any(c.get("type") == "Ready" and c.get("status") == "True"
                        for c in p.get("status", {}).get("conditions", []))
            if not ready:
                out.append(f"pod {name} is not Ready")
            elif _restarts(p) > self._restarts.get(name, 0):
                out.append(f"pod {name} restarted a container")
        self._last_check = (now, out)
        return out

    def path_counters(self, deployment: Deployment) -> dict[str, float]:
        """Request and connection counters of the proxies on the path (0 proxies: baseline)."""
        mode, out = deployment.mesh.mode, {}
        if mode == "sidecar":
            for name in ["client-0", *[p.name for p in deployment.mesh.pods if p.kind == "server"]]:
                text = self.kube.proxy_get(self.namespace, name, measure.ENVOY_PROM_PORT,
                                           "stats/prometheus")
                for reporter in ("source", "destination"):
                    out[f"sidecar/{name}:istio_requests_total{{reporter={reporter}}}"] = \
                        measure.totals(text, "istio_requests_total", reporter=reporter)
        if mode in ("ambient", "waypoint"):
            for zt in self.kube.list("v1", "Pod", versions.ISTIO_NS, "app=ztunnel"):
                name = zt["metadata"]["name"]
                text = self.kube.proxy_get(versions.ISTIO_NS, name, measure.ZTUNNEL_METRICS_PORT,
                                           "metrics")
                for metric in ("istio_tcp_connections_opened_total", "istio_tcp_sent_bytes_total"):
                    out[f"ztunnel/{zt['spec'].get('nodeName', name)}:{metric}"] = \
                        measure.totals(text, metric)
        if mode == "waypoint":
            text = self.kube.proxy_get(self.namespace, self._waypoint_pod(),
                                       measure.ENVOY_PROM_PORT, "stats/prometheus")
            out["waypoint:istio_requests_total"] = measure.totals(text, "istio_requests_total")
        return out

    def istiod_metrics(self) -> dict[str, float]:
        """istiod's ISTIOD_METRICS now ("name{labels}" -> value); {} when not reachable."""
        if not self._istiod_port:
            return {}
        try:
            return measure.scrape(self.fetch(f"http://127.0.0.1:{self._istiod_port}/metrics"))
        except OSError as e:
            self.log(f"istiod metrics: {e}")
            return {}

    def push_experiment(self, mesh: Mesh, experiment: str, timeout_s: float,
                        wire: Any = None) -> Any:
        """One config change applied to the running mesh, measured from istiod (see
        bench/backends/kube/push.py); ProvisionError when istiod cannot be read."""
        from bench.backends.kube import push

        if not self._istiod_port:
            raise ProvisionError("push experiments need istiod's metrics and /debug/syncz, "
                                 "which did not answer through the port-forward",
                                 hint=f"see {self.workdir / 'logs'}")

        def syncz() -> str:
            try:
                return self.fetch(f"http://127.0.0.1:{self._istiod_port}/debug/syncz")
            except OSError as e:
                raise ProvisionError(f"istiod /debug/syncz: {e}") from e

        return push.run(self, mesh, experiment, timeout_s, wire, syncz, self.clock,
                        keep=self.proxy_ids())

    def controlplane_pid(self) -> int | None:
        """pilot-discovery's host PID when the host sees the pods (for the kernel view)."""
        return next((p.pid for p in self._discovered.processes
                     if p.role == "control-plane"), None)

    def window_resources(self, cell: Cell) -> list[Sample]:
        """The metrics-API path for CPU and memory, asked by the runner at the end of each
        window: rows for the run's own pods when the host sees none of their processes
        (else [] -- the host sampler has them), [] when the metrics API is not served (the
        probe status says so)."""
        if self._discovered.status == "ok" or self._probes.get(
                "metrics_api", {}).get("status") != "ok":
            return []
        try:
            usage = [u for ns in (self.namespace, versions.ISTIO_NS)
                     for u in measure.pod_usage(self.kube, ns)]
        except KubeError as e:
            self.log(f"metrics API: {e.message}")
            return []
        return measure.usage_samples(usage, self._own or self.own_pods(),
                                     measure.node_names(self.kube), cell, time.time())

    def _load_spec(self, mesh: Mesh, cell: str, target_rps: int, duration_s: float) -> LoadSpec:
        return LoadSpec(context=self.context, namespace=self.namespace, workers=self.workers,
                        url=self.url(mesh), target_rps=target_rps,
                        users=self.scenario.load.connections, duration_s=duration_s,
                        cell=re.sub(r"[^A-Za-z0-9_.-]", "-", cell),
                        arrivals=self.scenario.load.arrivals, seed=self.scenario.seed)

    def start_load(self, *, cell: str, target_rps: int, duration_s: float, hdr_out: Path,
                   log_path: Path, timeout_s: float) -> InClusterLoad:
        """Start one cell's Locust run in the cluster (the in-cluster twin of run_locust)."""
        spec = self._load_spec(kube_mesh(self.scenario, self._mode), cell, target_rps, duration_s)
        return InClusterLoad(spec, self.commands, hdr_out=hdr_out, log_path=log_path,
                             timeout_s=timeout_s).start()


def merge_versions(recorded: Mapping[str, Any], found: Mapping[str, str]) -> dict[str, Any]:
    """The manifest's "versions" with what a deployment found: a key first seen is added;
    a value that differs from one already recorded (say, Istio changed between modes)
    is kept beside it ("1.27.3 / 1.26.0"), so a comparison sees the mix."""
    out = dict(recorded)
    for k, val in found.items():
        old = out.get(k)
        if old is None:
            out[k] = val
        elif val not in str(old).split(" / "):
            out[k] = f"{old} / {val}"
    return out


def delete_all_runs(kube: Kube, clock: Clock, timeout_s: float = 180.0) -> list[str]:
    """`meshbench teardown --all` for a kube backend: delete every namespace the harness
    made (label managed-by=meshbench and a name starting with mb-), of any run, and wait
    until they are gone. Returns their names."""
    sel = f"{versions.MANAGED_BY}={versions.MANAGER}"
    gone = delete_by_label(kube, "v1", "Namespace", sel, name_prefix=PREFIX)
    for name in gone:
        wait_for(kube, WaitSpec("v1", "Namespace", "gone", name=name, timeout_s=timeout_s), clock)
    return [f"namespace {n}" for n in gone]


def _restarts(pod: dict[str, Any]) -> int:
    return sum(c.get("restartCount", 0) for c in pod.get("status", {}).get("containerStatuses", []))


_ENROLMENT = {
    "baseline": "no pod has a sidecar or ambient redirection (baseline: no mesh)",
    "sidecar": "every pod of the run has an istio-proxy container (injected)",
    "ambient": "every pod of the run carries ambient.istio.io/redirection=enabled (istio-cni)",
    "waypoint": "every pod of the run carries ambient.istio.io/redirection=enabled (istio-cni)",
}
