"""The control plane against real Envoy 1.40 processes on loopback (root namespace, no
netns, no iptables): delivery, updates, forced pushes, NACKs and a 20-proxy fan-out, with
the control plane's accounting checked against Envoy's own counters."""

from __future__ import annotations

import os
import socket
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.backends.local import loopback
from bench.controlplane import envoy_config
from bench.controlplane.client import ControlPlane
from bench.controlplane.resources import CLUSTER_TYPE, LISTENER_TYPE
from bench.mesh import PROXY_UID
from tests.support.envoy_admin import admin_stats
from tests.support.ports import free_port

pytestmark = pytest.mark.root
LDS = "listener_manager.lds."
CDS = "cluster_manager.cds."


def _listener(port: int, body: str, name: str = "web") -> dict[str, Any]:
    hcm = {
        "@type": envoy_config.HCM,
        "stat_prefix": name,
        "route_config": {"name": name, "virtual_hosts": [{
            "name": name, "domains": ["*"],
            "routes": [{"match": {"prefix": "/"},
                        "direct_response": {"status": 200, "body": {"inline_string": body}}}],
        }]},
        "http_filters": [{"name": "envoy.filters.http.router",
                          "typed_config": {"@type": envoy_config.ROUTER}}],
    }
    return {"name": name,
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
            "filter_chains": [{"filters": [
                {"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}]}


def _cluster(name: str, timeout: str = "1s") -> dict[str, Any]:
    return {"name": name, "type": "STATIC", "connect_timeout": timeout,
            "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
                {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1",
                                                             "port_value": 9}}}}]}]}}


