"""The ADS protocol against a scripted client (no Envoy, no root): subscription before the
snapshot, ACK, NACK, stale nonces, unchanged snapshots, forced pushes, reconnects."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from envoy.service.discovery.v3 import ads_pb2_grpc
from envoy.service.discovery.v3.discovery_pb2 import (
    DeltaDiscoveryRequest,
    DeltaDiscoveryResponse,
    DiscoveryRequest,
    DiscoveryResponse,
)
from google.rpc.status_pb2 import Status

from bench.controlplane.accounting import Ledger
from bench.controlplane.pushrules import ConfigKey, NodeMeta
from bench.controlplane.resources import CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE
from bench.controlplane.server import XdsServer
from bench.controlplane.snapshot import Converter

CDS, LDS, EDS, RDS = CLUSTER_TYPE, LISTENER_TYPE, ENDPOINT_TYPE, ROUTE_TYPE


def _cluster(name: str, port: int = 9) -> dict[str, Any]:
    return {"name": name, "type": "STATIC", "connect_timeout": "1s",
            "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
                {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1",
                                                             "port_value": port}}}}]}]}}


def _listener(name: str, port: int) -> dict[str, Any]:
    return {"name": name, "address": {"socket_address": {"address": "127.0.0.1",
                                                         "port_value": port}},
            "filter_chains": [{"filters": [{"name": "envoy.filters.network.tcp_proxy",
                                            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3"
                         ".TcpProxy", "stat_prefix": "t", "cluster": "c1"}}]}]}


class Client:
    """A scripted ADS client: one stream; requests written by hand, responses collected by
    a reader task (cancelling a pending read would cancel the whole call)."""

    def __init__(self, channel: grpc.aio.Channel, node: str) -> None:
        self.call = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel) \
            .StreamAggregatedResources()
        self.node = node
        self.first = True
        self.received: asyncio.Queue[DiscoveryResponse | BaseException] = asyncio.Queue()
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for resp in self.call:
                self.received.put_nowait(resp)
        except grpc.aio.AioRpcError as e:
            self.received.put_nowait(e)

    async def request(self, type_url: str, version: str = "", nonce: str = "",
                      error: str | None = None) -> None:
        req = DiscoveryRequest(type_url=type_url, version_info=version, response_nonce=nonce)
        if self.first:
            req.node.id = self.node
            self.first = False
        if error is not None:
            req.error_detail.CopyFrom(Status(code=3, message=error))
        await self.call.write(req)

    async def response(self, timeout_s: float = 2.0) -> DiscoveryResponse:
        got = await asyncio.wait_for(self.received.get(), timeout_s)
        if isinstance(got, BaseException):
            raise got
        return got

    async def nothing(self, within_s: float = 0.2) -> bool:
        await asyncio.sleep(within_s)
        return self.received.empty()

    async def ack(self, resp: DiscoveryResponse) -> None:
        await self.request(resp.type_url, resp.version_info, resp.nonce)


Scenario = Callable[[XdsServer, grpc.aio.Channel, Converter], Awaitable[None]]


def _run(tmp_path: Path, scenario: Scenario) -> list[dict[str, Any]]:
    """Run `scenario` against a server on a Unix socket; return the events file's lines."""
    events = tmp_path / "events.jsonl"

    async def main() -> None:
        ledger = Ledger(events)
        xds = XdsServer(ledger)
        server = grpc.aio.server()
        server.add_generic_rpc_handlers((xds.handler(),))
        server.add_insecure_port(f"unix:{tmp_path / 'xds.sock'}")
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"unix:{tmp_path / 'xds.sock'}") as ch:
                await scenario(xds, ch, Converter())
        finally:
            # a grace period: the streams the client just closed finish (and log their
            # disconnect) instead of being cancelled mid-way; a test whose stream stays open
            # waits for it at most this long
            await server.stop(grace=5)
            ledger.close()

    asyncio.run(main())
    return [json.loads(line) for line in events.read_text().splitlines()]


def _snap(conv: Converter, clusters: list[str], port: int = 10001) -> Any:
    return conv.snapshot({"clusters": [_cluster(c) for c in clusters],
                          "listeners": [_listener("l1", port)]})


