"""bench.backends.kube.k8s.Client, the real wrapper, against a stub API server on 127.0.0.1: the requests
it sends (server-side apply with our field manager, label selectors, pod proxy) and how it
maps answers (404 -> None / False, other errors -> KubeError). No cluster needed."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
import yaml

from bench.backends.kube.k8s import Client, KubeError

RESOURCES = {
    "/api/v1": [("namespaces", "Namespace", False), ("pods", "Pod", True),
                ("pods/proxy", "PodProxyOptions", True)],
    "/apis/apps/v1": [("deployments", "Deployment", True)],
}


def resource_list(gv: str, items: list[tuple[str, str, bool]]) -> dict[str, Any]:
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": [
        {"name": n, "singularName": "", "namespaced": ns, "kind": k,
         "verbs": ["get", "list", "patch", "delete", "create"]} for n, k, ns in items]}


class Stub(BaseHTTPRequestHandler):
    # reset by the fixture for each test
    objects: ClassVar[dict[str, dict[str, Any]]] = {}
    seen: ClassVar[list[tuple[str, str, dict[str, list[str]], str, str]]] = []

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _send(self, code: int, body: Any, ctype: str = "application/json") -> None:
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _not_found(self) -> None:
        self._send(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                         "reason": "NotFound", "code": 404, "message": f"not found: {self.path}"})

    def _record(self, body: str = "") -> tuple[str, dict[str, list[str]]]:
        u = urlsplit(self.path)
        q = parse_qs(u.query)
        path = unquote(u.path)  # as Go's net/http (the API server) decodes it
        self.seen.append((self.command, path, q, self.headers.get("Content-Type", ""), body))
        return path, q

    def do_GET(self) -> None:
        path, q = self._record()
        if path in ("/version", "/version/"):
            return self._send(200, {"major": "1", "minor": "33", "gitVersion": "v1.33.1",
                                    "gitCommit": "x", "gitTreeState": "clean",
                                    "buildDate": "2025-05-15T00:00:00Z", "goVersion": "go1.24",
                                    "compiler": "gc", "platform": "linux/amd64"})
        if path == "/api":
            return self._send(200, {"kind": "APIVersions", "versions": ["v1"]})
        if path == "/apis":
            return self._send(200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
                {"name": "apps", "versions": [{"groupVersion": "apps/v1", "version": "v1"}],
                 "preferredVersion": {"groupVersion": "apps/v1", "version": "v1"}}]})
        if path in RESOURCES:
            gv = path.removeprefix("/api/").removeprefix("/apis/")
            return self._send(200, resource_list(gv, RESOURCES[path]))
        if path.endswith("/proxy/stats/prometheus"):
            return self._send(200, "istio_requests_total 3\n", "text/plain")
        if path in self.objects:
            return self._send(200, self.objects[path])
        if path == "/api/v1/namespaces/mb-x/pods":
            sel = q.get("labelSelector", [""])[0]
            items = [o for p, o in self.objects.items() if p.startswith(path + "/")
                     and all(o["metadata"]["labels"].get(k) == val
                             for k, val in (t.split("=") for t in sel.split(",") if t))]
            return self._send(200, {"kind": "PodList", "apiVersion": "v1",
                                    "metadata": {}, "items": items})
        if path == "/api/v1/namespaces/mb-x/pods/boom":
            return self._send(500, {"kind": "Status", "code": 500, "message": "etcd is sad"})
        return self._not_found()

    def do_PATCH(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"])).decode()
        path, _ = self._record(body)
        obj = yaml.safe_load(body)
        self.objects[path] = obj
        self._send(200, obj)

    def do_DELETE(self) -> None:
        path, _ = self._record()
        if self.objects.pop(path, None) is None:
            return self._not_found()
        self._send(200, {"kind": "Status", "status": "Success"})


@pytest.fixture
def client(tmp_path: Path) -> Iterator[Client]:
    Stub.objects, Stub.seen = {}, []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Stub)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "other",
        "clusters": [{"name": "stub", "cluster": {
            "server": f"http://127.0.0.1:{server.server_address[1]}"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "stub", "context": {"cluster": "stub", "user": "u"}},
                     {"name": "other", "context": {"cluster": "nowhere", "user": "u"}}]}))
    try:
        yield Client("stub", kubeconfig=str(kubeconfig), cache_file=str(tmp_path / "cache.json"))
    finally:
        server.shutdown()
        server.server_close()


POD = {"apiVersion": "v1", "kind": "Pod",
       "metadata": {"name": "p1", "namespace": "mb-x", "labels": {"run": "r1"}},
       "spec": {"containers": [{"name": "app", "image": "x"}]}}


def test_apply_is_server_side_with_our_field_manager(client: Client) -> None:
    out = client.apply(POD)
    assert out["metadata"]["name"] == "p1"
    method, path, q, ctype, body = Stub.seen[-1]
    assert (method, path) == ("PATCH", "/api/v1/namespaces/mb-x/pods/p1")
    assert ctype == "application/apply-patch+yaml"
    assert q["fieldManager"] == ["meshbench"] and q["force"] == ["true"]
    assert json.loads(body) == POD


def test_get_list_delete_and_404s(client: Client) -> None:
    client.apply(POD)
    assert client.get("v1", "Pod", "p1", "mb-x")["spec"]["containers"][0]["name"] == "app"
    assert client.get("v1", "Pod", "nope", "mb-x") is None
    assert [p["metadata"]["name"] for p in client.list("v1", "Pod", "mb-x", "run=r1")] == ["p1"]
    assert client.list("v1", "Pod", "mb-x", "run=r2") == []
    assert Stub.seen[-1][2]["labelSelector"] == ["run=r2"]
    assert client.delete("v1", "Pod", "p1", "mb-x") is True
    assert client.delete("v1", "Pod", "p1", "mb-x") is False


def test_server_errors_become_kube_errors(client: Client) -> None:
    with pytest.raises(KubeError) as e:
        client.get("v1", "Pod", "boom", "mb-x")
    assert e.value.status == 500 and "etcd is sad" in e.value.message
    with pytest.raises(KubeError) as e:
        client.get("networking.istio.io/v1", "Sidecar", "x", "mb-x")
    assert e.value.status == 404 and "does not serve Sidecar" in e.value.message


def test_version_and_pod_proxy(client: Client) -> None:
    assert client.server_version() == "v1.33.1"
    assert client.proxy_get("mb-x", "p1", 15090, "/stats/prometheus") == "istio_requests_total 3\n"
    assert Stub.seen[-1][1] == "/api/v1/namespaces/mb-x/pods/p1:15090/proxy/stats/prometheus"


def test_unknown_context_is_a_kube_error(tmp_path: Path) -> None:
    cfg = tmp_path / "kubeconfig"
    cfg.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "Config", "clusters": [],
                                   "users": [], "contexts": []}))
    with pytest.raises(KubeError, match="cannot be loaded"):
        Client("kind-mb-kind", kubeconfig=str(cfg))
