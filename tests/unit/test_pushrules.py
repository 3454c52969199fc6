"""Istio's push decision (bench/controlplane/pushrules.py) against cases checked by hand
against istio/istio 1.27.3: for every experiment and mode, which proxies are pushed, which
xDS types, whole or incremental; scoping by namespace and by a Sidecar resource."""

from __future__ import annotations

import pytest

from bench.controlplane.pushrules import (
    INCREMENTAL,
    SKIP,
    WHOLE,
    ConfigKey,
    NodeMeta,
    change_keys,
    plan,
    table,
)
from bench.controlplane.resources import (
    ADDRESS_TYPE,
    AUTHORIZATION_TYPE,
    CLUSTER_TYPE,
    ENDPOINT_TYPE,
    LISTENER_TYPE,
    ROUTE_TYPE,
)

CDS, EDS, LDS, RDS, ADDR, AUTHZ = (CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE,
                                   ADDRESS_TYPE, AUTHORIZATION_TYPE)
HOST = "svc-0.bench.svc.cluster.local"

# (experiment, mode, role) -> the types sent and how; checked by hand against
# cds.go cdsNeedsPush + cluster.go shouldUseDelta, eds.go edsNeedsPush +
# canSendPartialFullPushes, lds.go ldsNeedsPush, rds.go rdsNeedsPush, xdsgen.go
# waypointNeedsPush, workload.go WorkloadGenerator/WorkloadRBACGenerator
CASES = {
    # a Service: clusters and endpoints of that service only; listeners and routes whole
    ("new_service", "sidecar", "sidecar"): {CDS: INCREMENTAL, EDS: INCREMENTAL, LDS: WHOLE,
                                            RDS: WHOLE},
    # a VirtualService: every cluster again (not delta-aware), listeners and routes whole,
    # no endpoints
    ("l7_route", "sidecar", "sidecar"): {CDS: WHOLE, EDS: SKIP, LDS: WHOLE, RDS: WHOLE},
    # an AuthorizationPolicy: listeners only
    ("l4_authz", "sidecar", "sidecar"): {CDS: SKIP, EDS: SKIP, LDS: WHOLE, RDS: SKIP},
    # ambient: the ztunnel gets the addresses that changed (the new Service and the
    # workloads it selects; the workloads the policy selects) and the new Authorization
    ("new_service", "ambient", "ztunnel"): {ADDR: INCREMENTAL, AUTHZ: SKIP},
    ("l7_route", "ambient", "ztunnel"): {ADDR: SKIP, AUTHZ: SKIP},
    ("l4_authz", "ambient", "ztunnel"): {ADDR: INCREMENTAL, AUTHZ: INCREMENTAL},
    ("new_service", "waypoint", "ztunnel"): {ADDR: INCREMENTAL, AUTHZ: SKIP},
    ("l7_route", "waypoint", "ztunnel"): {ADDR: SKIP, AUTHZ: SKIP},
    ("l4_authz", "waypoint", "ztunnel"): {ADDR: INCREMENTAL, AUTHZ: INCREMENTAL},
    # the waypoint: an Address change forces CDS and LDS (waypointNeedsPush) and makes
    # neither CDS nor EDS incremental (Address is not a delta-aware kind)
    ("new_service", "waypoint", "waypoint"): {CDS: WHOLE, EDS: WHOLE, LDS: WHOLE, RDS: WHOLE},
    ("l7_route", "waypoint", "waypoint"): {CDS: WHOLE, EDS: SKIP, LDS: WHOLE, RDS: WHOLE},
    ("l4_authz", "waypoint", "waypoint"): {CDS: WHOLE, EDS: WHOLE, LDS: WHOLE, RDS: WHOLE},
}


@pytest.mark.parametrize("experiment, mode, role", sorted(CASES))
def test_each_experiment_and_mode(experiment: str, mode: str, role: str) -> None:
    keys = change_keys(experiment, mode, "bench", HOST, "deny-intruder-0")
    p = plan(NodeMeta(role, "bench"), keys)
    assert p.pushed  # every proxy of the mesh's namespace is pushed for each of these
    assert {t: p.sends(t) for t in CASES[(experiment, mode, role)]} == CASES[
        (experiment, mode, role)]


def test_ambient_proxies_are_pushed_for_every_change() -> None:
    """ConfigAffectsProxy: waypoints and ztunnels, whatever the namespace (no scoping)."""
    elsewhere = [ConfigKey("AuthorizationPolicy", "other", "p")]
    for role in ("waypoint", "ztunnel"):
        assert plan(NodeMeta(role, "bench"), elsewhere).pushed
    # the waypoint's listeners carry the policy's namespace's L7 authorization: LDS not
    # skipped for AuthorizationPolicy
    assert plan(NodeMeta("waypoint", "bench"), elsewhere).sends(LDS) == WHOLE


