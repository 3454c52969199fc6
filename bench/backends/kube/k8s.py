"""The one door to the Kubernetes API: the only module that imports `kubernetes`.

Everything else talks to a `Kube` (this module's `Client`, or `tests.support.k8s_fake.FakeKube`
in tests) with plain dicts, the same shape `kubectl get -o json` prints:

    kube = Client(context="kind-mb-kind")
    kube.apply(manifest)                                    # server-side apply
    kube.list("v1", "Pod", "mb-bench", "meshbench.io/run-id=r1")
    wait_for(kube, WaitSpec("apps/v1", "Deployment", "available", "istio-system",
                            name="istiod", timeout_s=300))  # raises WaitTimeout
    delete_by_label(kube, "v1", "Namespace", "meshbench.io/run-id=r1")

Waiting is polling with an injectable `Clock`, never a bare sleep, so tests run the
same waits in zero real time. What the client cannot do (exec, cp, port-forward) is
spelled as a kubectl command by `kubectl()` and run through the caller's command runner.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from bench.errors import ProvisionError

FIELD_MANAGER = "meshbench"


class KubeError(ProvisionError):
    """The API refused or failed a call; `status` is the HTTP status (0 if none)."""

    def __init__(self, message: str, status: int = 0, hint: str | None = None) -> None:
        super().__init__(message, hint)
        self.status = status


class WaitTimeout(ProvisionError):
    """An object did not reach its condition in time; the message says what it last showed."""


class Kube(Protocol):
    """The calls the harness makes. Objects are plain dicts; cluster-scoped kinds take
    namespace "". Missing objects are None / False, never an exception."""

    def apply(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Server-side apply (field manager "meshbench", conflicts forced)."""

    def get(self, api_version: str, kind: str, name: str, namespace: str = "") -> dict[str, Any] | None:
        ...

    def list(self, api_version: str, kind: str, namespace: str = "",
             selector: str = "") -> list[dict[str, Any]]:
        """Objects of a kind; namespace "" lists across all namespaces."""

    def delete(self, api_version: str, kind: str, name: str, namespace: str = "") -> bool:
        """Start deleting (dependents follow in the background); False if already gone."""

    def proxy_get(self, namespace: str, pod: str, port: int, path: str) -> str:
        """GET http://POD:PORT/PATH through the API server's pod proxy (for metrics)."""

    def server_version(self) -> str:
        """The API server's gitVersion, e.g. "v1.33.1"."""


