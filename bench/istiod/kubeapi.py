"""A narrow JSON client for the local API server (bench.istiod.controlplane): plain dicts in
and out, server-side apply, the status subresource, and many writes at once on a thread
pool (the simulated cluster writes ~2 objects per pod). It reaches only the loopback API
server the harness started, anonymously (AlwaysAllow on 127.0.0.1)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import quote

import urllib3

from bench.errors import ProvisionError

CLUSTER_SCOPED = frozenset({"Namespace", "Node", "CustomResourceDefinition"})
PLURALS = {"Namespace": "namespaces", "Node": "nodes", "ServiceAccount": "serviceaccounts",
           "Service": "services", "Pod": "pods", "EndpointSlice": "endpointslices",
           "ConfigMap": "configmaps", "CustomResourceDefinition": "customresourcedefinitions",
           "Gateway": "gateways", "HTTPRoute": "httproutes",
           "VirtualService": "virtualservices", "AuthorizationPolicy": "authorizationpolicies",
           "PeerAuthentication": "peerauthentications", "Sidecar": "sidecars"}
MANAGER = "meshbench"


class ApiError(ProvisionError):
    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


def path_of(api_version: str, kind: str, namespace: str = "", name: str = "",
            sub: str = "") -> str:
    base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    plural = PLURALS.get(kind) or kind.lower() + "s"
    p = base + (f"/namespaces/{namespace}" if namespace and kind not in CLUSTER_SCOPED else "")
    p += f"/{plural}" + (f"/{quote(name)}" if name else "") + (f"/{sub}" if sub else "")
    return p


def _ident(obj: Mapping[str, Any]) -> tuple[str, str, str, str]:
    md = obj.get("metadata") or {}
    return (str(obj["apiVersion"]), str(obj["kind"]), str(md.get("namespace") or ""),
            str(md["name"]))


class KubeAPI:
    def __init__(self, server: str, token: str, workers: int = 16) -> None:
        if not server.startswith("https://127.0.0.1:"):
            raise ValueError(f"KubeAPI reaches only the local API server, not {server}")
        self.server = server
        self.auth = {"Authorization": f"Bearer {token}"}
        self.workers = workers
        self.http = urllib3.PoolManager(num_pools=2, maxsize=workers, cert_reqs="CERT_NONE",
                                        assert_hostname=False, retries=False,
                                        timeout=urllib3.Timeout(connect=5, read=120))
        urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        self.requests = 0

    def _call(self, method: str, path: str, body: Any = None,
              content_type: str = "application/json", ok404: bool = False) -> Any:
        headers = {"Accept": "application/json", **self.auth}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = content_type
        self.requests += 1
        try:
            r = self.http.request(method, self.server + path, body=data, headers=headers)
        except urllib3.exceptions.HTTPError as e:
            raise ApiError(f"{method} {path}: {e}") from None
        if r.status == 404 and ok404:
            return None
        if r.status >= 300:
            msg = r.data.decode(errors="replace")
            with_reason = msg
            try:
                with_reason = json.loads(msg).get("message", msg)
            except ValueError:
                pass
            raise ApiError(f"{method} {path}: HTTP {r.status}: {with_reason[:300]}", r.status)
        return json.loads(r.data) if r.data else None

    def healthy(self, path: str = "/readyz") -> bool:
        try:
            r = self.http.request("GET", self.server + path, headers=self.auth, timeout=2.0)
        except urllib3.exceptions.HTTPError:
            return False
        return bool(r.status == 200)

    def get(self, api_version: str, kind: str, name: str, namespace: str = "") -> Any:
        return self._call("GET", path_of(api_version, kind, namespace, name), ok404=True)

    def list(self, api_version: str, kind: str, namespace: str = "",
             selector: str = "") -> list[dict[str, Any]]:
        q = f"?labelSelector={quote(selector)}" if selector else ""
        out = self._call("GET", path_of(api_version, kind, namespace) + q) or {}
        return list(out.get("items") or [])

    def create(self, obj: Mapping[str, Any]) -> Any:
        av, kind, ns, _ = _ident(obj)
        return self._call("POST", path_of(av, kind, ns), obj)

    def apply(self, obj: Mapping[str, Any]) -> Any:
        """Server-side apply, conflicts forced."""
        av, kind, ns, name = _ident(obj)
        return self._call("PATCH", path_of(av, kind, ns, name)
                          + f"?fieldManager={MANAGER}&force=true", obj,
                          "application/apply-patch+yaml")

    def put_status(self, obj: Mapping[str, Any]) -> Any:
        """Write an object's status (the kubelet's part): a merge patch of .status."""
        av, kind, ns, name = _ident(obj)
        return self._call("PATCH", path_of(av, kind, ns, name, "status"),
                          {"status": obj["status"]}, "application/merge-patch+json")

    def delete(self, api_version: str, kind: str, name: str, namespace: str = "") -> bool:
        return self._call("DELETE", path_of(api_version, kind, namespace, name),
                          ok404=True) is not None

    def many(self, fn: Callable[[Mapping[str, Any]], Any],
             objs: Iterable[Mapping[str, Any]]) -> int:
        """fn on every object, on the thread pool; the first error is raised after the rest
        finished. Returns how many were done."""
        objs = list(objs)
        errors: list[BaseException] = []

        def one(o: Mapping[str, Any]) -> None:
            try:
                fn(o)
            except BaseException as e:  # collected: raised below, after the pool drains
                errors.append(e)
        with ThreadPoolExecutor(self.workers) as pool:
            list(pool.map(one, objs))
        if errors:
            raise errors[0]
        return len(objs)
