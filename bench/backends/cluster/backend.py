"""The cluster backend: an existing Kubernetes cluster with Istio already installed.

It never creates or deletes a cluster, never installs or changes Istio, never labels
nodes: it creates only labelled objects inside its own namespace (mb-<namespace>), and
teardown deletes that namespace by label and waits until it is gone. The context must be
given explicitly (MB_CONTEXT, or the `context` argument); the current context is never
used, so a run cannot land on the wrong cluster by accident.

Each mode needs what the cluster's Istio offers: sidecar an injector, ambient and waypoint
ztunnel and istio-cni (the ambient profile), waypoint also the Gateway API CRDs and the
istio-waypoint GatewayClass, the l7_route experiment the HTTPRoute CRD. istiod is found by
its label app=istiod, so a revisioned install (istiod-<rev>) works: its istio.io/rev labels
the namespace instead of istio-injection. Client and server pods land on different nodes
by pod anti-affinity; istiod is where the cluster put it (recorded, and noted when it
shares a node with the workloads). The installed profile is recorded: on an
ambient-profile install sidecars run with HBONE on, which is not the default-profile
sidecar of a fair comparison.
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
from pathlib import Path

from bench.backends.base import Deployment
from bench.backends.kube import manifests, versions
from bench.backends.kube.commands import Commands, SubprocessCommands
from bench.backends.kube.k8s import Client, Clock, KubeError, SystemClock, WaitSpec
from bench.backends.kube.orchestrator import (
    ISTIOD_SELECTOR,
    CheckFn,
    Fetch,
    KubeBackend,
    KubeFactory,
    _fetch,
    istio_state,
    kube_mesh,
)
from bench.backends.kube.steps import Check, Step, WaitFor
from bench.changes import L7_ROUTE
from bench.errors import PrerequisiteError
from bench.scenario import Scenario

CONTEXT_ENV = "MB_CONTEXT"


def context_from(scenario: Scenario, explicit: str | None = None) -> str:
    """The context to use: the argument, else MB_CONTEXT, else the scenario's
    `cluster.context`; "" when none is given (preflight then refuses)."""
    if explicit:
        return explicit
    if os.environ.get(CONTEXT_ENV):
        return os.environ[CONTEXT_ENV]
    return scenario.cluster.context


class ClusterBackend(KubeBackend):
    name = "cluster"
    placement = manifests.ANTI_AFFINITY

    def __init__(self, scenario: Scenario, *, run_id: str, context: str,
                 commands: Commands | None = None, kube_factory: KubeFactory | None = None,
                 clock: Clock | None = None, workdir: Path | None = None,
                 proc_root: Path = Path("/proc"), timeouts: versions.Timeouts = versions.DEFAULT_TIMEOUTS,
                 fetch: Fetch = _fetch) -> None:
        super().__init__(scenario, run_id=run_id, context=context,
                         commands=commands or SubprocessCommands(),
                         kube_factory=kube_factory or (lambda ctx: Client(ctx)),
                         clock=clock or SystemClock(),
                         workdir=workdir or Path(tempfile.gettempdir()) / "meshbench-cluster",
                         proc_root=proc_root, timeouts=timeouts, fetch=fetch)
        self._notes: list[str] = []

    def _require_context(self) -> None:
        if not self.context:
            raise PrerequisiteError("backend cluster needs an explicit kube context",
                                    hint=f"set {CONTEXT_ENV}=<context> (kubectl config "
                                         "get-contexts); the current context is never used")

    def preflight(self) -> None:
        self._require_context()
        if self.commands.which("kubectl") is None:
            raise PrerequisiteError("kubectl is not installed (exec, cp and port-forward use it)",
                                    hint="https://kubernetes.io/docs/tasks/tools/")
        if importlib.util.find_spec("kubernetes") is None:
            raise PrerequisiteError("the Python package `kubernetes` is not installed",
                                    hint="make setup (pip install -e .)")
        try:
            self.kube.server_version()
        except KubeError as e:
            raise PrerequisiteError(f"context {self.context}: {e.message}",
                                    hint=e.hint or "kubectl config get-contexts") from e

    def provision(self, mode: str) -> Deployment:
        self._require_context()
        self._notes = []
        dep = super().provision(mode)
        dep.info["notes"] = list(self._notes)
        return dep

    def header(self, mode: str) -> list[str]:
        mesh = kube_mesh(self.scenario, mode)
        return [(f"# cluster backend, mode {mode}: context {self.context or '<set MB_CONTEXT>'}; "
                 "the cluster's own Istio is used as installed (nothing cluster-wide changes)"),
                (f"# client and server pods on different nodes by pod anti-affinity; "
                 f"load -> {self.url(mesh)}/"),
                f"# run id {self.run_id}: label {versions.RUN_ID} on every object"]

    def infra_steps(self, mode: str) -> list[Step]:
        t, ns = self.timeouts.istio, versions.ISTIO_NS
        out = [Step("cluster", Check("context", f"context {self.context or '<MB_CONTEXT>'} "
                                     "answers; only namespaces mb-* are written to"))]
        if mode == "baseline":
            return out
        out += [Step("istio", Check("istio-ready", _NEEDS[mode])),
                Step("istio", WaitFor(WaitSpec("apps/v1", "Deployment", "available", ns,
                                               selector=ISTIOD_SELECTOR, timeout_s=t)))]
        if mode in ("ambient", "waypoint"):
            out.append(Step("istio", WaitFor(WaitSpec("apps/v1", "DaemonSet", "daemonset-ready",
                                                      ns, name="ztunnel", timeout_s=t))))
        return out

    def checks(self) -> dict[str, CheckFn]:
        return {**super().checks(), "context": self.check_context,
                "istio-ready": self.check_istio_ready}

    def check_context(self) -> None:
        self._require_context()
        self.kube.server_version()

    def check_istio_ready(self) -> None:
        version, profile = istio_state(self.kube)
        fix = "install Istio on the cluster yourself, or use backend: kind"
        if not version:
            raise PrerequisiteError(f"mode {self._mode}: no istiod in {versions.ISTIO_NS}", hint=fix)
        if self._mode == "sidecar":
            hooks = self.kube.list("admissionregistration.k8s.io/v1",
                                   "MutatingWebhookConfiguration", "", "app=sidecar-injector")
            if not hooks:
                raise PrerequisiteError("mode sidecar: no Istio sidecar-injector webhook", hint=fix)
            if profile == "ambient":
                self._notes.append("sidecars run on an ambient-profile install, with HBONE on: "
                                   "not the default-profile sidecar of a fair comparison")
        if self._mode in ("ambient", "waypoint") and profile != "ambient":
            raise PrerequisiteError(f"mode {self._mode}: the cluster's Istio has no ztunnel "
                                    "(not the ambient profile)", hint=fix)
        if self._mode == "waypoint":
            gc = self.kube.get("gateway.networking.k8s.io/v1", "GatewayClass", "istio-waypoint") \
                if self._serves_gateway_api() else None
            if gc is None:
                raise PrerequisiteError("mode waypoint: no GatewayClass istio-waypoint (Gateway "
                                        "API CRDs missing, or installed after istiod)", hint=fix)
        if L7_ROUTE.name in self.scenario.experiments and self.kube.get(
                "apiextensions.k8s.io/v1", "CustomResourceDefinition",
                "httproutes.gateway.networking.k8s.io") is None:
            raise PrerequisiteError(f"mode {self._mode}: experiment l7_route needs the Gateway "
                                    "API's HTTPRoute CRD, which the cluster lacks",
                                    hint="install the Gateway API CRDs (before istiod), or "
                                         "drop l7_route from the scenario's experiments")
        if self.kube.list("apps/v1", "Deployment", versions.ISTIO_NS, "istio=ingressgateway"):
            self._notes.append("the cluster runs istio-ingressgateway: left out of process "
                               "discovery, the metrics-API rows and the syncz fan-out, which "
                               "count only this run's pods, its ztunnels and its istiod")
        if version != versions.ISTIO_VERSION:
            self._notes.append(f"Istio {version} on the cluster; meshbench pins {versions.ISTIO_VERSION}")

    def _serves_gateway_api(self) -> bool:
        return self.kube.get("apiextensions.k8s.io/v1", "CustomResourceDefinition",
                             "gatewayclasses.gateway.networking.k8s.io") is not None


_NEEDS = {
    "sidecar": "istiod and the sidecar-injector webhook exist (profile recorded; an ambient "
               "profile means HBONE-enabled sidecars); with l7_route, the HTTPRoute CRD",
    "ambient": "istiod, ztunnel and istio-cni exist (ambient profile)",
    "waypoint": "istiod, ztunnel, istio-cni and the GatewayClass istio-waypoint exist",
}
