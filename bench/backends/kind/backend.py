"""The kind backend: a local kind cluster with Istio installed per mode, and in-mesh Locust.

The cluster (mb-kind: one control plane, one worker per node of the mesh model, one worker
for istiod alone; kindnet, or Calico with `kind.cni: calico`) is created on first use and
reused while it matches; it is never deleted by a run, only by `delete_clusters`
(meshbench teardown --all), and only clusters named mb-*. Istio is installed with the
pinned istioctl from an IstioOperator on stdin, on the profile each mode needs --
`minimal` (default without the ingress gateway) for sidecars, `ambient` for ambient and
waypoint -- with istiod pinned to its worker, and reinstalled when the next mode needs the
other profile. The pinned Gateway API CRDs go in before Istio in every mode with a mesh:
waypoints need them, and so does the sidecar mode's l7_route (an HTTPRoute), whatever the
order the modes run in.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import tempfile
from pathlib import Path

import yaml

from bench import PREFIX
from bench.backends.kind import kindconfig
from bench.backends.kube import versions
from bench.backends.kube.commands import Commands, SubprocessCommands
from bench.backends.kube.k8s import Client, Clock, SystemClock, WaitSpec, kubectl
from bench.backends.kube.orchestrator import (
    CRD_API,
    ISTIOD_SELECTOR,
    CheckFn,
    Fetch,
    KubeBackend,
    KubeFactory,
    _fetch,
    gateway_crds_pinned,
    istio_state,
    kube_mesh,
)
from bench.backends.kube.steps import Check, Command, Condition, Step, WaitFor
from bench.errors import PrerequisiteError
from bench.scenario import Scenario

GATEWAY_CRD = "gateways.gateway.networking.k8s.io"


def istio_operator(profile: str) -> dict[str, object]:
    """What `istioctl install -f -` reads: the profile, and istiod pinned to its worker
    (values.pilot.nodeSelector: the istio-discovery chart's nodeSelector)."""
    return {"apiVersion": "install.istio.io/v1alpha1", "kind": "IstioOperator",
            "spec": {"profile": profile,
                     "values": {"pilot": {"nodeSelector": {versions.NODE: versions.ISTIOD_NODE}}}}}


def istioctl_binary() -> str:
    """MB_ISTIOCTL, or istioctl on PATH: several Istio versions often live side by side."""
    return os.environ.get("MB_ISTIOCTL", "istioctl")


def cluster_name() -> str:
    name = os.environ.get("MB_KIND_CLUSTER", versions.DEFAULT_CLUSTER)
    if not name.startswith(PREFIX):
        raise PrerequisiteError(f"MB_KIND_CLUSTER={name!r} must start with {PREFIX!r}",
                                hint="the harness only creates and deletes clusters it owns")
    return name


class KindBackend(KubeBackend):
    name = "kind"

    def __init__(self, scenario: Scenario, *, run_id: str, commands: Commands | None = None,
                 kube_factory: KubeFactory | None = None, clock: Clock | None = None,
                 workdir: Path | None = None, proc_root: Path = Path("/proc"),
                 cluster: str | None = None, timeouts: versions.Timeouts = versions.DEFAULT_TIMEOUTS,
                 fetch: Fetch = _fetch) -> None:
        self.cluster = cluster or cluster_name()
        super().__init__(scenario, run_id=run_id, context=kindconfig.context(self.cluster),
                         commands=commands or SubprocessCommands(),
                         kube_factory=kube_factory or (lambda ctx: Client(ctx)),
                         clock=clock or SystemClock(),
                         workdir=workdir or Path(tempfile.gettempdir()) / "meshbench-kind",
                         proc_root=proc_root, timeouts=timeouts, fetch=fetch)
        self.istioctl = istioctl_binary()

    # ---- preflight ----------------------------------------------------------------------------
    def preflight(self) -> None:
        """One PrerequisiteError line for the first missing tool, with the fix."""
        c = self.commands
        if c.which("docker") is None:
            raise PrerequisiteError("docker is not installed: kind runs its nodes as Docker "
                                    "containers", hint="install Docker Engine "
                                    "(https://docs.docker.com/engine/install/) and start it")
        r = c.run(["docker", "info", "--format", "{{.ServerVersion}}"], timeout_s=30)
        if not r.ok:
            raise PrerequisiteError(f"docker is installed but its daemon does not answer "
                                    f"(`docker info`: {r.first_error_line()})",
                                    hint="start it (sudo systemctl start docker) or point "
                                         "DOCKER_HOST at a running daemon")
        self._need("kind", ["kind", "version"], versions.KIND_VERSION.lstrip("v"), exact=True,
                   fix=f"go install sigs.k8s.io/kind@{versions.KIND_VERSION} (or the release binary "
                       "from https://kind.sigs.k8s.io/docs/user/quick-start/)")
        self._need("kubectl", ["kubectl", "version", "--client", "-o", "json"],
                   versions.KUBERNETES_VERSION.lstrip("v"), exact=False,
                   fix=f"install kubectl within one minor version of {versions.KUBERNETES_VERSION} "
                       "(https://kubernetes.io/docs/tasks/tools/)")
        self._need(self.istioctl, [self.istioctl, "version", "--remote=false"], versions.ISTIO_VERSION,
                   exact=True, fix=f"curl -L https://istio.io/downloadIstio | ISTIO_VERSION="
                   f"{versions.ISTIO_VERSION} sh - and put istio-{versions.ISTIO_VERSION}/bin first on PATH "
                   "(or set MB_ISTIOCTL to that istioctl)")
        if importlib.util.find_spec("kubernetes") is None:
            raise PrerequisiteError("the Python package `kubernetes` is not installed",
                                    hint="make setup (pip install -e .)")

    def _need(self, tool: str, argv: list[str], want: str, *, exact: bool, fix: str) -> None:
        if self.commands.which(tool) is None:
            raise PrerequisiteError(f"{tool} is not installed", hint=fix)
        r = self.commands.run(argv, timeout_s=30)
        found = _version(r.stdout) if r.ok else ""
        if not found:
            raise PrerequisiteError(f"`{' '.join(argv)}` gave no version "
                                    f"({r.first_error_line()})", hint=fix)
        if exact and found != want:
            raise PrerequisiteError(f"{tool} {found} found; meshbench pins {want}", hint=fix)
        if not exact and _minor_skew(found, want) > 1:
            raise PrerequisiteError(f"{tool} {found} is more than one minor version from the "
                                    f"cluster's {want}", hint=fix)

    # ---- steps ---------------------------------------------------------------------------------
    def header(self, mode: str) -> list[str]:
        mesh = kube_mesh(self.scenario, mode)
        profile = versions.istio_profile(mode)
        placed = ", ".join(f"{p.name} on {p.node}" for p in mesh.pods)
        istio = (f"Istio {versions.ISTIO_VERSION} profile {profile}"
                 + (" (never used for sidecar mode: this profile turns on HBONE for "
                    "sidecars too)" if profile == "ambient" else
                    " (default without istio-ingressgateway)")) if profile else \
            "no mesh (an installed Istio is left as it is; pods are not enrolled)"
        cni = self.scenario.kind.cni
        return [f"# kind backend, mode {mode}: {istio}",
                (f"# cluster {self.cluster} (context {self.context}): kind {versions.KIND_VERSION}, "
                 f"1 control plane + {self.scenario.topology.nodes} workers + 1 worker for "
                 f"istiod on {versions.NODE_IMAGE}; CNI {cni}"
                 + (f" {versions.CALICO_VERSION}" if cni == "calico" else "")),
                f"# mesh model: {placed}; load -> {self.url(mesh)}/",
                f"# run id {self.run_id}: label {versions.RUN_ID} on every object"]

    def conditions(self, mode: str) -> dict[str, Condition]:
        profile = versions.istio_profile(mode) or ""
        return {
            "cluster-ready": Condition(
                f"kind cluster {self.cluster} exists with these nodes (`kind get clusters`, "
                "then node labels, kubelet version and CNI; a mismatch stops the run)",
                self._cluster_ready),
            "calico-installed": Condition(
                "the DaemonSet kube-system/calico-node exists",
                lambda: self.kube.get("apps/v1", "DaemonSet", "calico-node", "kube-system")
                is not None),
            "istio-compatible": Condition(
                "no Istio is installed, or it is already the wanted version and profile",
                lambda: istio_state(self.kube) in (("", ""), (versions.ISTIO_VERSION, profile))),
            "gateway-crds": Condition(
                f"the Gateway API CRDs ({', '.join(c.split('.')[0] for c in versions.GATEWAY_API_CRDS)}"
                f") exist at {versions.GATEWAY_API_BUNDLE}={versions.GATEWAY_API_VERSION}",
                lambda: gateway_crds_pinned(self.kube)),
            "istio-installed": Condition(
                "Istio is already installed at this version and profile",
                lambda: istio_state(self.kube) == (versions.ISTIO_VERSION, profile)),
        }

    def checks(self) -> dict[str, CheckFn]:
        return {**super().checks(), "cluster-matches": self.check_cluster_matches,
                "istio-version": self.check_istio_version}

    def infra_steps(self, mode: str) -> list[Step]:
        t, ctx, n = self.timeouts, self.context, self.scenario.topology.nodes
        calico = self.scenario.kind.cni == "calico"
        # with Calico no node is Ready before its manifest is applied: kind must not wait
        wait = () if calico else ("--wait", "120s")
        out = [
            Step("cluster", Command(("kind", "create", "cluster", "--name", self.cluster,
                                 "--config=-", *wait),
                                stdin=kindconfig.config_yaml(self.scenario, self.cluster),
                                timeout_s=t.cluster), unless="cluster-ready"),
        ]
        if calico:
            out += [
                Step("cluster", Command(tuple(kubectl(ctx, "apply", "--server-side", "-f",
                                                  versions.CALICO_URL)), timeout_s=t.crds),
                     unless="calico-installed"),
                Step("cluster", WaitFor(WaitSpec("apps/v1", "DaemonSet", "daemonset-ready",
                                                 "kube-system", name="calico-node",
                                                 timeout_s=t.cluster))),
            ]
        out += [
            Step("cluster", WaitFor(WaitSpec("v1", "Node", "ready", selector=versions.NODE,
                                             count=n + 1, timeout_s=t.cluster))),
            Step("cluster", Check("cluster-matches",
                                  f"workers labelled {versions.NODE}=node0..node{n - 1} and "
                                  f"{versions.NODE}={versions.ISTIOD_NODE}, "
                                  f"kubelet {versions.KUBERNETES_VERSION}, "
                                  f"CNI {self.scenario.kind.cni}")),
        ]
        profile = versions.istio_profile(mode)
        if profile is None:
            return out
        section, ns = "istio", versions.ISTIO_NS
        out += [
            Step(section, Command((self.istioctl, "uninstall", "--context", ctx, "--purge",
                         "--skip-confirmation"), timeout_s=t.istio), unless="istio-compatible"),
            Step(section, WaitFor(WaitSpec("apps/v1", "Deployment", "gone", ns,
                                     selector=ISTIOD_SELECTOR, timeout_s=t.istio)),
                 unless="istio-compatible"),
            # before Istio, in every mode with a mesh: waypoints and HTTPRoutes need them
            Step(section, Command(tuple(kubectl(ctx, "apply", "--server-side", "-f",
                                                versions.GATEWAY_API_URL)),
                                  timeout_s=t.crds), unless="gateway-crds"),
        ]
        out += [Step(section, WaitFor(WaitSpec(CRD_API, "CustomResourceDefinition", "established",
                                         name=crd, timeout_s=t.crds)))
                for crd in versions.GATEWAY_API_CRDS]
        out += [
            Step(section, Command((self.istioctl, "install", "--context", ctx, "-f", "-",
                         "--skip-confirmation"),
                        stdin=yaml.safe_dump(istio_operator(profile), sort_keys=False),
                        timeout_s=t.istio),
                 unless="istio-installed"),
            Step(section, WaitFor(WaitSpec("apps/v1", "Deployment", "available", ns,
                                     selector=ISTIOD_SELECTOR, timeout_s=t.istio))),
        ]
        if profile == "ambient":
            out += [Step(section, WaitFor(WaitSpec("apps/v1", "DaemonSet", "daemonset-ready", ns,
                                             name=ds, timeout_s=t.istio)))
                    for ds in ("istio-cni-node", "ztunnel")]
        out.append(Step(section, Check("istio-version",
                                 f"istiod runs {versions.ISTIO_VERSION} (image tag without its "
                                 f"variant suffix), profile {profile}")))
        return out

    def pinned_versions(self) -> dict[str, str]:
        return versions.record(self.scenario.kind.cni)

    def cni(self) -> str:
        found = kindconfig.cni_of(self.kube.list("apps/v1", "DaemonSet", "kube-system"))
        name = found or f"{self.scenario.kind.cni} (not seen in kube-system)"
        return f"calico {versions.CALICO_VERSION}" if found == "calico" else name

    def leftover_hint(self) -> str:
        return (f"the kind cluster {self.cluster} and its Istio stay for the next mode and run; "
                f"`kind delete cluster --name {self.cluster}` (or meshbench teardown --all) "
                "removes them")

    # ---- conditions and checks -------------------------------------------------------------------
    def _cluster_ready(self) -> bool:
        r = self.commands.run(["kind", "get", "clusters"], timeout_s=30).check()
        if self.cluster not in r.stdout.split():
            return False
        self.check_cluster_matches()
        return True

    def check_cluster_matches(self) -> None:
        cni = kindconfig.cni_of(self.kube.list("apps/v1", "DaemonSet", "kube-system"))
        bad = kindconfig.mismatches(self.scenario, self.kube.list("v1", "Node"), cni)
        if bad:
            raise PrerequisiteError(f"kind cluster {self.cluster} exists but differs: {bad[0]}",
                                    hint=f"kind delete cluster --name {self.cluster}, then run "
                                         "again to create it as this scenario needs")

    def check_istio_version(self) -> None:
        want = (versions.ISTIO_VERSION, versions.istio_profile(self._mode))
        have = istio_state(self.kube)
        if have != want:
            raise PrerequisiteError(f"Istio in the cluster is {have[0] or 'absent'} profile "
                                    f"{have[1] or '-'}, not {want[0]} profile {want[1]}",
                                    hint=f"{self.istioctl} version --context {self.context}")


def delete_clusters(commands: Commands) -> list[str]:
    """`meshbench teardown --all` for kind: delete every kind cluster named mb-*, and only
    those. Returns the names deleted."""
    r = commands.run(["kind", "get", "clusters"], timeout_s=30)
    if not r.ok:
        return []
    gone = []
    for name in r.stdout.split():
        if name.startswith(PREFIX):
            commands.run(["kind", "delete", "cluster", "--name", name], timeout_s=300).check()
            gone.append(f"kind cluster {name}")
    return gone


def _version(text: str) -> str:
    """The first x.y.z in a version output (JSON from kubectl included)."""
    if text.lstrip().startswith("{"):  # kubectl version -o json
        try:
            text = str(json.loads(text).get("clientVersion", {}).get("gitVersion", ""))
        except ValueError:
            return ""  # unreadable output: the caller reports "gave no version"
    m = re.search(r"(\d+\.\d+\.\d+)", text)
    return m[1] if m else ""


def _minor_skew(a: str, b: str) -> int:
    (ma, na), (mb, nb) = (tuple(int(x) for x in s.split(".")[:2]) for s in (a, b))
    return abs(na - nb) if ma == mb else 99
