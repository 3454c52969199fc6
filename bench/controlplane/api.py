"""The control API: JSON lines on a Unix socket, one request line -> one response line.

A connection may carry any number of requests, answered in order. Requests:
  {"cmd": "ping"}
  {"cmd": "snapshot", "snapshots": {node_id: {"listeners": [...], "clusters": [...]}},
                      "groups": [{"nodes": [node_id, ...], "snapshot": {...}}],
                      "meta": {node_id: {"role", "namespace", "services", "egress"}},
                      "change": [{"kind", "namespace", "name"}, ...]}
      set each node's resources (v3 JSON dicts; keys in resources.SNAPSHOT_KEYS); a group
      gives many nodes one config, sent once. `meta` tells the push decision what each node
      is. Without `change`, the types whose content changed are pushed; with it, the change
      is debounced and pushed by Istio's decision (pushrules). -> {"version", "changed",
      "queued", "convert_s", "parsed", "reused", "pushed", "plans", "unplanned",
      "debounce_s", "merged"}
  {"cmd": "push", "nodes": [node_id, ...] | null, "reason": str, "types": [type_url] | null}
      send the current snapshot again under a new version (null nodes: all). ->
      {"version", "changed", "queued", "unknown"}
  {"cmd": "status"}  -> XdsServer.status()
  {"cmd": "wait_acked", "versions": {node_id: version} | null, "timeout_s": float}
      or {"cmd": "wait_acked", "version": v, "nodes": [...] | null, "timeout_s": float}
      wait until each node ACKed that version (or newer) of every type; null: every node,
      current version. -> {"acked": bool, "stragglers": {node: {type: {...}}}, "waited_s"}
  {"cmd": "events", "since": int} -> {"events": [...], "next": int}
  {"cmd": "events", "since": null} -> {"events": [], "next": int}  (a cursor only)
Response: {"ok": true, "result": ...} or {"ok": false, "error": "one line"}.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import asdict
from typing import Any

from google.protobuf import json_format

from bench.controlplane.pushrules import ConfigKey, NodeMeta
from bench.controlplane.server import XdsServer
from bench.controlplane.snapshot import Converter, Snapshot

LINE_LIMIT = 2**31  # one request line may hold every proxy's config (hundreds of MB)
log = logging.getLogger("bench.controlplane")


class ControlApi:
    def __init__(self, server: XdsServer) -> None:
        self.server = server
        self.converter = Converter()

    async def handle(self, req: dict[str, Any]) -> Any:
        cmd = req.get("cmd")
        if cmd == "ping":
            return {"pong": True}
        if cmd == "snapshot":
            return await self._snapshot(req)
        if cmd == "push":
            result = self.server.push(req.get("nodes"), str(req.get("reason", "")),
                                      req.get("types"))
            return asdict(result)
        if cmd == "status":
            return self.server.status()
        if cmd == "wait_acked":
            versions = req.get("versions")
            if versions is None and req.get("version") is not None:
                nodes = req.get("nodes") or list(self.server.snapshots)
                versions = {n: str(req["version"]) for n in nodes}
            return await self.server.wait_acked(versions, float(req.get("timeout_s", 30.0)))
        if cmd == "events":
            if req.get("since") is None:  # only where the log ends now: a cursor, no events
                return {"events": [], "next": len(self.server.ledger.events)}
            since = int(req["since"])
            events = self.server.ledger.since(since)
            return {"events": events, "next": since + len(events)}
        raise ValueError(f"unknown command {cmd!r}")

    async def _snapshot(self, req: dict[str, Any]) -> dict[str, Any]:
        t0 = time.perf_counter()
        parsed, reused = self.converter.parsed, self.converter.reused
        snaps: dict[str, Snapshot] = {}
        # convert everything before storing anything: a bad resource changes no node
        for node, cfg in (req.get("snapshots") or {}).items():
            snaps[node] = self.converter.snapshot(cfg)
        for group in req.get("groups") or []:
            snap = self.converter.snapshot(group["snapshot"])
            for node in group["nodes"]:
                snaps[node] = snap
        convert_s = time.perf_counter() - t0
        if req.get("meta"):
            self.server.set_meta({n: NodeMeta.of(m) for n, m in req["meta"].items()})
        if req.get("change") is not None:
            result = await self.server.change(snaps, [ConfigKey.of(k) for k in req["change"]])
        else:
            result = self.server.set_snapshots(snaps)
        return {**asdict(result), "convert_s": convert_s,
                "parsed": self.converter.parsed - parsed,
                "reused": self.converter.reused - reused}

    async def serve_connection(self, reader: asyncio.StreamReader,
                               writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                try:
                    result = await self.handle(json.loads(line))
                    reply: dict[str, Any] = {"ok": True, "result": result}
                except (ValueError, KeyError, TypeError, json_format.ParseError) as e:
                    # bad input from the caller: answer it, keep serving
                    reply = {"ok": False, "error": f"{type(e).__name__}: {e}"}
                writer.write(json.dumps(reply, separators=(",", ":")).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError) as e:
            log.debug("control connection ended: %r", e)
        finally:
            writer.close()
