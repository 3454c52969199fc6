"""Config-push experiments on the local mesh: a change reaches exactly the proxies Istio's
scoping says, every one ACKs, and the control plane's accounting agrees with Envoy's."""

from __future__ import annotations

import dataclasses
import time

import pytest

from bench.backends.local import netns
from bench.backends.local.backend import LocalBackend
from bench.experiments import changed_mesh, run_push, to_samples
from bench.mesh import AuthorizationPolicy
from bench.scenario import from_dict
from bench.store import Cell

pytestmark = pytest.mark.root

# who is sent something for each change, by role, under Istio 1.27's decision (pushrules):
# a sidecar without a Sidecar resource for every service, route and policy of its namespace;
# a ztunnel its WDS deltas (nothing for a route); a waypoint on every change (an
# AuthorizationPolicy re-sends its listeners, clusters, routes and endpoints)
EXPECTED = {
    ("sidecar", "new_service"): {"sidecar"},
    ("sidecar", "l7_route"): {"sidecar"},
    ("sidecar", "l4_authz"): {"sidecar"},
    ("ambient", "new_service"): {"ztunnel"},
    ("ambient", "l7_route"): set(),
    ("ambient", "l4_authz"): {"ztunnel"},
    ("waypoint", "new_service"): {"ztunnel", "waypoint"},
    ("waypoint", "l7_route"): {"waypoint"},
    ("waypoint", "l4_authz"): {"ztunnel", "waypoint"},
}
# whose config actually changes: the policy changes only the selected workload's sidecar,
# and not the waypoint (an L4 policy)
CHANGED = {("sidecar", "l4_authz"): {"sidecar-svc-0-0"},
           ("waypoint", "l4_authz"): {"ztunnel"}}
# the xDS types Istio sends a sidecar for each change (cds.go, eds.go, lds.go, rds.go)
SIDECAR_TYPES = {"new_service": {"cds", "eds", "lds", "rds"}, "l7_route": {"cds", "lds", "rds"},
                 "l4_authz": {"lds"}}


def _backend(name: str, services: int, pods_per_service: int) -> LocalBackend:
    """A checked local backend of two nodes serving xDS (provision it in a try/teardown)."""
    backend = LocalBackend(from_dict({
        "name": name, "proxy": {"config_source": "xds"},
        "topology": {"nodes": 2, "services": services, "pods_per_service": pods_per_service}}))
    backend.preflight()
    return backend


@pytest.mark.parametrize("mode, experiment", sorted(EXPECTED))
def test_change_reaches_exactly_the_scoped_proxies(mode: str, experiment: str) -> None:
    backend = _backend("push-test", services=2, pods_per_service=1)
    try:
        dep = backend.provision(mode)
        o = run_push(backend.abilities(), dep.mesh, experiment, timeout_s=30)
        roles = {p.name: p.role for p in dep.mesh.proxies}
        want = {n for n, r in roles.items() if r in EXPECTED[(mode, experiment)]}
        assert set(o.updated) == want
        changed = CHANGED.get((mode, experiment))
        want_changed = want if changed is None else {
            n for n in want if n in changed or roles[n] in changed}
        assert set(o.changed) == want_changed
        # Istio pushes every proxy of the namespace (sidecars) and every ambient proxy
        assert set(o.pushed) == set(roles)
        assert o.unplanned == {}  # nothing sent outside Istio's decision
        assert not o.nacks and not o.stragglers
        assert o.debounce_ms >= 100  # PILOT_DEBOUNCE_AFTER
        # the proxies' own view (Envoy's counters; the ztunnels' WDS client's ACKs)
        assert {n for n, v in o.applied.items() if v > 0} == want
        for name in want:
            assert o.bytes_by_proxy[name] > 0 and 0 <= o.converge_ms[name] < 30_000
        if mode == "sidecar":
            sent = {k for k, b in o.bytes_by_type.get("sidecar", {}).items() if b > 0}
            assert sent == SIDECAR_TYPES[experiment]  # a route re-sends clusters and routes
        if mode != "sidecar":
            assert {k for k in o.bytes_by_type.get("ztunnel", {})
                    if not k.startswith("datapath_")} <= {"wds_address", "wds_authorization"}
        # the proxies spent CPU applying it (their whole-process clocks, in seconds)
        assert o.proxies_cpu_s is not None and (o.proxies_cpu_s > 0 or not want)
        rows = to_samples(o, Cell(1, mode, 0))
        total = next(r for r in rows if r.metric == "proxies_updated")
        assert total.value == len(want)
        if experiment == "new_service":
            new = changed_mesh(dep.mesh, experiment).services[-1]
            status, body = netns.http_get(dep.load_netns, new.vip, new.port)
            assert status == 200 and len(body) == 1024  # the new service works end to end
    finally:
        backend.teardown()
    assert netns.list_ours() == []


