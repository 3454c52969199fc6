"""The control-plane process and its control API, driven by ControlPlane (no root, no
Envoy: a plain gRPC client plays the proxy)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import grpc
import pytest
from envoy.service.discovery.v3 import ads_pb2_grpc
from envoy.service.discovery.v3.discovery_pb2 import DiscoveryRequest

from bench.controlplane.client import ControlPlane, ControlPlaneError
from bench.controlplane.resources import CLUSTER_TYPE, LISTENER_TYPE


def _cluster(name: str) -> dict[str, object]:
    return {"name": name, "type": "STATIC", "connect_timeout": "1s"}


def test_process_api_and_stop(tmp_path: Path) -> None:
    cp = ControlPlane.in_dir(tmp_path)
    with cp:
        pid = cp.pid
        assert pid is not None and cp.start() is cp  # a second start is a no-op
        assert stat.S_IMODE(cp.xds_socket.stat().st_mode) == 0o666  # proxies run as 1337
        assert stat.S_IMODE(cp.control_socket.stat().st_mode) == 0o600
        shared = {"clusters": [_cluster("a"), _cluster("b")], "listeners": []}
        r = cp.set_snapshots({"n1": shared, "n2": shared,
                              "n3": {"clusters": [_cluster("c")]}})
        assert sorted(r["changed"]) == ["n1", "n2", "n3"]
        assert r["parsed"] == 3 and r["reused"] == 0  # the shared config converted once
        with pytest.raises(ControlPlaneError, match="no_such_field"):
            cp.set_snapshots({"n1": {"clusters": [{"name": "x", "no_such_field": 1}]}})
        with pytest.raises(ControlPlaneError, match="unknown command"):
            cp.call({"cmd": "nope"})

        # a proxy subscribes and gets its clusters
        with grpc.insecure_channel(f"unix:{cp.xds_socket}") as ch:
            stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(ch)
            req = DiscoveryRequest(type_url=CLUSTER_TYPE)
            req.node.id = "n1"
            call = stub.StreamAggregatedResources(iter([req]))
            resp = next(call)
            assert resp.version_info == r["version"] and len(resp.resources) == 2
            call.cancel()

        late = cp.wait_acked(version=r["version"], nodes=["n1"], timeout_s=0.3)
        assert not late["acked"] and set(late["stragglers"]["n1"]) == {CLUSTER_TYPE,
                                                                       LISTENER_TYPE}
        st = cp.status()
        assert st["nodes"]["n1"]["types"][CLUSTER_TYPE]["resources"] == 2
        assert st["nodes"]["n1"]["types"][CLUSTER_TYPE]["config_bytes"] > 0
        assert st["counts"]["send"] == 1
        pushed = cp.push(reason="all")
        assert int(pushed["version"]) > int(r["version"]) and pushed["queued"] == {}
        events, nxt = cp.events()
        assert [e["event"] for e in events][:2] == ["connect", "send"] and nxt == len(events)
        # a cursor alone fetches no events, and later events start there
        assert cp.event_cursor() == nxt
        assert cp.events(nxt) == ([], nxt)
        assert cp.cpu_seconds() > 0
    assert cp.pid is None
    cp.stop()  # idempotent
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not cp.xds_socket.exists() and not cp.control_socket.exists()
    lines = [json.loads(x) for x in cp.events_file.read_text().splitlines()]
    assert [e["event"] for e in lines][:2] == ["connect", "send"]


def test_start_failure_is_reported(tmp_path: Path) -> None:
    (tmp_path / "xds.sock").write_text("not a socket")
    cp = ControlPlane.in_dir(tmp_path)
    with pytest.raises(ControlPlaneError, match="exited during start-up"):
        cp.start(timeout_s=10)
    assert cp.pid is None
