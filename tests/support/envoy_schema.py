"""Checks that a rendered config is what Envoy's own schema accepts (the protobufs of
xds-protos), for tests: the product serves the dicts; these parse them field by field."""

from __future__ import annotations

from typing import Any

from envoy.config.bootstrap.v3 import bootstrap_pb2
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_pb2
from google.protobuf import descriptor_pool, json_format

from bench.controlplane.envoy_config import ProxyConfig
from bench.controlplane.resources import cluster, listener


def resolves(type_url: str) -> bool:
    """Whether a typed_config "@type" is known to the descriptor pool (and so to ParseDict)."""
    try:
        descriptor_pool.Default().FindMessageTypeByName(type_url.rsplit("/", 1)[-1])
    except KeyError:
        return False
    return True


def to_protos(cfg: ProxyConfig) -> tuple[list[listener_pb2.Listener], list[cluster_pb2.Cluster]]:
    """Every listener and cluster of one proxy's config, as protobufs."""
    return [listener(d) for d in cfg.listeners], [cluster(d) for d in cfg.clusters]


def bootstrap_proto(boot: dict[str, Any]) -> bootstrap_pb2.Bootstrap:
    """The bootstrap dict as a protobuf: a check that Envoy's schema accepts it."""
    return json_format.ParseDict(boot, bootstrap_pb2.Bootstrap())
