"""Each mode of the local backend, brought up for real, proves its path with Envoy's counters."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from bench.backends.base import Deployment
from bench.backends.local import netns, topology
from bench.backends.local.backend import LocalBackend
from bench.scenario import from_dict
from tests.support.traffic import tcp_send

pytestmark = pytest.mark.root
N = 20


def _scenario() -> object:
    return from_dict({"name": "modes-test", "load": {"levels": [100]}})


@pytest.fixture
def up(request: pytest.FixtureRequest) -> Iterator[tuple[LocalBackend, Deployment]]:
    backend = LocalBackend(_scenario())
    backend.preflight()
    try:
        dep = backend.provision(request.param)
        yield backend, dep
    finally:
        backend.teardown()
    assert netns.list_ours() == []


def _requests(dep: Deployment, n: int = N) -> None:
    svc = dep.mesh.target
    for _ in range(n):
        status, body = netns.http_get(dep.load_netns, svc.vip, svc.port, "/")
        assert status == 200 and len(body) == 1024


def _stat(backend: LocalBackend, proxy: str, name: str) -> float:
    return backend.stats(proxy).get(name, 0.0)


def _plaintext_to_server_pod(dep: Deployment) -> bytes:
    """A request from outside the mesh (the server's node namespace) straight to the pod."""
    server = dep.mesh.endpoints(dep.mesh.target)[0]
    req = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    return tcp_send(topology.node_ns(server.node), server.ip, 8080, req)


@pytest.mark.parametrize("up", ["baseline"], indirect=True)
def test_baseline_is_direct(up: tuple[LocalBackend, Deployment]) -> None:
    backend, dep = up
    assert dep.mesh.proxies == ()
    _requests(dep)
    assert _plaintext_to_server_pod(dep).startswith(b"HTTP/1.1 200")


@pytest.mark.parametrize("up", ["sidecar"], indirect=True)
def test_sidecar_both_proxies_handle_requests_over_mtls(up: tuple[LocalBackend, Deployment]) -> None:
    backend, dep = up
    _requests(dep)
    client, server = "sidecar-client-0", "sidecar-svc-0-0"
    svc = dep.mesh.target.fqdn
    assert _stat(backend, client, "http.outbound_svc-0.downstream_rq_total") >= N
    assert _stat(backend, client, f"cluster.outbound|80||{svc}.ssl.handshake") >= 1
    assert _stat(backend, client, f"cluster.outbound|80||{svc}.upstream_rq_total") >= N
    assert _stat(backend, server, "listener.0.0.0.0_15006.ssl.handshake") >= 1
    assert _stat(backend, server, "http.inbound_app.downstream_rq_2xx") >= N


@pytest.mark.parametrize("up", ["sidecar"], indirect=True)
def test_sidecar_refuses_plaintext(up: tuple[LocalBackend, Deployment]) -> None:
    backend, dep = up
    before = _stat(backend, "sidecar-svc-0-0", "http.inbound_app.downstream_rq_total")
    answer = _plaintext_to_server_pod(dep)
    assert not answer.startswith(b"HTTP/1.1 200")
    assert _stat(backend, "sidecar-svc-0-0", "http.inbound_app.downstream_rq_total") == before
    assert _stat(backend, "sidecar-svc-0-0", "listener.0.0.0.0_15006.no_filter_chain_match") >= 1


@pytest.mark.parametrize("up", ["ambient"], indirect=True)
def test_ambient_connect_over_15008_between_ztunnels(up: tuple[LocalBackend, Deployment]) -> None:
    backend, dep = up
    _requests(dep)
    zc, zs = "ztunnel-node0", "ztunnel-node1"
    assert _stat(backend, zc, "listener.0.0.0.0_15001.downstream_cx_total") >= N
    hbone = [k for k, v in backend.stats(zc).items()
             if k.startswith("cluster.hbone|") and k.endswith(".upstream_cx_total") and v >= 1]
    assert hbone, "the client ztunnel opened no HBONE connection"
    assert _stat(backend, zs, "listener.0.0.0.0_15008.ssl.handshake") >= 1
    # one CONNECT stream per tunnelled client connection
    assert _stat(backend, zs, "http.hbone_inbound.downstream_rq_total") >= N
    assert _stat(backend, zs, "cluster.inbound_authority.upstream_cx_total") >= N


@pytest.mark.parametrize("up", ["waypoint"], indirect=True)
def test_waypoint_sees_every_request_at_l7(up: tuple[LocalBackend, Deployment]) -> None:
    backend, dep = up
    _requests(dep)
    assert _stat(backend, "ztunnel-node0", "tcp.to_waypoint_svc-0.downstream_cx_total") >= N
    assert _stat(backend, "waypoint", "http.connect_terminate.downstream_rq_total") >= N
    assert _stat(backend, "waypoint", "http.waypoint.downstream_rq_2xx") >= N
    assert _stat(backend, "ztunnel-node1", "http.hbone_inbound.downstream_rq_total") >= 1


def test_teardown_leaves_no_netns_process_or_host_rule() -> None:
    host_rules = subprocess.run(["iptables-save"], capture_output=True, text=True).stdout
    backend = LocalBackend(_scenario())
    backend.preflight()
    pids = []
    try:
        dep = backend.provision("waypoint")
        pids = [p.pid for p in dep.processes]
        assert netns.list_ours()
    finally:
        backend.teardown()
    assert netns.list_ours() == []
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            import os
            os.kill(pid, 0)
    assert subprocess.run(["iptables-save"], capture_output=True, text=True).stdout.count(
        "MB_") == host_rules.count("MB_") == 0
