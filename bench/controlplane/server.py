"""The Aggregated Discovery Service: State of the World and delta (incremental) xDS, for
Envoy's listeners, clusters, routes and endpoints and ztunnel's WDS types.

Protocol, as the xDS spec and Envoy's ADS client expect it:
- The first request of a stream carries the node; its id picks the snapshot served. Envoy
  subscribes CDS first and LDS once its clusters are warm, then RDS and EDS by name; each
  type is answered when it is requested, never before.
- SotW (StreamAggregatedResources): a request without response_nonce is a subscription,
  answered with the current resources (also on a reconnect). A request whose response_nonce
  is the stream's newest for that type is an ACK when it has no error_detail and
  version_info is the version sent; with error_detail a NACK (Envoy's message is recorded;
  nothing is re-sent until the snapshot changes). An older nonce is stale: it changes no
  protocol state (accounting still records it). Every send holds all resources of the type.
- Delta (DeltaAggregatedResources, Envoy's DELTA_GRPC, ztunnel's only protocol): a
  request subscribes (wildcard when it names none, or "*") or adds/removes names; with a
  response_nonce it is also an ACK or NACK. The server remembers per stream what the client
  holds (name -> digest) and sends a type WHOLE (every subscribed resource, as istiod's
  non-delta generators do over delta xDS: pilot/pkg/xds/delta.go pushDeltaXds) or
  INCREMENTAL (only resources that differ from what the client holds, plus removals).
- Versions are one server-wide sequence ("1", "2", ...), like istiod's push version.
- set_snapshots() sends the types whose content changed (start-up, tests). change() is a
  config change as istiod handles it: debounced (PILOT_DEBOUNCE_AFTER / _MAX), then for
  every node Istio's push decision (pushrules.plan) picks the types and how, and the
  concurrent sends are throttled (PILOT_PUSH_THROTTLE). push() re-sends whole (a forced
  full push). Clusters go before endpoints, listeners and routes.

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
from envoy.service.discovery.v3.discovery_pb2 import DeltaDiscoveryRequest, DiscoveryRequest

from bench.controlplane import pushrules
from bench.controlplane.accounting import Event, Ledger
from bench.controlplane.pushrules import CONTENT, INCREMENTAL, SKIP, WHOLE, ConfigKey, NodeMeta
from bench.controlplane.resources import PUSH_ORDER
from bench.controlplane.snapshot import Snapshot, encode_delta_response, encode_response

ADS_SERVICE = "envoy.service.discovery.v3.AggregatedDiscoveryService"
log = logging.getLogger("bench.controlplane")


@dataclass(frozen=True)
class Push:
    """A queued send of one type to one stream, of the version current when queued."""

    type_url: str
    version: str
    reason: str
    how: str = WHOLE  # delta streams: WHOLE or INCREMENTAL (SotW always sends whole)


@dataclass(frozen=True)
class PushResult:
    """What a set_snapshots() or push() call did. `version` is what wait_acked() takes."""

    version: str
    changed: dict[str, list[str]]  # node -> type URLs given a new version
    queued: dict[str, list[str]]  # node -> type URLs queued to at least one open stream
    unknown: list[str] = field(default_factory=list)  # push(): nodes without a snapshot
    # change(): the nodes Istio pushes, per node and type how it is sent, the types whose
    # content changed although the decision skips them (sent anyway, counted: a model gap),
    # and how long the debounce held the change
    pushed: list[str] = field(default_factory=list)
    plans: dict[str, dict[str, str]] = field(default_factory=dict)
    unplanned: dict[str, list[str]] = field(default_factory=dict)
    debounce_s: float = 0.0
    merged: int = 1  # changes merged into this push by the debounce
    differs: dict[str, list[str]] = field(default_factory=dict)  # types whose content changed


@dataclass(eq=False)  # compared and hashed by identity: kept in sets per node
class Stream:
    """One ADS stream (one Envoy connection; a reconnect is a new Stream)."""

    id: int
    queue: asyncio.Queue[Any]
    node: str = ""
    delta: bool = False
    subscribed: set[str] = field(default_factory=set)
    nonce: dict[str, str] = field(default_factory=dict)  # type -> newest nonce sent
    version: dict[str, str] = field(default_factory=dict)  # type -> version sent with it
    # delta only: per type, wildcard or the names subscribed, and what the client holds
    wildcard: dict[str, bool] = field(default_factory=dict)
    names: dict[str, set[str]] = field(default_factory=dict)
    has: dict[str, dict[str, str]] = field(default_factory=dict)  # name -> digest sent
    nonce_version: dict[str, str] = field(default_factory=dict)  # nonce -> version


def _as_int(version: str) -> int:
    """Our versions are integers; anything else (another server's) counts as none."""
    return int(version) if version.isdigit() else 0


class XdsServer:
    """Serves snapshots per node id over ADS and accounts every send and answer."""

    def __init__(self, ledger: Ledger, debounce_ms: float = 0.0,
                 debounce_max_ms: float = 10_000.0, throttle: int = 0,
                 root_namespace: str = pushrules.ROOT_NAMESPACE) -> None:
        self.ledger = ledger
        self.snapshots: dict[str, Snapshot] = {}
        self.meta: dict[str, NodeMeta] = {}
        self.streams: dict[str, set[Stream]] = {}
        self.debounce_s = debounce_ms / 1000.0
        self.debounce_max_s = debounce_max_ms / 1000.0
        self.root_namespace = root_namespace
        # istiod's push throttle: sends in flight at once (0: no limit)
        self._throttle = asyncio.Semaphore(throttle) if throttle > 0 else None
        self.throttle = throttle
        self._seq = 0  # version sequence
        self._nonces = 0
        self._stream_ids = 0
        self._progress = asyncio.Event()
        self._pending: list[tuple[dict[str, Snapshot], list[ConfigKey],
                                  asyncio.Future[PushResult]]] = []
        self._debouncer: asyncio.Task[None] | None = None
        self._last_change = 0.0

    # ---- what the control API calls ----------------------------------------------------
    def set_meta(self, meta: Mapping[str, NodeMeta]) -> None:
        """What the push decision needs to know of each node (role, namespace, ...)."""
        self.meta.update(meta)

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
        queued = self._queue({n: [(t, INCREMENTAL) for t in ts] for n, ts in changed.items()},
                             version, "snapshot")
        return PushResult(version, changed, queued)

    async def change(self, snapshots: Mapping[str, Snapshot],
                     keys: list[ConfigKey]) -> PushResult:
        """A config change: the new snapshots and the ConfigKeys that changed. Debounced
        (changes arriving within debounce_ms of each other are merged, up to
        debounce_max_ms), then pushed by Istio's decision. Returns when it is queued."""
        if self.debounce_s <= 0:
            return self._apply_change(dict(snapshots), keys, 0.0, 1)
        fut: asyncio.Future[PushResult] = asyncio.get_running_loop().create_future()
        self._pending.append((dict(snapshots), list(keys), fut))
        self._last_change = time.monotonic()
        if self._debouncer is None:
            self._debouncer = asyncio.create_task(self._debounce())
        return await fut

    async def _debounce(self) -> None:
        """istiod's debounce (pilot/pkg/xds/discovery.go debounce): push once no change has
        come for debounce_s, or debounce_max_s after the first."""
        first = time.monotonic()
        while True:
            now = time.monotonic()
            quiet = self._last_change + self.debounce_s - now
            left = first + self.debounce_max_s - now
            if quiet <= 0 or left <= 0:
                break
            await asyncio.sleep(min(quiet, left))
        batch, self._pending, self._debouncer = self._pending, [], None
        snaps: dict[str, Snapshot] = {}
        keys: list[ConfigKey] = []
        for s, k, _ in batch:
            snaps.update(s)
            keys += [x for x in k if x not in keys]
        try:
            result = self._apply_change(snaps, keys, time.monotonic() - first, len(batch))
        except Exception as e:  # noqa: BLE001 - handed to every waiting caller, not hidden
            for _, _, fut in batch:
                fut.set_exception(e)
            return
        for _, _, fut in batch:
            fut.set_result(result)

    def _apply_change(self, snapshots: dict[str, Snapshot], keys: list[ConfigKey],
                      debounce_s: float, merged: int) -> PushResult:
        version = self._next_version()
        todo: dict[str, list[tuple[str, str]]] = {}
        plans: dict[str, dict[str, str]] = {}
        unplanned: dict[str, list[str]] = {}
        differs_by: dict[str, list[str]] = {}
        pushed: list[str] = []
        for node in sorted(set(self.snapshots) | set(snapshots)):
            old = self.snapshots.get(node)
            new = snapshots.get(node, old)
            if new is None:
                continue
            self.snapshots[node] = new
            meta = self.meta.get(node)
            if meta is None:
                raise ValueError(f"no node metadata for {node}: the push decision needs it")
            p = pushrules.plan(meta, keys, self.root_namespace)
            if p.pushed:
                pushed.append(node)
            for t in PUSH_ORDER:
                if t not in new.by_type and (old is None or t not in old.by_type):
                    continue
                differs = (old is None or t not in old.by_type or t not in new.by_type
                           or old.by_type[t].digest != new.by_type[t].digest)
                how = p.sends(t)
                if differs:
                    differs_by.setdefault(node, []).append(t)
                if how == WHOLE and t in new.by_type:
                    todo.setdefault(node, []).append((t, WHOLE))
                elif how in (INCREMENTAL, CONTENT) and differs:
                    todo.setdefault(node, []).append((t, INCREMENTAL))
                elif how == SKIP and differs:
                    # our rendering changed what Istio would not send: send it (the proxy
                    # must hold what it is served), and count the gap
                    unplanned.setdefault(node, []).append(t)
                    todo.setdefault(node, []).append((t, INCREMENTAL))
                    self.ledger.counts["unplanned"] += 1
                    log.warning("%s: %s changed but Istio's decision skips it", node, t)
            if p.pushed:
                plans[node] = {t: h for t, h in p.types.items()}
        changed = {n: [t for t, _ in ts] for n, ts in todo.items()}
        queued = self._queue(todo, version, "change")
        return PushResult(version, changed, queued, pushed=pushed, plans=plans,
                          unplanned=unplanned, debounce_s=debounce_s, merged=merged,
                          differs=differs_by)

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
        return PushResult(version, changed,
                          self._queue({n: [(t, WHOLE) for t in ts] for n, ts in changed.items()},
                                      version, f"push:{reason}"), unknown)

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
                self._serve_sotw, request_deserializer=DiscoveryRequest.FromString,
                response_serializer=_identity),
            "DeltaAggregatedResources": grpc.stream_stream_rpc_method_handler(
                self._serve_delta, request_deserializer=DeltaDiscoveryRequest.FromString,
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

    def _queue(self, types_by_node: Mapping[str, list[tuple[str, str]]], version: str,
               reason: str) -> dict[str, list[str]]:
        queued: dict[str, list[str]] = {}
        for node, types in types_by_node.items():
            for t, _ in types:
                self.ledger.type_state(node, t).version = version
            for stream in self.streams.get(node, ()):
                for t, how in types:
                    stream.queue.put_nowait(Push(t, version, reason, how))
                    queued.setdefault(node, []).append(t)
        return queued

    async def _serve_sotw(self, request_iterator: Any,
                          context: grpc.aio.ServicerContext) -> None:
        await self._serve_stream(context, delta=False)

    async def _serve_delta(self, request_iterator: Any,
                           context: grpc.aio.ServicerContext) -> None:
        await self._serve_stream(context, delta=True)

    async def _serve_stream(self, context: grpc.aio.ServicerContext, delta: bool) -> None:
        # requests are read by a task of their own and meet pushes in one queue, so this
        # coroutine is the stream's only writer and handles both in arrival order
        self._stream_ids += 1
        stream = Stream(self._stream_ids, asyncio.Queue(), delta=delta)
        reader = asyncio.create_task(self._read(context, stream.queue))
        try:
            while (item := await stream.queue.get()) is not None:
                if isinstance(item, Push):
                    if self._throttle is None:
                        await self._push(stream, context, item)
                    else:
                        async with self._throttle:
                            await self._push(stream, context, item)
                elif delta:
                    await self._on_delta_request(stream, context, item)
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
    async def _read(context: grpc.aio.ServicerContext, queue: asyncio.Queue[Any]) -> None:
        try:
            while (req := await context.read()) is not grpc.aio.EOF:
                queue.put_nowait(req)
        except (asyncio.CancelledError, grpc.RpcError) as e:
            log.debug("stream read ended: %r", e)  # the peer went away; the writer ends too
        finally:
            queue.put_nowait(None)

    async def _hello(self, stream: Stream, context: grpc.aio.ServicerContext,
                     node_id: str) -> None:
        if not stream.node:
            if not node_id:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                    "the first request of a stream must carry node.id")
            stream.node = node_id
            self.streams.setdefault(stream.node, set()).add(stream)
            self.ledger.record(Event("connect", stream.node, stream=stream.id,
                                     detail=context.peer(),
                                     reason="delta" if stream.delta else "sotw"))
            self._notify()

    def _served(self, stream: Stream, t: str) -> bool:
        """Whether type `t` is served (a request for it is counted), or counted as unsupported."""
        if t not in PUSH_ORDER:
            self.ledger.counts["unsupported_type"] += 1
            log.warning("%s asked for %s, which is not served", stream.node, t)
            return False
        self.ledger.type_state(stream.node, t).requests += 1
        return True

    async def _on_request(self, stream: Stream, context: grpc.aio.ServicerContext,
                          req: DiscoveryRequest) -> None:
        await self._hello(stream, context, req.node.id)
        t = req.type_url
        if not self._served(stream, t):
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

    async def _on_delta_request(self, stream: Stream, context: grpc.aio.ServicerContext,
                                req: DeltaDiscoveryRequest) -> None:
        await self._hello(stream, context, req.node.id)
        t = req.type_url
        if not self._served(stream, t):
            return
        first = t not in stream.subscribed
        subscribe = set(req.resource_names_subscribe)
        added: set[str] = set()
        if first:
            stream.subscribed.add(t)
            stream.wildcard[t] = not subscribe or "*" in subscribe
            stream.names[t] = subscribe - {"*"}
        else:
            if "*" in subscribe:
                stream.wildcard[t] = True
            added = subscribe - {"*"} - stream.names[t]
            stream.names[t] |= added
            stream.names[t] -= set(req.resource_names_unsubscribe)
            for name in req.resource_names_unsubscribe:
                stream.has.get(t, {}).pop(name, None)
        if req.response_nonce:
            stale = req.response_nonce != stream.nonce.get(t)
            error = None
            if req.HasField("error_detail"):
                error = req.error_detail.message or f"grpc code {req.error_detail.code}"
            version = stream.nonce_version.get(req.response_nonce, "")
            self.ledger.answered(stream.node, t, req.response_nonce, version, error, stale,
                                 stream.id)
            self._notify()
        if first:
            reason = "reconnect" if req.initial_resource_versions else "initial"
            await self._send(stream, context, t, reason)
        elif added:
            await self._send(stream, context, t, "subscribe", INCREMENTAL)

    async def _push(self, stream: Stream, context: grpc.aio.ServicerContext, push: Push) -> None:
        current = self.ledger.type_state(stream.node, push.type_url).version
        if push.version != current:
            return  # a newer version was queued behind this one: coalesce into it
        if stream.version.get(push.type_url) == current:
            return  # this stream already has it (its subscription was answered with it)
        await self._send(stream, context, push.type_url, push.reason, push.how)

    async def _send(self, stream: Stream, context: grpc.aio.ServicerContext, type_url: str,
                    reason: str, how: str = WHOLE) -> None:
        snap = self.snapshots.get(stream.node)
        if snap is None or type_url not in stream.subscribed:
            return  # sent when the proxy subscribes or the snapshot arrives
        version = self.ledger.type_state(stream.node, type_url).version
        res = snap.by_type.get(type_url)
        if stream.delta:
            await self._send_delta(stream, context, type_url, reason, how, version)
            return
        if res is None:
            return
        self._nonces += 1
        nonce = str(self._nonces)
        data = encode_response(version, res.body, type_url, nonce)
        stream.nonce[type_url], stream.version[type_url] = nonce, version
        self.ledger.sent(stream.node, type_url, version, nonce, len(data), len(res.names),
                         reason, stream.id)
        await context.write(data)

    async def _send_delta(self, stream: Stream, context: grpc.aio.ServicerContext,
                          type_url: str, reason: str, how: str, version: str) -> None:
        snap = self.snapshots[stream.node]
        res = snap.by_type.get(type_url)
        items = res.by_name if res is not None else {}
        has = stream.has.setdefault(type_url, {})
        wanted = (items.keys() if stream.wildcard.get(type_url)
                  else [n for n in stream.names.get(type_url, ()) if n in items])
        send = [(n, items[n]) for n in wanted if how == WHOLE or has.get(n) != items[n][1]]
        removed = sorted(n for n in has if n not in items)
        if not send and not removed:
            # nothing this client lacks (e.g. a new endpoint set it has not subscribed to
            # yet: its subscription will fetch it at this version)
            return
        self._nonces += 1
        nonce = str(self._nonces)
        data = encode_delta_response(version, [(n, packed) for n, (packed, _) in send],
                                     type_url, nonce, removed)
        for n, (_, digest) in send:
            has[n] = digest
        for n in removed:
            del has[n]
        stream.nonce[type_url], stream.version[type_url] = nonce, version
        stream.nonce_version[nonce] = version
        self.ledger.sent(stream.node, type_url, version, nonce, len(data), len(send),
                         f"{reason}:{how}" if reason in ("change", "snapshot") else reason,
                         stream.id)
        await context.write(data)


def _identity(data: bytes) -> bytes:
    return data