def test_sidecar_policies_scope_to_own_and_root_namespace() -> None:
    me = NodeMeta("sidecar", "bench")
    assert plan(me, [ConfigKey("AuthorizationPolicy", "bench", "p")]).pushed
    assert plan(me, [ConfigKey("AuthorizationPolicy", "istio-system", "p")]).pushed
    assert not plan(me, [ConfigKey("AuthorizationPolicy", "other", "p")]).pushed
    assert not plan(me, [ConfigKey("PeerAuthentication", "other", "p")]).pushed
    # services and routes of any namespace without a Sidecar resource
    assert plan(me, [ConfigKey("ServiceEntry", "other", "x.other.svc.cluster.local")]).pushed
    assert plan(me, [ConfigKey("VirtualService", "other", "x.other.svc.cluster.local")]).pushed


def test_a_sidecar_resource_narrows_services_and_routes() -> None:
    scoped = NodeMeta("sidecar", "a", egress=("./*", "istio-system/*"))
    other = ConfigKey("ServiceEntry", "b", "x.b.svc.cluster.local")
    mine = ConfigKey("ServiceEntry", "a", "y.a.svc.cluster.local")
    assert not plan(scoped, [other]).pushed
    assert plan(scoped, [mine]).pushed
    assert plan(scoped, [ConfigKey("ServiceEntry", "istio-system", "z")]).pushed
    assert not plan(scoped, [ConfigKey("VirtualService", "b", "x.b.svc.cluster.local")]).pushed
    # unless the service is its own (DefaultProxyNeedsPush: ServiceTargets)
    own = NodeMeta("sidecar", "a", services=("x.b.svc.cluster.local",), egress=("./*",))
    assert plan(own, [other]).pushed
    # exact and wildcard hosts
    exact = NodeMeta("sidecar", "a", egress=("b/x.b.svc.cluster.local",))
    assert plan(exact, [other]).pushed
    assert not plan(exact, [ConfigKey("ServiceEntry", "b", "q.b.svc.cluster.local")]).pushed
    suffix = NodeMeta("sidecar", "a", egress=("*/*.b.svc.cluster.local",))
    assert plan(suffix, [other]).pushed


def test_merged_kinds_follow_the_generators() -> None:
    """After the debounce merges a Service and a policy: CDS whole (the policy is filtered
    out, the Service is delta-aware: incremental), EDS for the Service only."""
    p = plan(NodeMeta("sidecar", "bench"), [ConfigKey("ServiceEntry", "bench", HOST),
                                            ConfigKey("AuthorizationPolicy", "bench", "p")])
    assert (p.sends(CDS), p.sends(EDS), p.sends(LDS), p.sends(RDS)) == (
        INCREMENTAL, INCREMENTAL, WHOLE, WHOLE)
    p = plan(NodeMeta("sidecar", "bench"), [ConfigKey("ServiceEntry", "bench", HOST),
                                            ConfigKey("VirtualService", "bench", HOST)])
    assert (p.sends(CDS), p.sends(EDS)) == (WHOLE, INCREMENTAL)
    # an empty change is istiod's "everything": all types whole
    p = plan(NodeMeta("sidecar", "bench"), [])
    assert p.pushed and {p.sends(t) for t in (CDS, EDS, LDS, RDS)} == {WHOLE}


def test_the_table_names_a_source_for_every_row() -> None:
    rows = table()
    assert {(r["kind"], r["role"]) for r in rows} == {
        (k, r) for k in ("ServiceEntry", "VirtualService", "AuthorizationPolicy")
        for r in ("sidecar", "waypoint", "ztunnel")}
    for r in rows:
        assert "pilot/pkg/xds/" in r["source"]
    side = next(r for r in rows if (r["kind"], r["role"]) == ("VirtualService", "sidecar"))
    assert (side["CDS"], side["EDS"], side["LDS"], side["RDS"]) == (WHOLE, SKIP, WHOLE, WHOLE)
    zt = next(r for r in rows if (r["kind"], r["role"]) == ("AuthorizationPolicy", "ztunnel"))
    assert zt["WDS Authorization"] == INCREMENTAL and "CDS" not in zt


def test_a_sidecar_resource_narrows_the_rendered_config() -> None:
    """With egress ./* a sidecar's config holds only its namespace's services (exposure
    and fan-out follow), as SidecarScope builds it."""
    import dataclasses
    from pathlib import Path

    from bench.controlplane import envoy_config
    from bench.controlplane.envoy_config import CertFiles
    from bench.mesh import build
    from bench.scenario import from_dict

    mesh = build(from_dict({"name": "t", "topology": {"services": 3}}), "sidecar")
    other = dataclasses.replace(mesh.services[2], namespace="other")
    mesh = dataclasses.replace(mesh, services=(*mesh.services[:2], other))
    certs = lambda s: CertFiles(Path("/c"), Path("/k"), Path("/ca"))  # noqa: E731
    client = mesh.proxies[0]
    full = envoy_config.build(mesh, client, certs)
    scoped = envoy_config.build(mesh, client, certs,
                                envoy_config.Options(sidecar_egress=("./*", "istio-system/*")))
    names = {c["name"] for c in full.clusters} - {c["name"] for c in scoped.clusters}
    assert names == {f"outbound|80||{other.fqdn}"}
