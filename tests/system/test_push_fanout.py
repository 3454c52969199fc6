"""Config-push experiments on the local mesh: a change reaches exactly the proxies Istio's
scoping says, every one ACKs, and the control plane's accounting agrees with Envoy's."""

from __future__ import annotations

import pytest

from bench.backends.local import netns
from bench.backends.local.backend import LocalBackend
from bench.experiments import changed_mesh, run_push, to_samples
from bench.scenario import from_dict
from bench.store import Cell

pytestmark = pytest.mark.root

# who must receive each change, by role (sidecar: all, since a sidecar without a Sidecar
# resource holds every service and route; ztunnel: L4 only; waypoint: what it serves)
EXPECTED = {
    ("sidecar", "new_service"): {"sidecar"},
    ("sidecar", "l7_route"): {"sidecar"},
    ("ambient", "new_service"): {"ztunnel"},
    ("ambient", "l7_route"): set(),
    ("waypoint", "new_service"): {"ztunnel", "waypoint"},
    ("waypoint", "l7_route"): {"waypoint"},
}


@pytest.mark.parametrize("mode, experiment", sorted(EXPECTED))
def test_change_reaches_exactly_the_scoped_proxies(mode: str, experiment: str) -> None:
    backend = LocalBackend(from_dict({
        "name": "push-test", "proxy": {"config_source": "xds"},
        "topology": {"nodes": 2, "services": 2, "pods_per_service": 1}}))
    backend.preflight()
    try:
        dep = backend.provision(mode)
        o = run_push(backend, dep.mesh, experiment, timeout_s=30)
        roles = {p.name: p.role for p in dep.mesh.proxies}
        want = {n for n, r in roles.items() if r in EXPECTED[(mode, experiment)]}
        assert set(o.updated) == want
        assert not o.nacks and not o.stragglers
        # the proxies' own view: exactly the updated ones applied an update
        assert {n for n, v in o.applied.items() if v > 0} == want
        for name in want:
            assert o.applied[name] == o.sends_by_proxy[name]  # one success per send
            assert o.bytes_by_proxy[name] > 0 and 0 <= o.converge_ms[name] < 30_000
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
