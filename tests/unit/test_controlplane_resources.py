"""Every role's config converts to Envoy protobufs; the ADS bootstrap has the right shape;
snapshots encode to DiscoveryResponses that parse back. No root, no Envoy."""

from __future__ import annotations

from pathlib import Path

import pytest
from envoy.service.discovery.v3.discovery_pb2 import DiscoveryResponse
from google.protobuf import json_format

from bench.controlplane import envoy_config, resources
from bench.controlplane.envoy_config import CertFiles
from bench.controlplane.snapshot import Converter, Resources, encode_response, pack_any
from bench.mesh import Mesh, build
from bench.scenario import from_dict
from tests.support import envoy_schema


def _certs(spiffe: str) -> CertFiles:
    stem = spiffe.rsplit("/", 1)[-1]
    return CertFiles(Path(f"/c/{stem}.crt"), Path(f"/c/{stem}.key"), Path("/c/ca.pem"))


def _mesh(mode: str) -> Mesh:
    return build(from_dict({"name": "t", "topology": {"nodes": 3, "services": 3,
                                                      "pods_per_service": 2}}), mode)


def _configs() -> list[tuple[str, envoy_config.ProxyConfig]]:
    out = []
    opts = envoy_config.Options(fault_delay_ms={"waypoint": 1.0, "sidecar-client-0": 2.0})
    for mode in ("sidecar", "ambient", "waypoint"):
        mesh = _mesh(mode)
        out += [(p.name, envoy_config.build(mesh, p, _certs, opts)) for p in mesh.proxies]
    return out


def test_every_type_url_of_envoy_config_resolves() -> None:
    urls = [v for k, v in vars(envoy_config).items()
            if k.isupper() and isinstance(v, str) and v.startswith("type.googleapis.com/")
            and not v.endswith(".")]  # T, the shared prefix, is not a type
    assert len(urls) >= 12
    assert [u for u in urls if not envoy_schema.resolves(u)] == []
    assert not envoy_schema.resolves("type.googleapis.com/envoy.no.such.v3.Thing")


def test_every_role_converts() -> None:
    roles = set()
    for name, cfg in _configs():
        listeners, clusters = envoy_schema.to_protos(cfg)
        assert [lis.name for lis in listeners] == [d["name"] for d in cfg.listeners], name
        assert [c.name for c in clusters] == [d["name"] for d in cfg.clusters], name
        roles.add(name.split("-")[0])
        # the typed configs really were unpacked, not kept as opaque bytes
        for lis in listeners:
            for chain in lis.filter_chains:
                for f in chain.filters:
                    assert f.typed_config.type_url in (envoy_config.HCM, envoy_config.TCP_PROXY)
    assert roles == {"sidecar", "ztunnel", "waypoint"}


def test_round_trip_keeps_the_config() -> None:
    _, cfg = next(c for c in _configs() if c[0] == "waypoint")
    _, clusters = envoy_schema.to_protos(cfg)
    back = json_format.MessageToDict(clusters[0], preserving_proto_field_name=True)
    assert back["name"] == cfg.clusters[0]["name"]
    tls = back["transport_socket"]["typed_config"]
    assert tls["@type"] == envoy_config.UPSTREAM_TLS
    assert tls["common_tls_context"]["validation_context"]["trusted_ca"]["filename"] == \
        "/c/ca.pem"


def test_a_bad_field_is_named() -> None:
    with pytest.raises(json_format.ParseError, match="no_such_field"):
        resources.cluster({"name": "x", "no_such_field": 1})


