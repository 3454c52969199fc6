"""Envoy resources for the sidecar, ztunnel and waypoint roles, generated from the mesh model.

Each builder returns plain dicts in the JSON form of Envoy's v3 API, split into listeners and
clusters so that they can be written into a static bootstrap now and served over xDS later.

Paths per mode (client pod -> server pod):
  sidecar:  app -> [iptables OUTPUT] -> client sidecar :15001 (HTTP, L7) -mTLS-> [PREROUTING]
            -> server sidecar :15006 (mTLS, HTTP) -> app on 127.0.0.1:8080
  ambient:  app -> [node PREROUTING] -> client-node ztunnel :15001 -HBONE-> [node PREROUTING]
            -> server-node ztunnel :15008 (CONNECT) -> app
  waypoint: app -> client-node ztunnel -HBONE-> waypoint :15008 -> internal listener (HTTP, L7)
            -HBONE-> server-node ztunnel :15008 -> app
HBONE = HTTP/2 CONNECT inside mTLS, to port 15008, with the target pod IP:port as :authority.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.mesh import (
    APP_PORT,
    HBONE_PORT,
    INBOUND_PORT,
    OUTBOUND_PORT,
    AuthorizationPolicy,
    Mesh,
    Proxy,
    Service,
)

T = "type.googleapis.com/envoy."
HCM = T + "extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
TCP_PROXY = T + "extensions.filters.network.tcp_proxy.v3.TcpProxy"
ROUTER = T + "extensions.filters.http.router.v3.Router"
NETWORK_RBAC = T + "extensions.filters.network.rbac.v3.RBAC"
HTTP_RBAC = T + "extensions.filters.http.rbac.v3.RBAC"
FAULT = T + "extensions.filters.http.fault.v3.HTTPFault"
CORS = T + "extensions.filters.http.cors.v3.Cors"
GRPC_STATS = T + "extensions.filters.http.grpc_stats.v3.FilterConfig"
ORIGINAL_DST = T + "extensions.filters.listener.original_dst.v3.OriginalDst"
TLS_INSPECTOR = T + "extensions.filters.listener.tls_inspector.v3.TlsInspector"
DOWNSTREAM_TLS = T + "extensions.transport_sockets.tls.v3.DownstreamTlsContext"
UPSTREAM_TLS = T + "extensions.transport_sockets.tls.v3.UpstreamTlsContext"
HTTP_OPTIONS = T + "extensions.upstreams.http.v3.HttpProtocolOptions"
INTERNAL_LISTENER = T + "extensions.bootstrap.internal_listener.v3.InternalListener"
INTERNAL_UPSTREAM = T + "extensions.transport_sockets.internal_upstream.v3.InternalUpstreamTransport"
RAW_BUFFER = T + "extensions.transport_sockets.raw_buffer.v3.RawBuffer"



@dataclass(frozen=True)
class CertFiles:
    """Where a proxy finds its workload certificate, key and the mesh CA (files a backend
    writes: the local backend's LocalCA); the config only names them."""

    cert: Path
    key: Path
    ca: Path


CertLookup = Callable[[str], CertFiles]  # SPIFFE id -> that identity's files


@dataclass
class ProxyConfig:
    """The resources one proxy receives; also what its config-exposure figures count."""

    listeners: list[dict[str, Any]] = field(default_factory=list)
    clusters: list[dict[str, Any]] = field(default_factory=list)
    internal_listeners: bool = False


@dataclass(frozen=True)
class Options:
    """Knobs that change a proxy's config but not the mesh (tests use fault delays)."""

    fault_delay_ms: dict[str, float] = field(default_factory=dict)  # proxy name -> fixed delay
    # a Sidecar resource's egress hosts for every sidecar (empty: none, every service)
    sidecar_egress: tuple[str, ...] = ()


# ---- small builders -------------------------------------------------------------------------

def _addr(ip: str, port: int) -> dict[str, Any]:
    return {"socket_address": {"address": ip, "port_value": port}}


def _static_cluster(name: str, endpoints: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "2s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": a}} for a in endpoints]}],
        },
        **extra,
    }


