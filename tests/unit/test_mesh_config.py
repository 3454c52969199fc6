"""The mesh model, capture rules and Envoy resources, checked without starting anything."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.backends.local import topology
from bench.controlplane import envoy_config
from bench.controlplane.envoy_config import CertFiles
from bench.mesh import build
from bench.run.runner import mode_orders
from bench.scenario import from_dict


def _certs(spiffe: str) -> CertFiles:
    stem = spiffe.rsplit("/", 1)[-1]
    return CertFiles(Path(f"/c/{stem}.crt"), Path(f"/c/{stem}.key"), Path("/c/ca.pem"))


def _scenario(**topo: int) -> object:
    return from_dict({"name": "t", "topology": {"nodes": 3, "services": 2,
                                                "pods_per_service": 3, **topo}})


@pytest.mark.parametrize("mode, roles", [
    ("baseline", []),
    ("sidecar", ["sidecar"] * 7),
    ("ambient", ["ztunnel"] * 3),
    ("waypoint", ["ztunnel"] * 3 + ["waypoint"]),
])
def test_proxies_per_mode(mode: str, roles: list[str]) -> None:
    mesh = build(_scenario(), mode)
    assert [p.role for p in mesh.proxies] == roles
    ips = [p.ip for p in mesh.pods]
    assert len(ips) == len(set(ips))
    assert all(ip.startswith("10.244.") for ip in ips)


def test_first_service_is_on_server_node_and_client_elsewhere() -> None:
    mesh = build(_scenario(client_node=0, server_node=2), "sidecar")
    assert mesh.pod("client-0").node == "node0"
    assert {p.node for p in mesh.endpoints(mesh.target)} == {"node2"}
    assert mesh.target.vip == "10.96.0.10"


def test_sidecar_gets_every_service_and_strict_inbound() -> None:
    mesh = build(_scenario(), "sidecar")
    server = next(p for p in mesh.proxies if p.pod == "svc-1-2")
    cfg = envoy_config.build(mesh, server, _certs)
    outbound = [c["name"] for c in cfg.clusters if c["name"].startswith("outbound|")]
    assert len(outbound) == len(mesh.services)  # no Sidecar resource: the whole mesh
    inbound = next(lst for lst in cfg.listeners if lst["name"] == "virtualInbound")
    chains = inbound["filter_chains"]
    assert all(c["filter_chain_match"]["transport_protocol"] == "tls" for c in chains)
    assert "default_filter_chain" not in inbound  # plaintext finds no chain: STRICT
    tls = chains[0]["transport_socket"]["typed_config"]
    assert tls["require_client_certificate"] is True


def test_sidecar_upstream_verifies_server_spiffe_ids() -> None:
    mesh = build(_scenario(), "sidecar")
    client = next(p for p in mesh.proxies if p.pod == "client-0")
    cfg = envoy_config.build(mesh, client, _certs)
    cl = next(c for c in cfg.clusters if c["name"].startswith("outbound|80||svc-0"))
    sans = cl["transport_socket"]["typed_config"]["common_tls_context"]["validation_context"][
        "match_typed_subject_alt_names"]
    assert {s["matcher"]["exact"] for s in sans} == {
        "spiffe://cluster.local/ns/bench/sa/svc-0"}
    assert len(cl["load_assignment"]["endpoints"][0]["lb_endpoints"]) == 3


def test_ztunnel_hbone_is_h2_connect_with_pod_authority() -> None:
    mesh = build(_scenario(), "ambient")
    zt = mesh.proxies[0]
    cfg = envoy_config.build(mesh, zt, _certs)
    originate = [lst for lst in cfg.listeners if lst["name"].startswith("hbone_originate|")]
    assert len(originate) == sum(len(s.endpoints) for s in mesh.services)
    tp = originate[0]["filter_chains"][0]["filters"][0]["typed_config"]
    ip = originate[0]["name"].split("|")[1].split(":")[0]
    assert tp["tunneling_config"]["hostname"] == f"{ip}:8080"
    hb = next(c for c in cfg.clusters if c["name"] == tp["cluster"])
    assert hb["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"][
        "socket_address"]["port_value"] == 15008
    assert "http2_protocol_options" in json.dumps(hb["typed_extension_protocol_options"])
    inbound = next(lst for lst in cfg.listeners if lst["name"] == "ztunnel_inbound")
    assert inbound["address"]["socket_address"]["port_value"] == 15008
    assert "CONNECT" in json.dumps(inbound)


def test_waypoint_serves_only_its_services_and_ztunnel_sends_vip_to_it() -> None:
    mesh = build(_scenario(), "waypoint")
    wp = mesh.proxies_of("waypoint")[0]
    cfg = envoy_config.build(mesh, wp, _certs)
    names = [lst["name"] for lst in cfg.listeners]
    assert "main_internal" in names and "connect_terminate" in names
    zt = envoy_config.build(mesh, mesh.proxies_of("ztunnel")[0], _certs)
    to_wp = [c for c in zt.clusters if c["name"].startswith("waypoint|")]
    assert len(to_wp) == len(mesh.services)


def test_fault_delay_goes_into_the_named_proxy_only() -> None:
    mesh = build(_scenario(), "sidecar")
    opts = envoy_config.Options(fault_delay_ms={"sidecar-client-0": 2.0})
    a = json.dumps(envoy_config.build(mesh, mesh.proxies[0], _certs, opts).listeners)
    b = json.dumps(envoy_config.build(mesh, mesh.proxies[1], _certs, opts).listeners)
    # every sidecar has Istio's (empty) fault filter; only the named one delays
    assert "0.002000s" in a and "fixed_delay" not in b and "envoy.filters.http.fault" in b


def test_istio_http_filter_chain_on_sidecars_and_waypoints() -> None:
    """The upstream part of Istio's chain, in Istio's order (listener_builder.go), on every
    HTTP chain of a sidecar and a waypoint; the HBONE terminations (our emulation of
    ztunnel and of the waypoint's CONNECT) keep the router only."""
    want = [n for n, upstream, _ in envoy_config.ISTIO_HTTP_FILTERS
            if upstream and n not in ("envoy.filters.http.ext_authz",
                                      "envoy.filters.http.rbac")]
    for mode in ("sidecar", "waypoint"):
        mesh = build(_scenario(), mode)
        for p in mesh.proxies:
            for lst in envoy_config.build(mesh, p, _certs).listeners:
                for chain in lst.get("filter_chains", []):
                    for f in chain["filters"]:
                        tc = f["typed_config"]
                        if "http_filters" not in tc:
                            continue
                        names = [h["name"] for h in tc["http_filters"]]
                        if lst["name"] in ("ztunnel_inbound", "connect_terminate"):
                            assert names[-1:] == ["envoy.filters.http.router"]
                            assert "envoy.filters.http.cors" not in names
                        else:
                            assert [n for n in names if n != "envoy.filters.http.rbac"] == \
                                want, (p.name, lst["name"])


def test_node_rules_capture_before_kube_proxy_dnat() -> None:
    mesh = build(_scenario(), "ambient")
    rules = topology.node_rules(mesh, "node1").splitlines()
    assert rules.index("-A PREROUTING -j MB_ZTUNNEL") < rules.index("-A PREROUTING -j MB_SERVICES")
    local = [p for p in mesh.pods_on("node1")]
    assert all(any(f"-s {p.ip}/32" in r and "15001" in r for r in rules) for p in local)
    dnat = [r for r in rules if "DNAT" in r and mesh.target.vip in r]
    assert len(dnat) == 3  # one per endpoint, kube-proxy style
    base = topology.node_rules(build(_scenario(), "baseline"), "node1")
    assert "MB_ZTUNNEL" not in base and "DNAT" in base


def test_sidecar_rules_exclude_the_proxy_uid_before_redirect() -> None:
    mesh = build(_scenario(), "sidecar")
    rules = topology.sidecar_rules(mesh.pod("svc-0-0")).splitlines()
    uid = next(i for i, r in enumerate(rules) if "--uid-owner 1337" in r)
    redirect = next(i for i, r in enumerate(rules) if "--to-ports 15001" in r)
    assert uid < redirect
    assert any("--to-ports 15006" in r for r in rules)
    client = topology.sidecar_rules(mesh.pod("client-0"))
    assert "15006" not in client


def test_host_interface_names_fit_and_are_unique_per_node() -> None:
    mesh = build(from_dict({"name": "t", "topology": {"nodes": 2, "services": 40,
                                                      "pods_per_service": 20}}), "baseline")
    for node in mesh.nodes:
        names = [topology.host_if(p) for p in mesh.pods_on(node.name)]
        assert len(names) == len(set(names))
        assert all(len(n) <= 15 for n in names)


def test_mode_orders_first_as_given_then_shuffled_reproducibly() -> None:
    modes = ("baseline", "sidecar", "ambient", "waypoint")
    a = mode_orders(modes, 4, seed=7)
    assert a[0] == list(modes)
    assert a == mode_orders(modes, 4, seed=7)
    assert all(sorted(o) == sorted(modes) for o in a)
    assert any(o != list(modes) for o in a[1:])


@pytest.mark.parametrize("mode", ["sidecar", "ambient", "waypoint"])
def test_resource_names_are_unique_even_when_services_share_endpoints(mode: str) -> None:
    """Envoy rejects duplicate listener or cluster names (a NACK found this in the waypoint)."""
    from bench.experiments import changed_mesh

    mesh = changed_mesh(build(_scenario(), mode), "new_service")  # shares svc-0's pods
    for p in mesh.proxies:
        cfg = envoy_config.build(mesh, p, _certs)
        for kind in (cfg.listeners, cfg.clusters):
            names = [r["name"] for r in kind]
            assert len(names) == len(set(names)), (p.name, names)
