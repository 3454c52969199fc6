"""The ztunnel role's config client: one delta ADS stream per node, subscribed (wildcard) to
istio.workload.Address and istio.security.Authorization as ztunnel subscribes
(istio/ztunnel src/xds/client.rs), every response decoded with the upstream message shapes
(wds.py) and ACKed (a NACK when one does not decode). The Envoy that carries the ztunnel's
traffic in this emulation gets its own config beside it; this client is what makes the
ztunnel role's config bytes, fan-out and exposure Istio's.

    python -m bench.controlplane.wds_client --xds-socket X --nodes ztunnel-node0,... --state D

For each node it keeps what it holds and rewrites D/<node>.json after every response:
{"node", "types": {type_url: {"resources": n, "bytes": b}}, "responses": n, "acks": n,
 "nacks": n, "bytes_received": b}. SIGTERM stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from pathlib import Path

import grpc
from envoy.service.discovery.v3 import ads_pb2_grpc
from envoy.service.discovery.v3.discovery_pb2 import DeltaDiscoveryRequest, DeltaDiscoveryResponse
from google.rpc.status_pb2 import Status

from bench.controlplane import wds

log = logging.getLogger("bench.controlplane.wds_client")
TYPES = {wds.ADDRESS_TYPE: wds.Address, wds.AUTHORIZATION_TYPE: wds.Authorization}


class NodeState:
    def __init__(self, node: str, state_dir: Path) -> None:
        self.node = node
        self.path = state_dir / f"{node}.json"
        self.held: dict[str, dict[str, int]] = {t: {} for t in TYPES}
        self.responses = self.acks = self.nacks = self.bytes_received = 0

    def apply(self, resp: DeltaDiscoveryResponse) -> str | None:
        """Decode and keep the response's resources; the error text if one does not."""
        self.responses += 1
        self.bytes_received += resp.ByteSize()
        cls = TYPES.get(resp.type_url)
        if cls is None:
            return f"unexpected type {resp.type_url}"
        held = self.held[resp.type_url]
        for r in resp.resources:
            if r.resource.type_url != resp.type_url:
                return f"{r.name}: resource of type {r.resource.type_url}"
            msg = cls.FromString(r.resource.value)  # raises DecodeError on bad bytes
            # istiod (and our server) marshal deterministically: map entries by key
            if msg.SerializeToString(deterministic=True) != r.resource.value:
                return f"{r.name}: does not round-trip through the upstream message shape"
            held[r.name] = len(r.resource.value)
        for name in resp.removed_resources:
            held.pop(name, None)
        return None

    def write(self) -> None:
        doc = {"node": self.node, "responses": self.responses, "acks": self.acks,
               "nacks": self.nacks, "bytes_received": self.bytes_received,
               "types": {t: {"resources": len(h), "bytes": sum(h.values())}
                         for t, h in self.held.items()}}
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc))
        os.replace(tmp, self.path)


async def follow(channel: grpc.aio.Channel, node: str, state_dir: Path) -> None:
    state = NodeState(node, state_dir)
    state.write()
    while True:
        call = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel).DeltaAggregatedResources()
        try:
            for i, t in enumerate(TYPES):
                req = DeltaDiscoveryRequest(type_url=t)
                if i == 0:
                    req.node.id = node
                await call.write(req)
            async for resp in call:
                error = state.apply(resp)
                ack = DeltaDiscoveryRequest(type_url=resp.type_url, response_nonce=resp.nonce)
                if error is None:
                    state.acks += 1
                else:
                    state.nacks += 1
                    ack.error_detail.CopyFrom(Status(code=3, message=error))
                    log.warning("%s: NACK %s", node, error)
                state.write()
                await call.write(ack)
        except grpc.aio.AioRpcError as e:
            log.info("%s: stream ended (%s), reconnecting", node, e.code())
        await asyncio.sleep(0.5)


async def main_async(xds_socket: Path, nodes: list[str], state_dir: Path) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with grpc.aio.insecure_channel(f"unix:{xds_socket}") as channel:
        tasks = [asyncio.create_task(follow(channel, n, state_dir)) for n in nodes]
        await stop.wait()
        for t in tasks:
            t.cancel()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.controlplane.wds_client",
                                 description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--xds-socket", type=Path, required=True)
    ap.add_argument("--nodes", required=True, help="comma-separated node ids")
    ap.add_argument("--state", type=Path, required=True, help="directory for <node>.json")
    ap.add_argument("--log-level", default="INFO")
    args = ap.parse_args(argv)
    logging.basicConfig(level=args.log_level, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    asyncio.run(main_async(args.xds_socket, [n for n in args.nodes.split(",") if n],
                           args.state))
    return 0


if __name__ == "__main__":
    sys.exit(main())