def _internal_cluster(name: str, listener_names: list[str]) -> dict[str, Any]:
    return _static_cluster(
        name, [{"envoy_internal_address": {"server_listener_name": n}} for n in listener_names]
    )


def _tls_files(c: CertFiles) -> dict[str, Any]:
    return {
        "certificate_chain": {"filename": str(c.cert)},
        "private_key": {"filename": str(c.key)},
    }


def _san_matchers(peer_ids: list[str]) -> list[dict[str, Any]]:
    return [{"san_type": "URI", "matcher": {"exact": p}} for p in sorted(set(peer_ids))]


def _upstream_tls(c: CertFiles, peer_ids: list[str], alpn: list[str],
                  sans: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """mTLS to a peer whose certificate must carry one of peer_ids as URI SAN (`sans`:
    those matchers already built, _san_matchers(peer_ids))."""
    return {
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": UPSTREAM_TLS,
            "common_tls_context": {
                "tls_certificates": [_tls_files(c)],
                "alpn_protocols": alpn,
                "validation_context": {
                    "trusted_ca": {"filename": str(c.ca)},
                    "match_typed_subject_alt_names": (
                        _san_matchers(peer_ids) if sans is None else sans),
                },
            },
        },
    }


def _downstream_tls(c: CertFiles, alpn: list[str]) -> dict[str, Any]:
    """Strict mTLS: a client certificate signed by the mesh CA is required."""
    return {
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": DOWNSTREAM_TLS,
            "require_client_certificate": True,
            "common_tls_context": {
                "tls_certificates": [_tls_files(c)],
                "alpn_protocols": alpn,
                "validation_context": {"trusted_ca": {"filename": str(c.ca)}},
            },
        },
    }


def _h2_options() -> dict[str, Any]:
    return {
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": HTTP_OPTIONS,
            "explicit_http_config": {"http2_protocol_options": {}},
        }
    }


def _principals(policy: AuthorizationPolicy) -> list[dict[str, Any]]:
    """The peer identities a policy matches: the URI SAN of the mTLS peer certificate."""
    return [{"authenticated": {"principal_name": {"exact": p}}} for p in policy.principals]


def _ztunnel_rbac(mesh: Mesh) -> list[dict[str, Any]]:
    """Every L4 policy of the mesh, as istiod sends every Authorization to every ztunnel:
    each applies to the connections tunnelled to its selected pods (the CONNECT :authority
    names the destination pod), from its principals (the HBONE peer certificate)."""
    out = []
    for action in ("DENY", "ALLOW"):
        policies = {}
        for p in mesh.policies:
            pods = [pod for pod in mesh.pods
                    if pod.namespace == p.namespace and pod.service == p.selector]
            if p.action != action or not pods:
                continue
            policies[p.key] = {
                "permissions": [{"or_rules": {"rules": [
                    {"header": {"name": ":authority",
                                "string_match": {"prefix": f"{pod.ip}:"}}} for pod in pods]}}],
                "principals": _principals(p)}
        if policies:
            out.append({"name": "envoy.filters.http.rbac", "typed_config": {
                "@type": HTTP_RBAC, "rules": {"action": action, "policies": policies}}})
    return out


# Istio 1.27's HTTP filter chain of a sidecar and a waypoint
# (pilot/pkg/networking/core/listener_builder.go buildHTTPConnectionManager), in order, and
# whether upstream Envoy has it: Istio's own filters are missing from this emulation.
ISTIO_HTTP_FILTERS = (
    ("istio.metadata_exchange", False, "sidecar only; Istio's own filter"),
    ("envoy.filters.http.ext_authz", True, "only with CUSTOM AuthorizationPolicies: none here"),
    ("istio_authn", False, "sidecar inbound only; Istio's own filter"),
    ("envoy.filters.http.rbac", True, "sidecar, on HTTP chains with policies that select it"),
    ("envoy.filters.http.grpc_stats", True, "every HTTP chain"),
    ("istio.alpn", False, "sidecar outbound only; Istio's own filter"),
    ("envoy.filters.http.fault", True, "every HTTP chain (empty unless a VirtualService "
     "injects faults)"),
    ("envoy.filters.http.cors", True, "every HTTP chain (empty)"),
    ("istio.stats", False, "sidecar only (Telemetry); Istio's own filter"),
    ("envoy.filters.http.router", True, "every HTTP chain"),
)


