"""The Aggregated Discovery Service, State of the World, for listeners and clusters.

Protocol, as the xDS spec and Envoy's ADS client expect it:
- The first request of a stream carries the node; its id picks the snapshot served. Envoy
  subscribes CDS first and LDS once its clusters are warm; each type is answered when it is
  requested, never before (a push for a type not yet requested waits for the request).
- A request without response_nonce is a subscription: it is answered with the current
  resources, also on a reconnect (when it carries the version the proxy already has).
- A request whose response_nonce is the stream's newest for that type is an ACK when it
  has no error_detail and version_info is the version sent; with error_detail it is a NACK
  (Envoy's message is recorded; nothing is re-sent until the snapshot changes). A request
  with an older nonce is stale: it changes no protocol state (accounting still records it).
- Versions are one server-wide sequence ("1", "2", ...), like istiod's push version: each
  set_snapshots() or push() call takes the next one; a type keeps its version until its
  content changes or a push() forces a new one.
- set_snapshots() sends only the types whose content changed; push() sends the current
  resources even when unchanged (istiod's full push). Clusters go before listeners.
Delta xDS is not served (Envoy gets UNIMPLEMENTED and the bootstrap asks for SotW).

Single-threaded: everything runs on one asyncio loop, so no locks.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import grpc
from envoy.service.discovery.v3.discovery_pb2 import DiscoveryRequest

from bench.controlplane.accounting import Event, Ledger
from bench.controlplane.resources import PUSH_ORDER
from bench.controlplane.snapshot import Snapshot, encode_response

ADS_SERVICE = "envoy.service.discovery.v3.AggregatedDiscoveryService"
log = logging.getLogger("bench.controlplane")


@dataclass(frozen=True)
class Push:
    """A queued send of one type to one stream, of the version current when queued."""

    type_url: str
    version: str
    reason: str


@dataclass(frozen=True)
class PushResult:
    """What a set_snapshots() or push() call did. `version` is what wait_acked() takes."""

    version: str
    changed: dict[str, list[str]]  # node -> type URLs given a new version
    queued: dict[str, list[str]]  # node -> type URLs queued to at least one open stream
    unknown: list[str] = field(default_factory=list)  # push(): nodes without a snapshot


@dataclass(eq=False)  # compared and hashed by identity: kept in sets per node
class Stream:
    """One ADS stream (one Envoy connection; a reconnect is a new Stream)."""

    id: int
    queue: asyncio.Queue[DiscoveryRequest | Push | None]
    node: str = ""
    subscribed: set[str] = field(default_factory=set)
    nonce: dict[str, str] = field(default_factory=dict)  # type -> newest nonce sent
    version: dict[str, str] = field(default_factory=dict)  # type -> version sent with it


def _as_int(version: str) -> int:
    """Our versions are integers; anything else (another server's) counts as none."""
    return int(version) if version.isdigit() else 0


class XdsServer:
    """Serves snapshots per node id over ADS and accounts every send and answer."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.snapshots: dict[str, Snapshot] = {}
        self.streams: dict[str, set[Stream]] = {}
        self._seq = 0  # version sequence
        self._nonces = 0
        self._stream_ids = 0
        self._progress = asyncio.Event()

    # ---- what the control API calls ----------------------------------------------------
    def set_snapshots(self, snapshots: Mapping[str, Snapshot]) -> PushResult:
        """Store each node's snapshot; send the types whose content changed."""
        version = self._next_version()
        changed: dict[str, list[str]] = {}
        for node, snap in snapshots.items():
            old = self.snapshots.get(node)
            self.snapshots[node] = snap
            types = [t for t in PUSH_ORDER if t in snap.by_type and (
                old is None or t not in old.by_type
                or old.by_type[t].digest != snap.by_type[t].digest)]
            if types:
                changed[node] = types
        return PushResult(version, changed, self._queue(changed, version, "snapshot"))

    def push(self, nodes: Iterable[str] | None, reason: str,
             types: Iterable[str] | None = None) -> PushResult:
        """Send the current snapshot of `nodes` (None: every node) under a new version,
        changed or not, as istiod's full push does."""
        asked = None if types is None else set(types)
        if asked is not None and not asked <= set(PUSH_ORDER):
            raise ValueError(f"unsupported types {sorted(asked - set(PUSH_ORDER))}")
        version = self._next_version()
        wanted = list(self.snapshots) if nodes is None else list(nodes)
        kinds = [t for t in PUSH_ORDER if asked is None or t in asked]
        changed = {n: [t for t in kinds if t in self.snapshots[n].by_type]
                   for n in wanted if n in self.snapshots}
        unknown = [n for n in wanted if n not in self.snapshots]
        return PushResult(version, changed, self._queue(changed, version, f"push:{reason}"),
                          unknown)

    def status(self) -> dict[str, Any]:
        """Connected nodes, per node and type the versions sent and ACKed, the last NACK,
        the config size (bytes, resources), and event counts."""
        nodes: dict[str, Any] = {}
        for node in sorted(set(self.snapshots) | set(self.streams)):
            snap = self.snapshots.get(node)
            streams = self.streams.get(node, set())
            types = {}
            for t in PUSH_ORDER:
                st = self.ledger.state.get((node, t))
                res = snap.by_type.get(t) if snap else None
                types[t] = {**(asdict(st) if st else {}),
                            "resources": len(res.names) if res else 0,
                            "config_bytes": res.size if res else 0}
            nodes[node] = {"connected": len(streams),
                           "streams": sorted(s.id for s in streams),
                           "subscribed": sorted({t for s in streams for t in s.subscribed}),
                           "types": types}
        return {"version": str(self._seq), "nodes": nodes, "counts": dict(self.ledger.counts),
                "events": len(self.ledger.events)}

    def stragglers(self, versions: Mapping[str, str] | None = None) -> dict[str, Any]:
        """Nodes that have not ACKed, for every type, a version at least as new as asked.
        A type that has not changed since the asked version needs its current one."""
        want = ({n: self._seq for n in self.snapshots} if versions is None
                else {n: _as_int(v) for n, v in versions.items()})
        out: dict[str, Any] = {}
        for node, asked in want.items():
            snap = self.snapshots.get(node)
            if snap is None:
                out[node] = {"error": "no snapshot for this node"}
                continue
            for t in snap.by_type:
                st = self.ledger.type_state(node, t)
                need = min(asked, _as_int(st.version))
                if _as_int(st.acked_version) < need:
                    out.setdefault(node, {})[t] = {
                        "want": str(need), "acked": st.acked_version, "sent": st.sent_version,
                        "nack": st.nack_detail, "connected": bool(self.streams.get(node)),
                        # rejected what it was asked to take: waiting will not change that
                        "rejected": bool(st.nack_detail)
                        and _as_int(st.nacked_version) >= need}
        return out

    async def wait_acked(self, versions: Mapping[str, str] | None,
                         timeout_s: float) -> dict[str, Any]:
        """Wait until stragglers(versions) is empty, or every straggler has NACKed what it
        was asked to take, or timeout_s passes; returns
        {"acked": bool, "stragglers": {node: {type: {...}}}, "waited_s": float}."""
        t0 = time.monotonic()
        deadline = t0 + timeout_s
        while True:
            late = self.stragglers(versions)
            left = deadline - time.monotonic()
            hopeless = all(e.get("rejected") for types in late.values()
                           for e in types.values() if isinstance(e, dict))
            if not late or left <= 0 or hopeless:
                return {"acked": not late, "stragglers": late,
                        "waited_s": time.monotonic() - t0}
            progress = self._progress
            try:
                await asyncio.wait_for(progress.wait(), left)
            except TimeoutError:
                continue  # the loop reports the stragglers

    def handler(self) -> grpc.GenericRpcHandler:
        """The gRPC handler to add to a grpc.aio server. Responses are pre-serialised
        bytes (snapshot.encode_response), hence the identity serializer."""
        return grpc.method_handlers_generic_handler(ADS_SERVICE, {
            "StreamAggregatedResources": grpc.stream_stream_rpc_method_handler(
                self._serve_stream, request_deserializer=DiscoveryRequest.FromString,
                response_serializer=_identity),
        })

    # ---- internals ------------------------------------------------------------------------
    def _next_version(self) -> str:
        self._seq += 1
        return str(self._seq)

    def _notify(self) -> None:
        """Wake wait_acked() callers: something was ACKed, NACKed or (dis)connected."""
        self._progress.set()
        self._progress = asyncio.Event()

    def _queue(self, types_by_node: dict[str, list[str]], version: str,
               reason: str) -> dict[str, list[str]]:
        queued: dict[str, list[str]] = {}
        for node, types in types_by_node.items():
            for t in types:
                self.ledger.type_state(node, t).version = version
            for stream in self.streams.get(node, ()):
                for t in types:
                    stream.queue.put_nowait(Push(t, version, reason))
                    queued.setdefault(node, []).append(t)
        return queued

    async def _serve_stream(self, request_iterator: Any,
                            context: grpc.aio.ServicerContext) -> None:
        # requests are read by a task of their own and meet pushes in one queue, so this
        # coroutine is the stream's only writer and handles both in arrival order
        self._stream_ids += 1
        stream = Stream(self._stream_ids, asyncio.Queue())
        reader = asyncio.create_task(self._read(context, stream.queue))
        try:
            while (item := await stream.queue.get()) is not None:
                if isinstance(item, Push):
                    await self._push(stream, context, item)
                else:
                    await self._on_request(stream, context, item)
        finally:
            reader.cancel()
            if stream.node:
                self.streams.get(stream.node, set()).discard(stream)
                if not self.streams.get(stream.node):
                    self.streams.pop(stream.node, None)
                self.ledger.record(Event("disconnect", stream.node, stream=stream.id))
                self._notify()

    @staticmethod
    async def _read(context: grpc.aio.ServicerContext,
                    queue: asyncio.Queue[DiscoveryRequest | Push | None]) -> None:
        try:
            while (req := await context.read()) is not grpc.aio.EOF:
                queue.put_nowait(req)
        except (asyncio.CancelledError, grpc.RpcError) as e:
            log.debug("stream read ended: %r", e)  # the peer went away; the writer ends too
        finally:
            queue.put_nowait(None)

    async def _on_request(self, stream: Stream, context: grpc.aio.ServicerContext,
                          req: DiscoveryRequest) -> None:
        if not stream.node:
            if not req.node.id:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                    "the first request of a stream must carry node.id")
            stream.node = req.node.id
            self.streams.setdefault(stream.node, set()).add(stream)
            self.ledger.record(Event("connect", stream.node, stream=stream.id,
                                     detail=context.peer()))
            self._notify()
        t = req.type_url
        if t not in PUSH_ORDER:
            self.ledger.counts["unsupported_type"] += 1
            log.warning("%s asked for %s, which is not served", stream.node, t)
            return
        if not req.response_nonce:
            stream.subscribed.add(t)
            reason = "reconnect" if req.version_info else "initial"
            await self._send(stream, context, t, reason)
            return
        stale = req.response_nonce != stream.nonce.get(t)
        error = None
        if req.HasField("error_detail"):
            error = req.error_detail.message or f"grpc code {req.error_detail.code}"
        elif not stale and req.version_info != stream.version.get(t):
            # the newest nonce with another version and no error: not an ACK of what we sent
            self.ledger.counts["unexpected_version"] += 1
            log.warning("%s answered nonce %s with version %r, sent %r", stream.node,
                        req.response_nonce, req.version_info, stream.version.get(t))
            return
        self.ledger.answered(stream.node, t, req.response_nonce, req.version_info, error,
                             stale, stream.id)
        self._notify()

    async def _push(self, stream: Stream, context: grpc.aio.ServicerContext, push: Push) -> None:
        current = self.ledger.type_state(stream.node, push.type_url).version
        if push.version != current:
            return  # a newer version was queued behind this one: coalesce into it
        if stream.version.get(push.type_url) == current:
            return  # this stream already has it (its subscription was answered with it)
        await self._send(stream, context, push.type_url, push.reason)

    async def _send(self, stream: Stream, context: grpc.aio.ServicerContext, type_url: str,
                    reason: str) -> None:
        snap = self.snapshots.get(stream.node)
        if snap is None or type_url not in stream.subscribed or type_url not in snap.by_type:
            return  # sent when the proxy subscribes or the snapshot arrives
        version = self.ledger.type_state(stream.node, type_url).version
        self._nonces += 1
        nonce = str(self._nonces)
        res = snap.by_type[type_url]
        data = encode_response(version, res.body, type_url, nonce)
        stream.nonce[type_url], stream.version[type_url] = nonce, version
        self.ledger.sent(stream.node, type_url, version, nonce, len(data), len(res.names),
                         reason, stream.id)
        await context.write(data)


def _identity(data: bytes) -> bytes:
    return data
