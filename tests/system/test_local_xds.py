"""The local backend's modes with every proxy configured over xDS by the harness's control
plane instead of bootstrap files: same paths, every proxy ACKed what it was sent, over
delta xDS with LDS/RDS/CDS/EDS apart (Istio's default) or State of the World."""

from __future__ import annotations

import json
import os

import pytest

from bench.backends.local import netns
from bench.backends.local.backend import LocalBackend
from bench.controlplane.resources import (
    ADDRESS_TYPE,
    CLUSTER_TYPE,
    ENDPOINT_TYPE,
    LISTENER_TYPE,
    ROUTE_TYPE,
)
from bench.scenario import from_dict

pytestmark = pytest.mark.root


@pytest.mark.parametrize("mode, xds", [("sidecar", "delta"), ("ambient", "delta"),
                                       ("waypoint", "delta"), ("sidecar", "sotw")])
def test_mode_served_over_xds(mode: str, xds: str) -> None:
    backend = LocalBackend(from_dict({"name": "xds-test",
                                      "proxy": {"config_source": "xds", "xds": xds}}))
    backend.preflight()
    try:
        dep = backend.provision(mode)
        svc = dep.mesh.target
        for _ in range(10):
            status, body = netns.http_get(dep.load_netns, svc.vip, svc.port)
            assert status == 200 and len(body) == 1024
        roles = {p.role for p in dep.processes}
        assert "control-plane" in roles
        for proxy in dep.mesh.proxies:
            stats = backend.stats(proxy.name)
            assert stats["control_plane.connected_state"] == 1
            assert stats["cluster_manager.cds.update_success"] >= 1
            assert stats["listener_manager.lds.update_success"] >= 1
            assert stats.get("listener_manager.lds.update_rejected", 0) == 0
        events = [json.loads(line) for line in
                  open(dep.info["xds_events"]).read().splitlines() if line.strip()]
        acked = {e["node"] for e in events if e["event"] == "ack"}
        assert acked == {p.name for p in dep.mesh.proxies}
        # every stream spoke the protocol asked for (the ztunnels' WDS client: delta always)
        protocols = {e["reason"] for e in events if e["event"] == "connect"}
        assert protocols == ({"delta"} if xds == "delta" else {"sotw"} | (
            {"delta"} if mode != "sidecar" else set()))
        # routes and endpoints travelled apart, and every type was ACKed
        by_node: dict[str, set[str]] = {}
        for e in events:
            if e["event"] == "ack":
                by_node.setdefault(e["node"], set()).add(e["type"])
        for proxy in dep.mesh.proxies:
            want = {CLUSTER_TYPE, LISTENER_TYPE, ROUTE_TYPE}
            if proxy.role != "ztunnel" or mode == "ambient":
                want.add(ENDPOINT_TYPE)
            if proxy.role == "ztunnel":
                want.add(ADDRESS_TYPE)  # its WDS client
            assert by_node[proxy.name] >= want, proxy.name
        assert not [e for e in events if e["event"] == "nack"]
        # the ztunnel role's WDS client holds every workload and service address
        wds = backend.wds_state()
        for z in dep.mesh.proxies_of("ztunnel"):
            held = wds[z.name]["types"][ADDRESS_TYPE]["resources"]
            assert held == len(dep.mesh.pods) + len(dep.mesh.services)
        cp_pid = backend.controlplane.pid
    finally:
        backend.teardown()
    assert netns.list_ours() == []
    with pytest.raises(ProcessLookupError):
        os.kill(cp_pid, 0)