def _http_filters(delay_ms: float | None,
                  before: list[dict[str, Any]] | None = None,
                  istio: bool = True) -> list[dict[str, Any]]:
    """`before` (authorization) first, then, with `istio`, the upstream part of Istio's
    chain (grpc_stats, fault, cors: ISTIO_HTTP_FILTERS), then the router. A fault delay
    (tests' per-hop attribution) configures the fault filter; without `istio` it is the
    only filter besides the router."""
    filters = list(before or [])
    if istio:
        # as xdsfilters.GrpcStats: filter state on, no per-method stats
        filters.append({"name": "envoy.filters.http.grpc_stats", "typed_config": {
            "@type": GRPC_STATS, "emit_filter_state": True,
            "stats_for_all_methods": False}})
    fault: dict[str, Any] = {"@type": FAULT}
    if delay_ms:
        # a fixed, known delay on every request: how the tests check per-hop attribution
        fault["delay"] = {"fixed_delay": f"{delay_ms / 1000:.6f}s",
                          "percentage": {"numerator": 100, "denominator": "HUNDRED"}}
    if istio or delay_ms:
        filters.append({"name": "envoy.filters.http.fault", "typed_config": fault})
    if istio:
        filters.append({"name": "envoy.filters.http.cors", "typed_config": {"@type": CORS}})
    filters.append({"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER}})
    return filters


def _hcm(stat_prefix: str, routes: list[dict[str, Any]], delay_ms: float | None = None,
         filters: list[dict[str, Any]] | None = None, istio: bool = True,
         **extra: Any) -> dict[str, Any]:
    return {
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": {
            "@type": HCM,
            "stat_prefix": stat_prefix,
            "codec_type": "AUTO",
            "normalize_path": False,
            "route_config": {
                "name": stat_prefix,
                "virtual_hosts": [{"name": stat_prefix, "domains": ["*"], "routes": routes}],
            },
            "http_filters": _http_filters(delay_ms, filters, istio),
            **extra,
        },
    }


def _tcp_proxy(stat_prefix: str, cluster: str, hostname: str | None = None) -> dict[str, Any]:
    cfg: dict[str, Any] = {"@type": TCP_PROXY, "stat_prefix": stat_prefix, "cluster": cluster}
    if hostname:
        cfg["tunneling_config"] = {"hostname": hostname}
    return {"name": "envoy.filters.network.tcp_proxy", "typed_config": cfg}


def _route_to(cluster: str, timeout_s: float = 15.0) -> list[dict[str, Any]]:
    return [{"match": {"prefix": "/"}, "route": {"cluster": cluster,
                                                  "timeout": f"{timeout_s:g}s"}}]


def _passthrough() -> dict[str, Any]:
    return {"name": "PassthroughCluster", "type": "ORIGINAL_DST", "lb_policy": "CLUSTER_PROVIDED",
            "connect_timeout": "2s"}


def _vip_chain(svc: Service, network_filter: dict[str, Any]) -> dict[str, Any]:
    """The outbound filter chain of a service: matched on its VIP and port."""
    return {
        "filter_chain_match": {
            "prefix_ranges": [{"address_prefix": svc.vip, "prefix_len": 32}],
            "destination_port": svc.port,
        },
        "filters": [network_filter],
    }


def _outbound_listener(name: str, chains: list[dict[str, Any]]) -> dict[str, Any]:
    """Port 15001 with the original destination: a chain per service VIP, the rest passed
    through."""
    return {
        "name": name,
        "address": _addr("0.0.0.0", OUTBOUND_PORT),
        "listener_filters": [{"name": "envoy.filters.listener.original_dst",
                              "typed_config": {"@type": ORIGINAL_DST}}],
        "filter_chains": chains,
        "default_filter_chain": {"filters": [_tcp_proxy("passthrough", "PassthroughCluster")]},
    }


def _outbound_cluster_name(svc: Service) -> str:
    return f"outbound|{svc.port}||{svc.fqdn}"


# ---- HBONE -----------------------------------------------------------------------------------

def _hbone_terminate_listener(name: str, certs: CertFiles, cluster: str, stat_prefix: str,
                              filters: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Port 15008: mTLS, HTTP/2, CONNECT; the tunnel's payload goes to `cluster`; `filters`
    (authorization) see each CONNECT before the router."""
    hcm = _hcm(
        stat_prefix,
        [{
            "match": {"connect_matcher": {}},
            "route": {"cluster": cluster, "upgrade_configs": [
                {"upgrade_type": "CONNECT", "connect_config": {}}]},
        }],
        filters=filters, istio=False,
        http2_protocol_options={"allow_connect": True},
        upgrade_configs=[{"upgrade_type": "CONNECT"}],
    )
    return {
        "name": name,
        "address": _addr("0.0.0.0", HBONE_PORT),
        "filter_chains": [{"filters": [hcm], "transport_socket": _downstream_tls(certs, ["h2"])}],
    }


def _hbone_originate(target_ip: str, target_port: int, peer_ip: str, certs: CertFiles,
                     peer_ids: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """An internal listener that tunnels its connection over HBONE to peer_ip:15008 with
    :authority target_ip:target_port, and the cluster it uses. One per destination endpoint,
    because the CONNECT authority is fixed per tcp_proxy."""
    name = f"hbone_originate|{target_ip}:{target_port}"
    cluster = _static_cluster(
        f"hbone|{peer_ip}:{target_ip}:{target_port}",
        [_addr(peer_ip, HBONE_PORT)],
        transport_socket=_upstream_tls(certs, peer_ids, ["h2"]),
        typed_extension_protocol_options=_h2_options(),
    )
    listener = {
        "name": name,
        "internal_listener": {},
        "filter_chains": [{"filters": [
            _tcp_proxy(name, cluster["name"], hostname=f"{target_ip}:{target_port}")]}],
    }
    return listener, cluster


def _originate_to_endpoints(mesh: Mesh, svc: Service, certs: CertFiles, peer_ids: list[str],
                            cfg: ProxyConfig, originated: set[str]) -> list[str]:
    """An HBONE originating listener and cluster per endpoint of `svc` into `cfg` (once per
    endpoint: services may share endpoints, `originated` holds those added); their names."""
    names = []
    for ep in mesh.endpoints(svc):
        listener, cluster = _hbone_originate(ep.ip, svc.target_port, ep.ip, certs, peer_ids)
        if listener["name"] not in originated:
            originated.add(listener["name"])
            cfg.listeners.append(listener)
            cfg.clusters.append(cluster)
        names.append(listener["name"])
    return names


# ---- roles -----------------------------------------------------------------------------------

Memo = dict[tuple[Any, ...], Any]


def _shared(memo: Memo | None, key: tuple[Any, ...], make: Callable[[], Any]) -> Any:
    """make(), or with a memo (build_all) the object made for `key` before: parts of the
    config that are the same for many proxies (a service's endpoints, its peers' SANs, an
    outbound chain) are rendered once and shared by reference, never modified afterwards."""
    if memo is None:
        return make()
    if key not in memo:
        memo[key] = make()
    return memo[key]


def sidecar(mesh: Mesh, proxy: Proxy, certs: CertLookup, opts: Options,
            memo: Memo | None = None) -> ProxyConfig:
    """Istio sidecar: outbound config for every service of the mesh, or, with a Sidecar
    resource (opts.sidecar_egress), for the services its egress hosts see
    (pushrules.egress_sees, as SidecarScope does). Sidecars differ in their own
    certificate, inbound policies and fault delay; the rest is per service (`memo`)."""
    from bench.controlplane.pushrules import NodeMeta, egress_sees

    pod = mesh.pod(proxy.pod)
    scope = NodeMeta("sidecar", pod.namespace, egress=opts.sidecar_egress)
    mine = certs(pod.spiffe)
    delay = opts.fault_delay_ms.get(proxy.name)
    cfg = ProxyConfig()
    chains = []
    for svc in mesh.services:
        if not egress_sees(scope, svc.namespace, svc.fqdn):
            continue
        cname = _outbound_cluster_name(svc)

        def cluster(svc: Service = svc, cname: str = cname) -> tuple[dict[str, Any], Any]:
            eps = mesh.endpoints(svc)
            return (_static_cluster(cname, [_addr(p.ip, svc.target_port) for p in eps]),
                    _san_matchers([p.spiffe for p in eps]))

        def chain(svc: Service = svc, cname: str = cname) -> dict[str, Any]:
            return _vip_chain(svc, _hcm(f"outbound_{svc.name}",
                                        _route_to(cname, svc.route_timeout_s), delay))

        base, sans = _shared(memo, ("outbound cluster", svc.name), cluster)
        cfg.clusters.append({**base, "transport_socket": _upstream_tls(
            mine, [], ["istio-http/1.1"], sans=sans)})
        chains.append(_shared(memo, ("outbound chain", svc.name, delay), chain))
    cfg.clusters.append(_passthrough())
    cfg.listeners.append(_outbound_listener("virtualOutbound", chains))
    if pod.kind == "server":
        inbound = f"inbound|{APP_PORT}||"
        cfg.clusters.append(_static_cluster(inbound, [_addr("127.0.0.1", APP_PORT)]))
        # no plaintext chain: STRICT mTLS, a plaintext connection finds no chain and is closed
        cfg.listeners.append({
            "name": "virtualInbound",
            "address": _addr("0.0.0.0", INBOUND_PORT),
            "listener_filters": [
                {"name": "envoy.filters.listener.original_dst",
                 "typed_config": {"@type": ORIGINAL_DST}},
                {"name": "envoy.filters.listener.tls_inspector",
                 "typed_config": {"@type": TLS_INSPECTOR}},
            ],
            "filter_chains": [{
                "filter_chain_match": {"destination_port": APP_PORT, "transport_protocol": "tls"},
                # Istio renders policies as HTTP RBAC on an HTTP chain (authz BuildHTTP)
                "filters": [_hcm("inbound_app", _route_to(inbound), delay,
                                 filters=_sidecar_rbac(mesh.policies_for(pod)))],
                "transport_socket": _downstream_tls(mine, ["istio-http/1.1", "http/1.1"]),
            }],
        })
    return cfg


def _sidecar_rbac(policies: list[AuthorizationPolicy]) -> list[dict[str, Any]]:
    """A sidecar's inbound authorization: the policies that select its own workload, as
    HTTP RBAC filters (one per action present; DENY first, as istiod orders them)."""
    out = []
    for action in ("DENY", "ALLOW"):
        chosen = [p for p in policies if p.action == action]
        if chosen:
            out.append({"name": "envoy.filters.http.rbac", "typed_config": {
                "@type": HTTP_RBAC, "rules": {"action": action, "policies": {
                    p.key: {"permissions": [{"any": True}], "principals": _principals(p)}
                    for p in chosen}}}})
    return out


def ztunnel(mesh: Mesh, proxy: Proxy, certs: CertLookup, opts: Options) -> ProxyConfig:
    """A node's L4 proxy: captures its enrolled pods' outbound TCP (15001) and terminates HBONE
    for them (15008). It knows every workload and service of the mesh, as Istio's ztunnel does."""
    mine = certs(proxy.identity)
    cfg = ProxyConfig(internal_listeners=True)
    zt_ids = [proxy.identity]
    chains = []
    originated: set[str] = set()
    for svc in mesh.services:
        if svc.waypoint:
            wp = mesh.pod(svc.waypoint)
            cname = f"waypoint|{wp.name}|{svc.vip}:{svc.port}"
            cfg.clusters.append(_static_cluster(
                cname, [_addr(wp.ip, HBONE_PORT)],
                transport_socket=_upstream_tls(mine, [wp.spiffe], ["h2"]),
                typed_extension_protocol_options=_h2_options(),
            ))
            chain_filter = _tcp_proxy(f"to_waypoint_{svc.name}", cname,
                                      hostname=f"{svc.vip}:{svc.port}")
        else:
            names = _originate_to_endpoints(mesh, svc, mine, zt_ids, cfg, originated)
            cname = f"outbound|{svc.port}||{svc.fqdn}"
            cfg.clusters.append(_internal_cluster(cname, names))
            chain_filter = _tcp_proxy(f"outbound_{svc.name}", cname)
        chains.append(_vip_chain(svc, chain_filter))
    cfg.clusters.append(_passthrough())
    cfg.listeners.append(_outbound_listener("ztunnel_outbound", chains))
    # inbound: the CONNECT :authority names the local pod and port to deliver to
    cfg.clusters.append({
        "name": "inbound_authority",
        "type": "ORIGINAL_DST",
        "lb_policy": "CLUSTER_PROVIDED",
        "connect_timeout": "2s",
        "original_dst_lb_config": {"use_http_header": True, "http_header_name": ":authority"},
    })
    cfg.listeners.append(
        _hbone_terminate_listener("ztunnel_inbound", mine, "inbound_authority", "hbone_inbound",
                                  filters=_ztunnel_rbac(mesh)))
    return cfg


def waypoint(mesh: Mesh, proxy: Proxy, certs: CertLookup, opts: Options) -> ProxyConfig:
    """An L7 proxy for the services it serves: terminates HBONE, runs HTTP routing in an
    internal listener, and re-originates HBONE to the chosen endpoint's node ztunnel."""
    pod = mesh.pod(proxy.pod)
    mine = certs(pod.spiffe)
    zt_ids = [Proxy("", "ztunnel", "").identity]
    delay = opts.fault_delay_ms.get(proxy.name)
    cfg = ProxyConfig(internal_listeners=True)
    routes = []
    originated: set[str] = set()
    for svc in mesh.services:
        if svc.waypoint != pod.name:
            continue
        names = _originate_to_endpoints(mesh, svc, mine, zt_ids, cfg, originated)
        cname = f"inbound-vip|{svc.port}|http|{svc.fqdn}"
        cfg.clusters.append(_internal_cluster(cname, names))
        routes.append({"name": svc.name, "domains": [f"{svc.vip}:{svc.port}", svc.vip, svc.fqdn],
                       "routes": _route_to(cname, svc.route_timeout_s)})
    main = _hcm("waypoint", [], delay)
    main["typed_config"]["route_config"] = {"name": "waypoint", "virtual_hosts": routes}
    cfg.listeners.append({"name": "main_internal", "internal_listener": {},
                          "filter_chains": [{"filters": [main]}]})
    cfg.clusters.append(_internal_cluster("main_internal", ["main_internal"]))
    cfg.listeners.append(
        _hbone_terminate_listener("connect_terminate", mine, "main_internal", "connect_terminate"))
    return cfg


BUILDERS = {"sidecar": sidecar, "ztunnel": ztunnel, "waypoint": waypoint}


def build(mesh: Mesh, proxy: Proxy, certs: CertLookup, opts: Options | None = None) -> ProxyConfig:
    return BUILDERS[proxy.role](mesh, proxy, certs, opts or Options())


def build_all(mesh: Mesh, proxies: Iterable[Proxy], certs: CertLookup,
              opts: Options | None = None) -> dict[str, ProxyConfig]:
    """Every proxy's config, as build() renders it, with the parts many sidecars share
    rendered once (a service's cluster without its client certificate, its outbound chain):
    per sidecar only what is its own (certificate, inbound listener) is rendered, so the
    cost no longer grows with services x endpoints x sidecars. The configs share those
    parts by reference: treat them as read-only (tests check they equal build()'s)."""
    opts = opts or Options()
    memo: Memo = {}
    return {p.name: sidecar(mesh, p, certs, opts, memo) if p.role == "sidecar"
            else BUILDERS[p.role](mesh, p, certs, opts) for p in proxies}


def bootstrap(proxy: Proxy, cfg: ProxyConfig, admin_socket: Path) -> dict[str, Any]:
    """A static bootstrap: admin on a Unix socket (reachable from any network namespace)."""
    boot: dict[str, Any] = {
        "node": {"id": proxy.name, "cluster": proxy.role,
                 "metadata": {"role": proxy.role, "node": proxy.node, "pod": proxy.pod}},
        "admin": {"address": {"pipe": {"path": str(admin_socket), "mode": 0o660}}},
        "static_resources": {"listeners": cfg.listeners, "clusters": cfg.clusters},
    }
    if cfg.internal_listeners:
        boot["bootstrap_extensions"] = [{"name": "envoy.bootstrap.internal_listener",
                                         "typed_config": {"@type": INTERNAL_LISTENER}}]
    return boot