@pytest.mark.parametrize("mode", ["sidecar", "ambient", "waypoint"])
def test_l4_policy_is_enforced_by_the_proxy_that_holds_it(mode: str) -> None:
    """A DENY policy naming the identity the server side really sees (sidecar: the client
    pod's; ambient: the client node's ztunnel; waypoint: the waypoint's) stops the traffic;
    one naming nobody (the l4_authz experiment's) does not; removing it restores traffic."""
    backend = _backend("authz-test", services=1, pods_per_service=1)
    try:
        dep = backend.provision(mode)
        mesh, svc = dep.mesh, dep.mesh.target
        if mode == "sidecar":
            peer = mesh.pod(mesh.client).spiffe
        elif mode == "ambient":
            peer = mesh.proxies_of("ztunnel")[0].identity
        else:
            peer = mesh.pod("waypoint").spiffe

        def get() -> int:
            try:
                return netns.http_get(dep.load_netns, svc.vip, svc.port)[0]
            except OSError:  # reset or closed: the tunnel or the connection was refused
                return -1

        assert get() == 200
        deny = AuthorizationPolicy("deny-peer", svc.namespace, svc.name, (peer,))
        for policies, ok in (((deny,), False), ((), True)):
            with_policy = dataclasses.replace(mesh, policies=policies)
            backend.reconfigure(with_policy)
            waited = backend.controlplane.wait_acked(timeout_s=30)
            assert not waited.get("stragglers"), waited
            # connections accepted before the change keep the old filter chain until Envoy
            # drains them (--drain-time-s 1): the policy holds for new connections at once
            deadline = time.monotonic() + 10
            while ((status := get()) == 200) != ok and time.monotonic() < deadline:
                time.sleep(0.2)
            assert (status == 200) is ok, (policies, status)
        harmless = changed_mesh(mesh, "l4_authz")
        backend.reconfigure(harmless)
        backend.controlplane.wait_acked(timeout_s=30)
        # the ztunnels' inbound listener is replaced (its RBAC changed): a request on a
        # connection pooled before the change may fail once while Envoy drains it (seen on
        # the waypoint path with 2 workers); the policy itself must not block traffic
        deadline = time.monotonic() + 10
        while (status := get()) != 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert status == 200
    finally:
        backend.teardown()
    assert netns.list_ours() == []


@pytest.mark.bcc
@pytest.mark.parametrize("mode, experiment", [("sidecar", "new_service"), ("sidecar", "l4_authz"),
                                              ("waypoint", "l7_route"), ("ambient", "l7_route")])
def test_kernel_view_agrees_with_the_control_planes_accounting(mode: str, experiment: str) -> None:
    """BCC on the control plane's process: the sockets it wrote to after the change are the
    proxies it says it updated, and the bytes are its accounted bytes plus framing."""
    from bench.probes.pushwire import PushWireProbe

    backend = _backend("wire-test", services=3, pods_per_service=2)
    try:
        dep = backend.provision(mode)
        assert backend.controlplane is not None and backend.controlplane.pid
        with PushWireProbe(backend.controlplane.pid) as wire:
            o = run_push(backend.abilities(), dep.mesh, experiment, timeout_s=30, wire=wire)
    finally:
        backend.teardown()
    k = o.kernel
    assert k is not None and k.overflow == 0
    assert k.control_calls >= 2  # the snapshot call and wait_acked, subtracted
    assert k.sockets == len(o.updated), (k, o.updated)
    # gRPC and HTTP/2 framing (5 + 9 bytes per message, WINDOW_UPDATEs for the ACKs) on top
    assert o.bytes_total <= k.bytes <= o.bytes_total * 1.1 + 200 * len(o.updated), (k, o)
    rows = to_samples(o, Cell(1, mode, 0))
    assert {r.metric for r in rows} >= {"kernel_sockets_written", "kernel_bytes_written"}


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["ambient"])
def test_ztunnel_push_is_small_in_istios_shapes(mode: str) -> None:
    """At the fan-out sweep's size (10 services x MB_FANOUT_PODS pods, 50 in the sweep's
    largest, 20 by default to fit a short lock), each change sends every ztunnel only the
    WDS resources it alters: the Service or the Authorization, and the Workloads it
    selects (their services map or policy list changes), a few hundred bytes each: tens
    of KB at most, the same for every ztunnel."""
    import os

    pods = int(os.environ.get("MB_FANOUT_PODS", "20"))
    backend = LocalBackend(from_dict({
        "name": "wds-size", "proxy": {"config_source": "xds"},
        "timing": {"ready_timeout_s": 300},
        "topology": {"nodes": 3, "services": 10, "pods_per_service": pods, "client_node": 0,
                     "server_node": 1, "waypoint_node": 2}}))
    backend.preflight()
    seen = {}
    try:
        dep = backend.provision(mode)
        mesh = dep.mesh
        for experiment in ("new_service", "l7_route", "l4_authz"):
            o = run_push(backend.abilities(), mesh, experiment, timeout_s=120)
            assert not o.nacks and not o.stragglers and o.unplanned == {}
            zts = [p.name for p in mesh.proxies_of("ztunnel")]
            per = [o.bytes_by_proxy.get(z, 0) for z in zts]
            datapath = [o.datapath_bytes_by_proxy.get(z, 0) for z in zts]
            seen[experiment] = (max(per), max(datapath))
            if experiment == "l7_route":
                assert per == [0] * len(zts)  # a route is nothing to a ztunnel
            else:
                # one Service or Authorization plus the pods_per_service Workloads it selects
                assert all(0 < b <= 1024 + 400 * pods for b in per), per
                assert len(set(per)) == 1  # every ztunnel the same: no per-proxy filter
            mesh = changed_mesh(mesh, experiment)
        wds = backend.wds_state()
        for z in zts:  # the WDS client holds what istiod would have sent it
            held = wds[z]["types"]
            assert held["type.googleapis.com/istio.workload.Address"]["resources"] == \
                len(mesh.pods) + len(mesh.services)
            assert held["type.googleapis.com/istio.security.Authorization"]["resources"] == 1
            assert wds[z]["nacks"] == 0
    finally:
        backend.teardown()
    print(f"\nztunnel bytes per change at 10 x {pods} ({mode}), WDS vs Envoy data path:", seen)
    assert netns.list_ours() == []