def test_subscribe_first_then_snapshot_then_acks(tmp_path: Path) -> None:
    async def scenario(xds: XdsServer, ch: grpc.aio.Channel, conv: Converter) -> None:
        c = Client(ch, "n1")
        await c.request(CDS)
        assert await c.nothing()  # no snapshot yet: nothing to answer with
        result = xds.set_snapshots({"n1": _snap(conv, ["c1"])})
        cds = await c.response()
        assert (cds.type_url, cds.version_info, len(cds.resources)) == (CDS, result.version, 1)
        assert await c.nothing()  # LDS not requested yet: not sent
        await c.ack(cds)
        await c.request(LDS)  # Envoy asks for listeners once its clusters are in
        lds = await c.response()
        assert lds.type_url == LDS and lds.version_info == result.version
        late = xds.stragglers({"n1": result.version})
        assert list(late["n1"]) == [LDS]
        await c.ack(lds)
        done = await xds.wait_acked({"n1": result.version}, timeout_s=2)
        assert done["acked"] and done["stragglers"] == {}

    ev = _run(tmp_path, scenario)
    assert [(e["event"], e["type"]) for e in ev] == [
        ("connect", ""), ("send", CDS), ("ack", CDS), ("send", LDS), ("ack", LDS),
        ("disconnect", "")]
    assert ev[1]["reason"] == "snapshot" and ev[3]["reason"] == "initial"
    sends = [e for e in ev if e["event"] == "send"]
    assert all(e["bytes"] > 0 and e["resources"] == 1 for e in sends)
    acks = [e for e in ev if e["event"] == "ack"]
    assert [a["nonce"] for a in acks] == [s["nonce"] for s in sends]
    assert all(a["latency_ns"] > 0 for a in acks)


def test_unchanged_snapshot_is_not_sent_but_a_push_is(tmp_path: Path) -> None:
    async def scenario(xds: XdsServer, ch: grpc.aio.Channel, conv: Converter) -> None:
        xds.set_snapshots({"n1": _snap(conv, ["c1"])})
        c = Client(ch, "n1")
        await c.request(CDS)
        await c.ack(await c.response())
        await c.request(LDS)
        await c.ack(await c.response())
        same = xds.set_snapshots({"n1": _snap(conv, ["c1"])})
        assert same.changed == {}
        assert await c.nothing()
        pushed = xds.push(["n1", "ghost"], "full")
        assert pushed.unknown == ["ghost"]
        cds, lds = await c.response(), await c.response()
        assert (cds.type_url, lds.type_url) == (CDS, LDS)  # clusters first
        assert cds.version_info == lds.version_info == pushed.version
        await c.ack(cds)
        await c.ack(lds)
        assert (await xds.wait_acked({"n1": pushed.version}, 2))["acked"]
        only_cds = xds.set_snapshots({"n1": _snap(conv, ["c1", "c2"])})
        assert only_cds.changed == {"n1": [CDS]}
        cds = await c.response()
        assert len(cds.resources) == 2
        assert await c.nothing()
        await c.ack(cds)
        # LDS did not change: its older version counts as current for the new one
        assert (await xds.wait_acked({"n1": only_cds.version}, 2))["acked"]
        st = xds.status()["nodes"]["n1"]["types"]
        assert st[CDS]["acked_version"] == only_cds.version
        assert st[LDS]["acked_version"] == pushed.version

    ev = _run(tmp_path, scenario)
    assert [e["reason"] for e in ev if e["event"] == "send"] == [
        "initial", "initial", "push:full", "push:full", "snapshot"]


def test_nack_is_recorded_and_stale_nonces_change_nothing(tmp_path: Path) -> None:
    async def scenario(xds: XdsServer, ch: grpc.aio.Channel, conv: Converter) -> None:
        xds.set_snapshots({"n1": _snap(conv, ["c1"])})
        c = Client(ch, "n1")
        await c.request(CDS)
        first = await c.response()
        await c.ack(first)
        await c.request(LDS)
        await c.ack(await c.response())
        xds.push(["n1"], "coalesced", types=[CDS])
        v2 = xds.push(["n1"], "a", types=[CDS]).version  # queued behind the first: one send, the newest
        r2 = await c.response()
        assert await c.nothing()
        v3 = xds.push(["n1"], "b", types=[CDS]).version
        r3 = await c.response()
        assert (r2.version_info, r3.version_info) == (v2, v3)
        await c.ack(r2)  # stale: an older nonce than the newest sent
        await asyncio.sleep(0.05)
        assert xds.status()["nodes"]["n1"]["types"][CDS]["acked_version"] == first.version_info
        await c.request(CDS, version=first.version_info, nonce=r3.nonce, error="bad cluster")
        done = await xds.wait_acked({"n1": v3}, timeout_s=5)
        # rejected: wait_acked does not wait out its timeout for it
        assert not done["acked"] and done["waited_s"] < 2
        entry = done["stragglers"]["n1"][CDS]
        assert entry["nack"] == "bad cluster" and entry["rejected"]
        assert xds.status()["counts"]["nack"] == 1
        v4 = xds.push(["n1"], "fix", types=[CDS]).version
        await c.ack(await c.response())
        assert (await xds.wait_acked({"n1": v4}, 2))["acked"]

    ev = _run(tmp_path, scenario)
    assert [e["reason"] for e in ev if e["event"] == "send"] == [
        "initial", "initial", "push:a", "push:b", "push:fix"]
    stale = [e for e in ev if e["event"] == "ack" and e["stale"]]
    assert len(stale) == 1
    (nack,) = [e for e in ev if e["event"] == "nack"]
    assert nack["detail"] == "bad cluster" and nack["version"] == "4" and nack["bytes"] > 0


