"""What the control plane sent and what each proxy answered: the control-plane view of push
fan-out, like istiod's /debug/syncz plus its pilot_xds_* metrics.

Every event is kept in memory and appended to a JSON-lines file, flushed per line, so that
another process (the orchestrator) can follow it while the server runs. One line:
  {"event": "send"|"ack"|"nack"|"connect"|"disconnect", "node", "type", "version", "nonce",
   "bytes", "resources", "ts", "mono_ns", "detail", "reason", "stream", "stale", "latency_ns"}
- send: one DiscoveryResponse; bytes = its serialised size, resources = how many it holds,
  reason = why it was sent ("initial", "snapshot", "push:<reason>", "reconnect").
- ack / nack: the proxy's answer to the send with that nonce (bytes and resources repeated
  from it); latency_ns = its mono_ns minus the send's; detail = Envoy's error message for a
  NACK. stale = it answered an older send than the newest on its stream: the xDS protocol
  ignores it, but the proxy did apply (or reject) that response, so it is accounted.
- connect / disconnect: a stream opened or closed; stream numbers tell reconnects apart;
  a connect's reason is its protocol, "delta" or "sotw".
ts is time.time() (to line up with other probes); mono_ns is time.monotonic_ns() (for
durations). Both are taken when the server handles the message.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any


@dataclass(frozen=True)
class Event:
    event: str
    node: str
    type: str = ""
    version: str = ""
    nonce: str = ""
    bytes: int = 0
    resources: int = 0
    ts: float = field(default_factory=time.time)
    mono_ns: int = field(default_factory=time.monotonic_ns)
    detail: str = ""
    reason: str = ""
    stream: int = 0
    stale: bool = False
    latency_ns: int = 0


@dataclass
class TypeState:
    """The newest send and answer for one (node, type), across the node's streams."""

    version: str = ""  # what the server currently serves for this type
    sent_version: str = ""
    sent_nonce: str = ""
    acked_version: str = ""
    acked_nonce: str = ""
    nack_detail: str = ""  # the last NACK's message; a later ACK clears it
    nacked_version: str = ""
    sends: int = 0
    requests: int = 0  # every request of this type (subscriptions, ACKs, NACKs, others)
    acks: int = 0
    nacks: int = 0
    bytes_sent: int = 0


class Ledger:
    """The in-memory accounting and the events file. Single-threaded: the server's event
    loop is the only writer."""

    def __init__(self, path: Path | None) -> None:
        self.events: list[Event] = []
        self.counts: Counter[str] = Counter()
        self.state: dict[tuple[str, str], TypeState] = {}
        self._sends: dict[str, Event] = {}  # nonce -> its send event
        # open for the server's whole life (one line per event); close() closes it
        self._file: IO[str] | None = (
            open(path, "a", encoding="utf-8") if path else None)  # noqa: SIM115

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def type_state(self, node: str, type_url: str) -> TypeState:
        return self.state.setdefault((node, type_url), TypeState())

    def record(self, ev: Event) -> Event:
        self.events.append(ev)
        self.counts[ev.event] += 1
        if self._file is not None:
            self._file.write(json.dumps(asdict(ev), separators=(",", ":")) + "\n")
            self._file.flush()  # the orchestrator reads the file while we run
        return ev

    def sent(self, node: str, type_url: str, version: str, nonce: str, size: int,
             count: int, reason: str, stream: int) -> Event:
        ev = self.record(Event("send", node, type_url, version, nonce, size, count,
                               reason=reason, stream=stream))
        self._sends[nonce] = ev
        st = self.type_state(node, type_url)
        st.sent_version, st.sent_nonce = version, nonce
        st.sends += 1
        st.bytes_sent += size
        return ev

    def answered(self, node: str, type_url: str, nonce: str, version: str, error: str | None,
                 stale: bool, stream: int) -> Event:
        """An ACK (error is None) or NACK to the send with `nonce`. `version` is the one
        the proxy reports: the new one for an ACK, its previous one for a NACK."""
        send = self._sends.get(nonce)
        now = time.monotonic_ns()
        ev = self.record(Event(
            "ack" if error is None else "nack", node, type_url,
            version if error is None else (send.version if send else version), nonce,
            send.bytes if send else 0, send.resources if send else 0, mono_ns=now,
            detail=error or "", reason=send.reason if send else "", stream=stream,
            stale=stale, latency_ns=now - send.mono_ns if send else 0))
        st = self.type_state(node, type_url)
        if error is None:
            st.acks += 1
            if not stale:
                st.acked_version, st.acked_nonce, st.nack_detail = version, nonce, ""
        else:
            st.nacks += 1
            if not stale:
                st.nack_detail, st.nacked_version = error, ev.version
        return ev

    def since(self, index: int) -> list[dict[str, Any]]:
        return [asdict(e) for e in self.events[index:]]