def _get(port: int, timeout_s: float = 10.0) -> bytes:
    """GET / on a listener that may still be binding on Envoy's worker."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as r:
                return r.read()  # type: ignore[no-any-return]
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@pytest.fixture
def cp(tmp_path: Path) -> Iterator[ControlPlane]:
    with ControlPlane.in_dir(tmp_path) as plane:
        yield plane


@pytest.fixture
def envoys() -> Iterator[list[loopback.Envoy]]:
    started: list[loopback.Envoy] = []
    try:
        yield started
    finally:
        loopback.stop_all(started)


def _start(cp: ControlPlane, envoys: list[loopback.Envoy], node: str) -> loopback.Envoy:
    e = loopback.start(node, cp.xds_socket.parent / "envoys", cp.xds_socket)
    envoys.append(e)
    return e


def _sent(cp: ControlPlane, node: str) -> dict[Any, Any]:
    """Our accounting for one node: sends, ACKs, NACKs per type and bytes in total."""
    events, _ = cp.events()
    mine = [e for e in events if e["node"] == node]
    out: dict[Any, Any] = {"bytes": sum(e["bytes"] for e in mine if e["event"] == "send")}
    for t in (LISTENER_TYPE, CLUSTER_TYPE):
        for kind in ("send", "ack", "nack"):
            out[t, kind] = sum(1 for e in mine if e["event"] == kind and e["type"] == t)
    return out


def _check_counters(cp: ControlPlane, e: loopback.Envoy) -> dict[str, Any]:
    """Our sends, ACKs, NACKs and bytes agree with what the Envoy counted."""
    ours = _sent(cp, e.node_id)
    served = cp.status()["nodes"][e.node_id]["types"]
    st = admin_stats(e, "lds|cds|control_plane|xds_cluster.upstream_cx_rx_bytes_total")
    assert st["control_plane.connected_state"] == 1
    for prefix, t in ((LDS, LISTENER_TYPE), (CDS, CLUSTER_TYPE)):
        assert st[prefix + "update_success"] == ours[t, "ack"], prefix
        assert st[prefix + "update_rejected"] == ours[t, "nack"], prefix
        # Envoy (delta xDS, as the loopback Envoys run) counts an attempt per request it
        # sends (the subscription, one answer per response), and sometimes one more after
        # a rejection (seen for LDS, not CDS, in Envoy 1.40)
        attempts = st[prefix + "update_attempt"]
        assert served[t]["requests"] <= attempts <= served[t]["requests"] + ours[t, "nack"], \
            prefix
        assert served[t]["requests"] >= 1 + ours[t, "send"], prefix
        assert st[prefix + "update_failure"] == 0, prefix
    # what the Envoy read from the control plane = our DiscoveryResponses + framing
    # (HTTP/2 preface, SETTINGS and HEADERS once; 9 bytes of frame + 5 of gRPC per message)
    rx = st["cluster.xds_cluster.upstream_cx_rx_bytes_total"]
    messages = ours[LISTENER_TYPE, "send"] + ours[CLUSTER_TYPE, "send"]
    assert ours["bytes"] + 14 * messages <= rx <= ours["bytes"] + 400 + 60 * messages, \
        (rx, ours)
    return st


def test_delivery_ack_and_update(cp: ControlPlane, envoys: list[loopback.Envoy]) -> None:
    port = free_port()
    first = cp.set_snapshots({"e1": {"listeners": [_listener(port, "one")],
                                     "clusters": [_cluster("c1")]}})
    e = _start(cp, envoys, "e1")  # snapshot first, proxy second: answered on subscription
    done = cp.wait_acked(version=first["version"], timeout_s=30)
    assert done["acked"], done
    assert _get(port) == b"one"
    st = _check_counters(cp, e)
    assert st[LDS + "version_text"] == st[CDS + "version_text"] == first["version"]

    # (b) a change: only the changed type is sent, and ACKed
    second = cp.set_snapshots({"e1": {"listeners": [_listener(port, "two")],
                                      "clusters": [_cluster("c1")]}})
    assert second["changed"] == {"e1": [LISTENER_TYPE]}
    assert cp.wait_acked(version=second["version"], timeout_s=30)["acked"]
    assert _get(port) == b"two"
    st = _check_counters(cp, e)
    assert st[LDS + "version_text"] == second["version"]
    assert st[CDS + "version_text"] == first["version"]
    status = cp.status()["nodes"]["e1"]
    assert status["connected"] == 1
    assert status["types"][LISTENER_TYPE]["acked_version"] == second["version"]
    assert status["types"][LISTENER_TYPE]["config_bytes"] > 0


def test_forced_push_of_an_unchanged_snapshot(cp: ControlPlane,
                                              envoys: list[loopback.Envoy]) -> None:
    e = _start(cp, envoys, "e1")  # proxy first: it subscribes CDS and waits for a snapshot
    port = free_port()
    snap = {"listeners": [_listener(port, "same")], "clusters": [_cluster("c1")]}
    first = cp.set_snapshots({"e1": snap})
    assert cp.wait_acked(version=first["version"], timeout_s=30)["acked"]
    before = _check_counters(cp, e)
    again = cp.set_snapshots({"e1": snap})
    assert again["changed"] == {} and again["queued"] == {}
    pushed = cp.push(["e1"], reason="full-push")
    assert pushed["queued"] == {"e1": [CLUSTER_TYPE, LISTENER_TYPE]}
    assert cp.wait_acked(version=pushed["version"], timeout_s=30)["acked"]
    after = _check_counters(cp, e)
    for prefix in (LDS, CDS):
        assert after[prefix + "update_attempt"] == before[prefix + "update_attempt"] + 1
        assert after[prefix + "update_success"] == before[prefix + "update_success"] + 1
        assert after[prefix + "version_text"] == pushed["version"]
    assert _get(port) == b"same"
    events, _ = cp.events()
    assert {ev["reason"] for ev in events if ev["event"] == "ack"} >= {"push:full-push"}


def test_rejected_resources_are_nacked(cp: ControlPlane, envoys: list[loopback.Envoy]) -> None:
    port = free_port()
    good = _listener(port, "good")
    first = cp.set_snapshots({"e1": {"listeners": [good], "clusters": [_cluster("c1")]}})
    e = _start(cp, envoys, "e1")
    assert cp.wait_acked(version=first["version"], timeout_s=30)["acked"]

    # two filter chains with the same (empty) match: valid protobuf, rejected by Envoy
    bad = {**good, "filter_chains": good["filter_chains"] * 2}
    r = cp.set_snapshots({"e1": {"listeners": [bad], "clusters": [_cluster("c1")]}})
    done = cp.wait_acked(version=r["version"], timeout_s=30)
    assert not done["acked"] and done["waited_s"] < 10  # a rejection ends the wait
    entry = done["stragglers"]["e1"][LISTENER_TYPE]
    assert entry["rejected"] and "same matching rules" in entry["nack"]
    assert _get(port) == b"good"  # Envoy keeps the last good listener

    # a cluster with a zero connect timeout fails Envoy's validation (must be > 0)
    r = cp.set_snapshots({"e1": {"listeners": [good], "clusters": [_cluster("c1", "0s")]}})
    done = cp.wait_acked(version=r["version"], timeout_s=30)
    assert not done["acked"]
    assert "connect_timeout" in done["stragglers"]["e1"][CLUSTER_TYPE]["nack"]
    assert LISTENER_TYPE not in done["stragglers"]["e1"]  # the good listener was ACKed

    fixed = cp.set_snapshots({"e1": {"listeners": [good], "clusters": [_cluster("c2")]}})
    assert cp.wait_acked(version=fixed["version"], timeout_s=30)["acked"]
    st = _check_counters(cp, e)
    assert st[LDS + "update_rejected"] == 1 and st[CDS + "update_rejected"] == 1
    events, _ = cp.events()
    nacks = [ev for ev in events if ev["event"] == "nack"]
    assert [ev["type"] for ev in nacks] == [LISTENER_TYPE, CLUSTER_TYPE]
    assert all(ev["detail"] and ev["bytes"] > 0 for ev in nacks)
    assert cp.status()["nodes"]["e1"]["types"][CLUSTER_TYPE]["nack_detail"] == ""


def test_fan_out_to_twenty_envoys(cp: ControlPlane, envoys: list[loopback.Envoy]) -> None:
    n = 20
    nodes = [f"e{i}" for i in range(n)]
    for node in nodes:
        _start(cp, envoys, node)
    loopback.wait_admin(envoys)
    deadline = time.monotonic() + 60
    while cp.status()["nodes"].keys() != set(nodes) or not all(
            v["connected"] for v in cp.status()["nodes"].values()):
        assert time.monotonic() < deadline, "not every Envoy connected"
        time.sleep(0.1)
    ports = {node: free_port() for node in nodes}
    t0 = time.monotonic()
    r = cp.set_snapshots({node: {"listeners": [_listener(ports[node], node)],
                                 "clusters": [_cluster(f"c-{node}"), _cluster("shared")]}
                          for node in nodes})
    done = cp.wait_acked(version=r["version"], timeout_s=60)
    wall_s = time.monotonic() - t0
    assert done["acked"], done["stragglers"]
    events, _ = cp.events()
    sends = [ev for ev in events if ev["event"] == "send" and ev["version"] == r["version"]]
    acks = [ev for ev in events if ev["event"] == "ack" and ev["version"] == r["version"]]
    assert len(sends) == len(acks) == 2 * n
    assert {ev["node"] for ev in acks} == set(nodes)
    convergence_ms = (max(a["mono_ns"] for a in acks) - min(s["mono_ns"] for s in sends)) / 1e6
    print(f"\n{n} Envoys: all ACKed {convergence_ms:.1f} ms after the first send "
          f"({wall_s * 1000:.0f} ms from the snapshot call), "
          f"{sum(s['bytes'] for s in sends)} bytes")
    for node in nodes:
        assert _get(ports[node]) == node.encode()
    for e in envoys[:3]:
        _check_counters(cp, e)


def test_proxy_uid_can_reach_the_xds_socket() -> None:
    """Proxies run as uid 1337: the xDS socket must accept them (the directory holding it
    must be traversable too, as /run/meshbench is; pytest's tmp_path is not)."""
    with tempfile.TemporaryDirectory(prefix="mb-cp-") as tmp:
        Path(tmp).chmod(0o755)
        with ControlPlane.in_dir(Path(tmp)) as plane:
            pid = os.fork()
            if pid == 0:  # child: become the proxy user, try to connect, report by exit code
                code = 1
                try:
                    os.setgid(PROXY_UID)
                    os.setuid(PROXY_UID)
                    with socket.socket(socket.AF_UNIX) as s:
                        s.connect(str(plane.xds_socket))
                    code = 0
                finally:
                    os._exit(code)
            _, status = os.waitpid(pid, 0)
            assert os.waitstatus_to_exitcode(status) == 0
