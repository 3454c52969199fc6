"""One proxy's resources, serialised once, and the DiscoveryResponse bytes built from them.

Each resource is packed into a `google.protobuf.Any` and serialised when the snapshot is
made, like istiod's marshalled-Any cache; a response is then those bytes framed with its
version, type URL and nonce (protobuf wire format, fields 1, 2, 4, 5 of DiscoveryResponse),
so a push to many proxies costs a concatenation per proxy, and the byte count the
accounting reports is exactly the serialised DiscoveryResponse that gRPC sends. The same
packed resources make a DeltaDiscoveryResponse (encode_delta_response): each wrapped in a
Resource with its name, as istiod sends them (no per-resource version).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from google.protobuf.message import Message

from bench.controlplane import resources

_CACHE_LIMIT = 200_000  # resources; a sidecar x 1,000 services x 200 proxies fits


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _field(number: int, data: bytes) -> bytes:
    """A length-delimited protobuf field (wire type 2)."""
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def pack_any(type_url: str, message: Message) -> bytes:
    """A serialised google.protobuf.Any holding `message` (deterministic field order)."""
    return _field(1, type_url.encode()) + _field(2, message.SerializeToString(deterministic=True))


def encode_response(version: str, body: bytes, type_url: str, nonce: str) -> bytes:
    """A serialised envoy.service.discovery.v3.DiscoveryResponse; `body` is
    `Resources.body` (its repeated `resources` field, already encoded)."""
    return (_field(1, version.encode()) + body + _field(4, type_url.encode())
            + _field(5, nonce.encode()))


def encode_delta_response(version: str, resources: Iterable[tuple[str, bytes]], type_url: str,
                          nonce: str, removed: Iterable[str] = ()) -> bytes:
    """A serialised envoy.service.discovery.v3.DeltaDiscoveryResponse: system_version_info
    (1), resources (2: Resource{name 3, resource 2}), type_url (4), nonce (5),
    removed_resources (6)."""
    body = b"".join(_field(2, _field(3, name.encode()) + _field(2, packed))
                    for name, packed in resources)
    return (_field(1, version.encode()) + body + _field(4, type_url.encode())
            + _field(5, nonce.encode()) + b"".join(_field(6, r.encode()) for r in removed))


@dataclass(frozen=True)
class Resources:
    """The resources of one type that one proxy gets."""

    type_url: str
    names: tuple[str, ...]
    body: bytes  # the encoded `resources` field entries of a DiscoveryResponse
    digest: str  # sha256 of body: equal digests = nothing to push
    packed: tuple[bytes, ...] = ()  # each resource's serialised Any, in `names` order
    digests: tuple[str, ...] = ()  # each resource's sha256 (what delta xDS compares)

    @property
    def size(self) -> int:
        """Bytes of this type's config for the proxy (the exposure figure)."""
        return len(self.body)

    @cached_property
    def by_name(self) -> dict[str, tuple[bytes, str]]:
        """name -> (packed Any, digest)."""
        return {n: (p, d) for n, p, d in zip(self.names, self.packed, self.digests,
                                              strict=True)}

    @classmethod
    def of(cls, type_url: str, names: Iterable[str], packed: Iterable[bytes]) -> Resources:
        packed = tuple(packed)
        body = b"".join(_field(2, p) for p in packed)
        return cls(type_url, tuple(names), body, hashlib.sha256(body).hexdigest(), packed,
                   tuple(hashlib.sha256(p).hexdigest() for p in packed))


@dataclass(frozen=True)
class Snapshot:
    """Everything one proxy is served, by type URL. Versions are not part of it: the server
    stamps them, so the same content can be pushed again under a new version."""

    by_type: Mapping[str, Resources]

    @property
    def size(self) -> int:
        return sum(r.size for r in self.by_type.values())


class Converter:
    """JSON dicts -> packed resources, remembering recent results.

    Proxies often share resources (every sidecar without a Sidecar resource has the same
    service set), so a dict seen before is not parsed again; the key is its canonical JSON.
    The memory is bounded: it is dropped whole when it reaches _CACHE_LIMIT entries.
    """

    def __init__(self) -> None:
        self._packed: dict[str, tuple[str, bytes]] = {}
        self.parsed = 0
        self.reused = 0

    def resources(self, type_url: str, dicts: Iterable[dict[str, Any]]) -> Resources:
        names, packed = [], []
        for d in dicts:
            key = type_url + json.dumps(d, sort_keys=True, separators=(",", ":"))
            hit = self._packed.get(key)
            if hit is None:
                name, msg = resources.from_dict(type_url, d)
                hit = (name, pack_any(type_url, msg))
                if len(self._packed) >= _CACHE_LIMIT:
                    self._packed.clear()
                self._packed[key] = hit
                self.parsed += 1
            else:
                self.reused += 1
            names.append(hit[0])
            packed.append(hit[1])
        return Resources.of(type_url, names, packed)

    def snapshot(self, config: Mapping[str, Any]) -> Snapshot:
        """A Snapshot from {"listeners": [...], "clusters": [...], "routes": [...],
        "endpoints": [...], "addresses": [...], "authorizations": [...]}. Listeners and
        clusters are always there (an empty list if missing: Envoy waits for an answer to
        both); another type is left out when it has no resources."""
        unknown = set(config) - set(resources.SNAPSHOT_KEYS)
        if unknown:
            raise ValueError(f"unknown snapshot keys {sorted(unknown)}; "
                             f"expected {sorted(resources.SNAPSHOT_KEYS)}")
        return Snapshot({t: self.resources(t, config.get(k) or [])
                         for k, t in resources.SNAPSHOT_KEYS.items()
                         if config.get(k) or t in resources.ALWAYS})