def test_reconnect_is_answered_and_first_request_needs_a_node(tmp_path: Path) -> None:
    async def scenario(xds: XdsServer, ch: grpc.aio.Channel, conv: Converter) -> None:
        v = xds.set_snapshots({"n1": _snap(conv, ["c1"])}).version
        c = Client(ch, "n1")
        await c.request(CDS, version=v)  # a proxy that had this version before
        resp = await c.response()
        assert resp.version_info == v
        c.call.cancel()
        anonymous = Client(ch, "")
        await anonymous.request(CDS)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await anonymous.response()
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        for _ in range(50):
            if not xds.streams:
                break
            await asyncio.sleep(0.02)
        assert xds.status()["nodes"]["n1"]["connected"] == 0

    ev = _run(tmp_path, scenario)
    assert [e["event"] for e in ev] == ["connect", "send", "disconnect"]
    assert ev[1]["reason"] == "reconnect"


# ---- delta xDS ------------------------------------------------------------------------------
class DeltaClient:
    """A scripted delta ADS client (Envoy's DELTA_GRPC, ztunnel's protocol)."""

    def __init__(self, channel: grpc.aio.Channel, node: str) -> None:
        self.call = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel) \
            .DeltaAggregatedResources()
        self.node = node
        self.first = True
        self.received: asyncio.Queue[Any] = asyncio.Queue()
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for resp in self.call:
                self.received.put_nowait(resp)
        except grpc.aio.AioRpcError as e:
            self.received.put_nowait(e)

    async def request(self, type_url: str, subscribe: list[str] | None = None,
                      nonce: str = "", error: str | None = None) -> None:
        req = DeltaDiscoveryRequest(type_url=type_url, response_nonce=nonce,
                                    resource_names_subscribe=subscribe or [])
        if self.first:
            req.node.id = self.node
            self.first = False
        if error is not None:
            req.error_detail.CopyFrom(Status(code=3, message=error))
        await self.call.write(req)

    async def response(self, timeout_s: float = 2.0) -> DeltaDiscoveryResponse:
        got = await asyncio.wait_for(self.received.get(), timeout_s)
        if isinstance(got, BaseException):
            raise got
        return got  # type: ignore[no-any-return]

    async def nothing(self, within_s: float = 0.2) -> bool:
        await asyncio.sleep(within_s)
        return self.received.empty()

    async def ack(self, resp: DeltaDiscoveryResponse) -> None:
        await self.request(resp.type_url, nonce=resp.nonce)


def _split_snap(conv: Converter, clusters: list[str], timeout: str = "15s") -> Any:
    """Clusters with their endpoints over EDS and one listener with its route over RDS."""
    cds = [{"name": c, "type": "EDS", "connect_timeout": "1s",
            "eds_cluster_config": {"eds_config": {"ads": {}, "resource_api_version": "V3"}}}
           for c in clusters]
    eds = [_cluster(c)["load_assignment"] for c in clusters]
    rds = [{"name": "r1", "virtual_hosts": [{"name": "v", "domains": ["*"], "routes": [
        {"match": {"prefix": "/"}, "route": {"cluster": clusters[0], "timeout": timeout}}]}]}]
    return conv.snapshot({"clusters": cds, "endpoints": eds, "routes": rds,
                          "listeners": [_listener("l1", 10001)]})