class Clock(Protocol):
    def monotonic(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


# ---- conditions ---------------------------------------------------------------------------

Verdict = tuple[bool, str]  # (holds, what the object shows now, for the timeout message)


def _condition(obj: Mapping[str, Any], ctype: str) -> Verdict:
    for c in obj.get("status", {}).get("conditions", []) or []:
        if c.get("type") == ctype:
            ok = c.get("status") == "True"
            why = c.get("reason", "") or c.get("message", "")
            return ok, f"{ctype}={c.get('status')}" + (f" ({why})" if why and not ok else "")
    return False, f"no {ctype} condition yet"


def daemonset_ready(obj: Mapping[str, Any]) -> Verdict:
    s = obj.get("status", {})
    want = s.get("desiredNumberScheduled", 0)
    ready, updated = s.get("numberReady", 0), s.get("updatedNumberScheduled", 0)
    return want > 0 and ready == want and updated == want, f"{ready}/{want} ready"


def pod_ready(obj: Mapping[str, Any]) -> Verdict:
    ok, why = _condition(obj, "Ready")
    phase = obj.get("status", {}).get("phase", "?")
    return ok, f"{phase}, {why}"


CONDITIONS: dict[str, Callable[[Mapping[str, Any]], Verdict]] = {
    "ready": pod_ready,  # Pod, Node
    "available": lambda o: _condition(o, "Available"),  # Deployment
    "daemonset-ready": daemonset_ready,
    "established": lambda o: _condition(o, "Established"),  # CustomResourceDefinition
    "programmed": lambda o: _condition(o, "Programmed"),  # Gateway
}


@dataclass(frozen=True)
class WaitSpec:
    """Wait until `name` (or every object matching `selector`, at least `count` of them)
    meets `condition`, a key of CONDITIONS or "gone" (no object left)."""

    api_version: str
    kind: str
    condition: str
    namespace: str = ""
    name: str = ""
    selector: str = ""
    count: int = 1
    timeout_s: float = 120.0

    def __post_init__(self) -> None:
        if self.condition != "gone" and self.condition not in CONDITIONS:
            raise ValueError(f"unknown condition {self.condition!r}")
        if bool(self.name) == bool(self.selector):
            raise ValueError("give exactly one of name and selector")

    def describe(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        what = f"{self.kind} {where}{self.name}" if self.name else \
            f"every {self.kind} in {self.namespace or 'the cluster'} with {self.selector}"
        if self.condition == "gone":
            return f"{what} gone"
        n = f" (at least {self.count})" if self.selector and self.count > 1 else ""
        return f"{what} {self.condition}{n}"


POLL_S = 1.0


def wait_for(kube: Kube, spec: WaitSpec, clock: Clock, poll_s: float = POLL_S) -> None:
    """Poll until `spec` holds; raise WaitTimeout naming the laggard and its state.

    API errors during the wait are not retried: they propagate as KubeError."""
    deadline = clock.monotonic() + spec.timeout_s
    while True:
        ok, state = _observe(kube, spec)
        if ok:
            return
        if clock.monotonic() >= deadline:
            raise WaitTimeout(f"{spec.describe()}: not after {spec.timeout_s:.0f} s ({state})",
                              hint="kubectl describe it; a slow image pull needs a longer timeout")
        clock.sleep(poll_s)


def _observe(kube: Kube, spec: WaitSpec) -> Verdict:
    if spec.name:
        obj = kube.get(spec.api_version, spec.kind, spec.name, spec.namespace)
        objs = [] if obj is None else [obj]
    else:
        objs = kube.list(spec.api_version, spec.kind, spec.namespace, spec.selector)
    if spec.condition == "gone":
        return not objs, f"{len(objs)} left: {', '.join(name_of(o) for o in objs[:3])}"
    if len(objs) < spec.count:
        return False, f"{len(objs)} of {spec.count} exist"
    check = CONDITIONS[spec.condition]
    for o in objs:
        ok, why = check(o)
        if not ok:
            return False, f"{name_of(o)}: {why}"
    return True, "ok"


def name_of(obj: Mapping[str, Any]) -> str:
    md = obj.get("metadata", {})
    return f"{md['namespace']}/{md.get('name', '?')}" if md.get("namespace") else md.get("name", "?")


def delete_by_label(kube: Kube, api_version: str, kind: str, selector: str,
                    namespace: str = "", name_prefix: str = "") -> list[str]:
    """Delete every object of a kind matching `selector` (and, when given, whose name starts
    with `name_prefix` -- a guard so a stray label never deletes someone else's object).
    Returns the names it asked to delete."""
    if not selector:
        raise ValueError("delete_by_label needs a selector")
    gone = []
    for obj in kube.list(api_version, kind, namespace, selector):
        md = obj["metadata"]
        if not md["name"].startswith(name_prefix):
            continue
        if kube.delete(api_version, kind, md["name"], md.get("namespace", "")):
            gone.append(name_of(obj))
    return gone


def selector(labels: Mapping[str, str]) -> str:
    """{"a": "1", "b": "2"} -> "a=1,b=2" (sorted, so plans are stable)."""
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def kubectl(context: str, *args: str, namespace: str = "") -> list[str]:
    """A kubectl argv with the context always explicit (never the current-context)."""
    ns = ["-n", namespace] if namespace else []
    return ["kubectl", "--context", context, *ns, *args]


# ---- the real client ----------------------------------------------------------------------

class Client:
    """`Kube` over the official client's dynamic API, for one kubeconfig context."""

    def __init__(self, context: str, kubeconfig: str | None = None,
                 cache_file: str | None = None) -> None:
        """`cache_file`: where the client caches API discovery (default: a file in /tmp)."""
        from kubernetes import config
        from kubernetes.config.config_exception import ConfigException
        from kubernetes.dynamic import DynamicClient

        try:
            self._api = config.new_client_from_config(config_file=kubeconfig, context=context)
        except (ConfigException, OSError) as e:
            raise KubeError(f"kube context {context!r} cannot be loaded: {e}",
                            hint="kubectl config get-contexts") from e
        self.context = context
        try:
            self._dyn = DynamicClient(self._api, cache_file=cache_file)
        except Exception as e:  # discovery talks to the server: any failure means unreachable
            raise KubeError(f"context {context!r}: API server unreachable: {_short(e)}",
                            hint=f"kubectl --context {context} cluster-info") from e

    def _resource(self, api_version: str, kind: str) -> Any:
        from kubernetes.dynamic.exceptions import ResourceNotFoundError

        try:
            return self._dyn.resources.get(api_version=api_version, kind=kind)
        except ResourceNotFoundError as e:
            raise KubeError(f"the API server does not serve {kind} ({api_version})",
                            status=404) from e

    def _call(self, what: str, fn: Callable[[], Any]) -> Any:
        from kubernetes.client.exceptions import ApiException

        try:
            return fn()
        except ApiException as e:
            raise KubeError(f"{what}: {e.status} {e.reason}: {_short(e.body)}",
                            status=e.status or 0) from e
        except OSError as e:  # urllib3 connection errors are OSErrors underneath
            raise KubeError(f"{what}: {_short(e)}") from e

    def apply(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        res = self._resource(obj["apiVersion"], obj["kind"])
        md = obj["metadata"]
        out = self._call(f"apply {obj['kind']} {name_of(obj)}", lambda: self._dyn.server_side_apply(
            res, body=dict(obj), name=md["name"], namespace=md.get("namespace"),
            field_manager=FIELD_MANAGER, force_conflicts=True))
        return dict(out.to_dict())

    def get(self, api_version: str, kind: str, name: str, namespace: str = "") -> dict[str, Any] | None:
        res = self._resource(api_version, kind)
        try:
            out = self._call(f"get {kind} {namespace}/{name}",
                             lambda: self._dyn.get(res, name=name, namespace=namespace or None))
        except KubeError as e:
            if e.status == 404:
                return None
            raise
        return dict(out.to_dict())

    def list(self, api_version: str, kind: str, namespace: str = "",
             selector: str = "") -> list[dict[str, Any]]:
        res = self._resource(api_version, kind)
        out = self._call(f"list {kind} {namespace}", lambda: self._dyn.get(
            res, namespace=namespace or None, label_selector=selector or None))
        return [dict(i) for i in out.to_dict().get("items", [])]

    def delete(self, api_version: str, kind: str, name: str, namespace: str = "") -> bool:
        res = self._resource(api_version, kind)
        try:
            self._call(f"delete {kind} {namespace}/{name}", lambda: self._dyn.delete(
                res, name=name, namespace=namespace or None, propagation_policy="Background"))
        except KubeError as e:
            if e.status == 404:
                return False
            raise
        return True

    def proxy_get(self, namespace: str, pod: str, port: int, path: str) -> str:
        from kubernetes.client import CoreV1Api

        core = CoreV1Api(self._api)
        return str(self._call(f"GET {namespace}/{pod}:{port}/{path.lstrip('/')}",
                              lambda: core.connect_get_namespaced_pod_proxy_with_path(
                                  f"{pod}:{port}", namespace, path.lstrip("/"))))

    def server_version(self) -> str:
        from kubernetes.client import VersionApi

        info = self._call("version", lambda: VersionApi(self._api).get_code())
        return str(info.git_version)


def _short(x: object, limit: int = 200) -> str:
    text = " ".join(str(x).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
