"""Envoy resources as protobufs, and the bootstrap that points a proxy at the control plane.

envoy_config builds each proxy's listeners and clusters as plain dicts in Envoy's v3 JSON
form; xDS needs them as protobuf messages. `ParseDict` resolves every typed_config "@type"
through the default descriptor pool, which knows only the modules imported: the extension
modules below are imported for that side effect, one per "@type" envoy_config uses.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

# Imported so that their messages register in the descriptor pool (see the module docstring).
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.bootstrap.internal_listener.v3 import internal_listener_pb2  # noqa: F401
from envoy.extensions.filters.http.cors.v3 import cors_pb2  # noqa: F401
from envoy.extensions.filters.http.fault.v3 import fault_pb2  # noqa: F401
from envoy.extensions.filters.http.grpc_stats.v3 import config_pb2 as grpc_stats_pb2  # noqa: F401
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2 as http_rbac_pb2  # noqa: F401
from envoy.extensions.filters.http.router.v3 import router_pb2  # noqa: F401
from envoy.extensions.filters.listener.original_dst.v3 import original_dst_pb2  # noqa: F401
from envoy.extensions.filters.listener.tls_inspector.v3 import tls_inspector_pb2  # noqa: F401
from envoy.extensions.filters.network.http_connection_manager.v3 import (  # noqa: F401
    http_connection_manager_pb2,
)
from envoy.extensions.filters.network.rbac.v3 import rbac_pb2 as network_rbac_pb2  # noqa: F401
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2  # noqa: F401
from envoy.extensions.transport_sockets.internal_upstream.v3 import (  # noqa: F401
    internal_upstream_pb2,
)
from envoy.extensions.transport_sockets.raw_buffer.v3 import raw_buffer_pb2  # noqa: F401
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2  # noqa: F401
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2  # noqa: F401
from google.protobuf import json_format
from google.protobuf.message import Message

from bench.controlplane.envoy_config import HTTP_OPTIONS, INTERNAL_LISTENER, ProxyConfig
from bench.mesh import Proxy

LISTENER_TYPE = "type.googleapis.com/envoy.config.listener.v3.Listener"
CLUSTER_TYPE = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
ROUTE_TYPE = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
ENDPOINT_TYPE = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
# ztunnel's types (istio/ztunnel src/xds.rs; istiod pilot/pkg/model/context.go AddressType,
# WorkloadAuthorizationType): served to the ztunnel role's WDS client, not to an Envoy
ADDRESS_TYPE = "type.googleapis.com/istio.workload.Address"
AUTHORIZATION_TYPE = "type.googleapis.com/istio.security.Authorization"
ENVOY_TYPES = (LISTENER_TYPE, CLUSTER_TYPE, ROUTE_TYPE, ENDPOINT_TYPE)
WDS_TYPES = (ADDRESS_TYPE, AUTHORIZATION_TYPE)
# The order a push sends types in: clusters and their endpoints before the listeners and
# routes that use them, as istiod does (CDS, EDS, LDS, RDS), so a new listener never points
# at a missing cluster; ztunnel's types after.
PUSH_ORDER = (CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE, ADDRESS_TYPE,
              AUTHORIZATION_TYPE)
SNAPSHOT_KEYS = {"clusters": CLUSTER_TYPE, "endpoints": ENDPOINT_TYPE,
                 "listeners": LISTENER_TYPE, "routes": ROUTE_TYPE,
                 "addresses": ADDRESS_TYPE, "authorizations": AUTHORIZATION_TYPE}
# types a snapshot always holds, even empty: Envoy subscribes to them at start and waits
# for an answer; the others are subscribed by name or by the WDS client, and may be absent
ALWAYS = (CLUSTER_TYPE, LISTENER_TYPE)
XDS_CLUSTER = "xds_cluster"


def listener(d: dict[str, Any]) -> listener_pb2.Listener:
    """A Listener from its v3 JSON dict. json_format.ParseError names the bad field."""
    return json_format.ParseDict(d, listener_pb2.Listener())


def cluster(d: dict[str, Any]) -> cluster_pb2.Cluster:
    """A Cluster from its v3 JSON dict. json_format.ParseError names the bad field."""
    return json_format.ParseDict(d, cluster_pb2.Cluster())


def from_dict(type_url: str, d: dict[str, Any]) -> tuple[str, Message]:
    """The resource of type `type_url` from its JSON dict, and its xDS resource name."""
    if type_url == LISTENER_TYPE:
        msg: Message = listener(d)
    elif type_url == CLUSTER_TYPE:
        msg = cluster(d)
    elif type_url == ROUTE_TYPE:
        msg = json_format.ParseDict(d, route_pb2.RouteConfiguration())
    elif type_url == ENDPOINT_TYPE:
        cla = json_format.ParseDict(d, endpoint_pb2.ClusterLoadAssignment())
        return cla.cluster_name, cla
    elif type_url in WDS_TYPES:
        from bench.controlplane import wds

        return wds.from_dict(type_url, d)
    else:
        raise ValueError(f"unsupported resource type {type_url}")
    return msg.name, msg  # type: ignore[attr-defined]


def snapshot_dict(cfg: ProxyConfig, split: bool = True) -> dict[str, list[dict[str, Any]]]:
    """One proxy's config in the form the control API's `snapshot` command takes. With
    `split` (as istiod serves it), service clusters take their endpoints from EDS and HTTP
    connection managers their routes from RDS; without, both stay inline (CDS and LDS only)."""
    if not split:
        return {"listeners": cfg.listeners, "clusters": cfg.clusters}
    clusters, endpoints = split_endpoints(cfg.clusters)
    listeners, routes = split_routes(cfg.listeners)
    return {"listeners": listeners, "clusters": clusters, "routes": routes,
            "endpoints": endpoints}


ADS_SOURCE = {"ads": {}, "resource_api_version": "V3"}
# clusters of a service (sidecar outbound, waypoint inbound-vip, ztunnel outbound): EDS in
# Istio; the rest (inbound to the app, passthrough, per-endpoint HBONE) stay as they are
EDS_PREFIXES = ("outbound|", "inbound-vip|")


def split_endpoints(clusters: list[dict[str, Any]]) -> tuple[list[dict[str, Any]],
                                                              list[dict[str, Any]]]:
    """Service clusters become EDS clusters; their load assignments are the EDS resources."""
    out, cla = [], []
    for c in clusters:
        if c.get("type") == "STATIC" and "load_assignment" in c \
                and c["name"].startswith(EDS_PREFIXES):
            cla.append({**c["load_assignment"], "cluster_name": c["name"]})
            c = {"name": c["name"], "type": "EDS",
                 "eds_cluster_config": {"eds_config": ADS_SOURCE},
                 **{k: v for k, v in c.items()
                    if k not in ("name", "type", "load_assignment")}}
        out.append(c)
    return out, cla


def split_routes(listeners: list[dict[str, Any]]) -> tuple[list[dict[str, Any]],
                                                            list[dict[str, Any]]]:
    """Every HTTP connection manager's inline route_config becomes an RDS resource of the
    same name (names are unique per proxy; two different configs under one name fail)."""
    routes: dict[str, dict[str, Any]] = {}

    def hcm(f: dict[str, Any]) -> dict[str, Any]:
        tc = f.get("typed_config", {})
        if "route_config" not in tc:
            return f
        rc = tc["route_config"]
        if rc["name"] in routes and routes[rc["name"]] != rc:
            raise ValueError(f"two route configs named {rc['name']!r}")
        routes[rc["name"]] = rc
        tc = {k: v for k, v in tc.items() if k != "route_config"}
        tc["rds"] = {"route_config_name": rc["name"], "config_source": ADS_SOURCE}
        return {**f, "typed_config": tc}

    def chain(ch: dict[str, Any]) -> dict[str, Any]:
        return {**ch, "filters": [hcm(f) for f in ch.get("filters", [])]}

    out = []
    for lis in listeners:
        lis = {**lis, "filter_chains": [chain(c) for c in lis.get("filter_chains", [])]}
        if "default_filter_chain" in lis:
            lis["default_filter_chain"] = chain(lis["default_filter_chain"])
        out.append(lis)
    return out, list(routes.values())


def xds_bootstrap(node_id: str, role: str, admin_socket: Path | str, xds_socket: Path | str,
                  *, internal_listeners: bool = False,
                  metadata: dict[str, Any] | None = None, delta: bool = True) -> dict[str, Any]:
    """A bootstrap that takes all listeners and clusters from the control plane over ADS.

    The only static resource is `xds_cluster`: HTTP/2 (gRPC) to the control plane's Unix
    socket, which therefore works from any network namespace. Admin listens on a Unix socket
    too. `delta`: DELTA_GRPC (incremental xDS, as Istio bootstraps its proxies since 1.22:
    ISTIO_DELTA_XDS, pkg/bootstrap/config.go), else GRPC (State of the World).
    `internal_listeners` adds the bootstrap extension that listeners with
    `internal_listener: {}` need (ztunnel and waypoint roles); Envoy rejects such a listener
    without it. The node id is the key the control plane serves snapshots by.
    """
    boot: dict[str, Any] = {
        "node": {"id": node_id, "cluster": role, "metadata": {"role": role, **(metadata or {})}},
        "admin": {"address": {"pipe": {"path": str(admin_socket), "mode": 0o660}}},
        "dynamic_resources": {
            "ads_config": {
                "api_type": "DELTA_GRPC" if delta else "GRPC",
                "transport_api_version": "V3",
                "grpc_services": [{"envoy_grpc": {"cluster_name": XDS_CLUSTER}}],
                "set_node_on_first_message_only": True,
            },
            "lds_config": {"ads": {}, "resource_api_version": "V3"},
            "cds_config": {"ads": {}, "resource_api_version": "V3"},
        },
        "static_resources": {"clusters": [{
            "name": XDS_CLUSTER,
            "type": "STATIC",
            "connect_timeout": "1s",
            "load_assignment": {
                "cluster_name": XDS_CLUSTER,
                "endpoints": [{"lb_endpoints": [
                    {"endpoint": {"address": {"pipe": {"path": str(xds_socket)}}}}]}],
            },
            "typed_extension_protocol_options": {
                "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                    "@type": HTTP_OPTIONS,
                    "explicit_http_config": {"http2_protocol_options": {}},
                },
            },
        }]},
    }
    if internal_listeners:
        boot["bootstrap_extensions"] = [{"name": "envoy.bootstrap.internal_listener",
                                         "typed_config": {"@type": INTERNAL_LISTENER}}]
    return boot


def proxy_bootstrap(proxy: Proxy, cfg: ProxyConfig, admin_socket: Path | str,
                    xds_socket: Path | str, delta: bool = True) -> dict[str, Any]:
    """The ADS counterpart of envoy_config.bootstrap(): same node id and metadata, no static
    listeners or clusters (the control plane serves `cfg` under node id `proxy.name`)."""
    return xds_bootstrap(proxy.name, proxy.role, admin_socket, xds_socket,
                         internal_listeners=cfg.internal_listeners,
                         metadata={"node": proxy.node, "pod": proxy.pod}, delta=delta)