def test_delta_subscriptions_increments_and_istios_decision(tmp_path: Path) -> None:
    """Wildcard CDS/LDS, RDS/EDS by name; a Service change sends the new cluster only
    (incremental), a route change re-sends every cluster and route (whole, as istiod's CDS
    for a VirtualService), an unrelated policy in another namespace pushes nothing."""
    async def scenario(xds: XdsServer, ch: grpc.aio.Channel, conv: Converter) -> None:
        xds.set_meta({"n1": NodeMeta("sidecar", "bench")})
        v1 = xds.set_snapshots({"n1": _split_snap(conv, ["c1", "c2"])}).version
        c = DeltaClient(ch, "n1")
        await c.request(CDS)
        cds = await c.response()
        assert sorted(r.name for r in cds.resources) == ["c1", "c2"]
        assert cds.system_version_info == v1 and not cds.removed_resources
        await c.ack(cds)
        await c.request(EDS, ["c1", "c2"])
        eds = await c.response()
        assert sorted(r.name for r in eds.resources) == ["c1", "c2"]
        await c.ack(eds)
        await c.request(LDS)
        await c.ack(await c.response())
        await c.request(RDS, ["r1"])
        await c.ack(await c.response())
        assert (await xds.wait_acked({"n1": v1}, 2))["acked"]

        svc = [ConfigKey("ServiceEntry", "bench", "c3")]
        r = await xds.change({"n1": _split_snap(conv, ["c1", "c2", "c3"])}, svc)
        assert r.pushed == ["n1"] and r.plans["n1"][CDS] == "incremental"
        cds = await c.response()
        assert [x.name for x in cds.resources] == ["c3"]  # only the new cluster
        lds = await c.response()
        assert lds.type_url == LDS and len(lds.resources) == 1  # listeners whole
        rds = await c.response()
        assert rds.type_url == RDS and [x.name for x in rds.resources] == ["r1"]
        await c.ack(cds)
        await c.ack(lds)
        await c.ack(rds)
        await c.request(EDS, ["c3"])  # Envoy subscribes to the new cluster's endpoints
        eds = await c.response()
        assert [x.name for x in eds.resources] == ["c3"]
        await c.ack(eds)
        assert (await xds.wait_acked({"n1": r.version}, 2))["acked"]

        route = [ConfigKey("VirtualService", "bench", "c1")]
        r = await xds.change({"n1": _split_snap(conv, ["c1", "c2", "c3"], "7s")}, route)
        got = [await c.response() for _ in range(3)]
        assert [g.type_url for g in got] == [CDS, LDS, RDS]  # no EDS for a route
        assert sorted(x.name for x in got[0].resources) == ["c1", "c2", "c3"]  # unchanged
        for g in got:
            await c.ack(g)
        assert await c.nothing()
        assert (await xds.wait_acked({"n1": r.version}, 2))["acked"]

        elsewhere = [ConfigKey("AuthorizationPolicy", "other", "p")]
        r = await xds.change({"n1": _split_snap(conv, ["c1", "c2", "c3"], "7s")}, elsewhere)
        assert r.pushed == [] and r.changed == {} and r.unplanned == {}
        assert await c.nothing()

    ev = _run(tmp_path, scenario)
    sends = [e for e in ev if e["event"] == "send"]
    assert [e["reason"] for e in sends[-3:]] == ["change:whole"] * 3
    assert all(e["bytes"] > 0 for e in sends)
    acks = [e for e in ev if e["event"] == "ack"]
    assert len(acks) == len(sends) and not any(a["stale"] for a in acks)


def test_debounce_merges_changes_and_delays_the_push(tmp_path: Path) -> None:
    async def scenario(xds: XdsServer, ch: grpc.aio.Channel, conv: Converter) -> None:
        xds.debounce_s = 0.1
        xds.set_meta({"n1": NodeMeta("sidecar", "bench")})
        xds.set_snapshots({"n1": _split_snap(conv, ["c1"])})
        a = asyncio.create_task(xds.change({"n1": _split_snap(conv, ["c1", "c2"])},
                                           [ConfigKey("ServiceEntry", "bench", "c2")]))
        await asyncio.sleep(0.03)
        b = asyncio.create_task(xds.change({"n1": _split_snap(conv, ["c1", "c2"], "3s")},
                                           [ConfigKey("VirtualService", "bench", "c1")]))
        ra, rb = await a, await b
        assert ra is rb and ra.merged == 2  # one push for both
        assert ra.debounce_s >= 0.1 + 0.03 * 0.9
        # merged kinds: the VirtualService makes CDS whole
        assert ra.plans["n1"][CDS] == "whole"

    _run(tmp_path, scenario)