@pytest.mark.parametrize("internal, delta", [(False, True), (True, False)])
def test_xds_bootstrap(internal: bool, delta: bool) -> None:
    boot = resources.xds_bootstrap("sidecar-a", "sidecar", "/run/a.sock", "/run/xds.sock",
                                   internal_listeners=internal, metadata={"pod": "a"},
                                   delta=delta)
    assert boot["node"] == {"id": "sidecar-a", "cluster": "sidecar",
                            "metadata": {"role": "sidecar", "pod": "a"}}
    assert boot["admin"]["address"]["pipe"]["path"] == "/run/a.sock"
    dyn = boot["dynamic_resources"]
    # delta xDS as Istio bootstraps its proxies (DELTA_GRPC); SotW when asked
    assert dyn["ads_config"]["api_type"] == ("DELTA_GRPC" if delta else "GRPC")
    assert dyn["ads_config"]["transport_api_version"] == "V3"
    assert dyn["ads_config"]["grpc_services"] == [
        {"envoy_grpc": {"cluster_name": resources.XDS_CLUSTER}}]
    for key in ("lds_config", "cds_config"):
        assert dyn[key] == {"ads": {}, "resource_api_version": "V3"}
    (xds,) = boot["static_resources"]["clusters"]
    assert "listeners" not in boot["static_resources"]
    ep = xds["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    assert ep["address"] == {"pipe": {"path": "/run/xds.sock"}}
    opts = xds["typed_extension_protocol_options"]
    assert "http2_protocol_options" in next(iter(opts.values()))["explicit_http_config"]
    assert ("bootstrap_extensions" in boot) == internal
    proto = envoy_schema.bootstrap_proto(boot)  # Envoy's schema accepts it
    assert proto.dynamic_resources.ads_config.grpc_services[0].envoy_grpc.cluster_name == \
        resources.XDS_CLUSTER


def test_proxy_bootstrap_matches_the_static_one() -> None:
    mesh = _mesh("waypoint")
    for proxy in mesh.proxies:
        cfg = envoy_config.build(mesh, proxy, _certs)
        static = envoy_config.bootstrap(proxy, cfg, Path("/a.sock"))
        ads = resources.proxy_bootstrap(proxy, cfg, Path("/a.sock"), Path("/x.sock"))
        assert ads["node"] == static["node"]
        assert ads.get("bootstrap_extensions") == static.get("bootstrap_extensions")
        envoy_schema.bootstrap_proto(ads)


def test_snapshot_encodes_a_discovery_response() -> None:
    _, cfg = _configs()[0]
    conv = Converter()
    snap = conv.snapshot(resources.snapshot_dict(cfg))
    for type_url, res in snap.by_type.items():
        data = encode_response("7", res.body, type_url, "42")
        msg = DiscoveryResponse.FromString(data)
        assert (msg.version_info, msg.type_url, msg.nonce) == ("7", type_url, "42")
        assert msg.ByteSize() == len(data)
        assert [r.type_url for r in msg.resources] == [type_url] * len(res.names)
        dicts = resources.snapshot_dict(cfg)[
            next(k for k, v in resources.SNAPSHOT_KEYS.items() if v == type_url)]
        direct = Resources.of(type_url, *zip(*[
            (n, pack_any(type_url, m)) for n, m in (resources.from_dict(type_url, d)
                                                    for d in dicts)], strict=True))
        assert direct.digest == res.digest
    assert snap.size == sum(r.size for r in snap.by_type.values())


def test_converter_reuses_and_detects_changes() -> None:
    (_, a), (_, b) = _configs()[:2]
    conv = Converter()
    s1 = conv.snapshot(resources.snapshot_dict(a))
    s2 = conv.snapshot(resources.snapshot_dict(a))
    assert conv.reused == conv.parsed
    assert s1 == s2
    s3 = conv.snapshot(resources.snapshot_dict(b))
    assert s3.by_type[resources.CLUSTER_TYPE].digest != s1.by_type[resources.CLUSTER_TYPE].digest
    with pytest.raises(ValueError, match="unknown snapshot keys"):
        conv.snapshot({"secrets": []})


def test_split_serves_routes_by_rds_and_endpoints_by_eds() -> None:
    """As istiod serves them: every HTTP connection manager names its route config (RDS),
    every service cluster takes its endpoints from EDS; nothing is lost on the way."""
    for name, cfg in _configs():
        split = resources.snapshot_dict(cfg)
        inline = resources.snapshot_dict(cfg, split=False)
        assert len(split["listeners"]) == len(inline["listeners"])
        assert len(split["clusters"]) == len(inline["clusters"])
        text = str(split["listeners"])
        assert "route_config'" not in text and ("rds" in text) == bool(split["routes"])
        eds = [c for c in split["clusters"] if c["type"] == "EDS"]
        assert sorted(c["name"] for c in eds) == sorted(e["cluster_name"]
                                                        for e in split["endpoints"])
        assert eds or name.startswith("ztunnel"), name  # service clusters: EDS
        for e in split["endpoints"]:
            orig = next(c for c in cfg.clusters if c["name"] == e["cluster_name"])
            assert e["endpoints"] == orig["load_assignment"]["endpoints"]
        # each converts to Envoy's protobufs
        conv = Converter()
        snap = conv.snapshot(split)
        assert set(snap.by_type) == {resources.LISTENER_TYPE, resources.CLUSTER_TYPE,
                                     resources.ROUTE_TYPE} | (
            {resources.ENDPOINT_TYPE} if eds else set())
        # the original config objects were not altered
        assert "route_config" in str(cfg.listeners)


def test_the_control_plane_imports_no_backend() -> None:
    """Issue 14: the xDS server and its config rendering depend on no backend's module."""
    import pkgutil
    import subprocess
    import sys

    import bench.controlplane as cp

    mods = [f"bench.controlplane.{m.name}" for m in pkgutil.iter_modules(cp.__path__)
            if m.name != "__main__"]
    assert "bench.controlplane.envoy_config" in mods
    code = ("import importlib, sys\n"
            f"for m in {mods!r}: importlib.import_module(m)\n"
            "print(sorted(n for n in sys.modules if n.startswith('bench.backends')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"
