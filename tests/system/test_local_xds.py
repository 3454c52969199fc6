"""The local backend's modes with every proxy configured over xDS by the harness's control
plane instead of bootstrap files: same paths, and every proxy ACKed what it was sent."""

from __future__ import annotations

import json

import pytest

from bench.backends.local import netns
from bench.backends.local.backend import LocalBackend
from bench.scenario import from_dict

pytestmark = pytest.mark.root


@pytest.mark.parametrize("mode", ["sidecar", "ambient", "waypoint"])
def test_mode_served_over_xds(mode: str) -> None:
    backend = LocalBackend(from_dict({"name": "xds-test",
                                      "proxy": {"config_source": "xds"}}))
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
        cp_pid = backend.controlplane.pid
    finally:
        backend.teardown()
    assert netns.list_ours() == []
    with pytest.raises(ProcessLookupError):
        import os
        os.kill(cp_pid, 0)
