"""Push experiments, checked on configs alone: which proxies' resources a change alters."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.controlplane import envoy_config
from bench.controlplane.envoy_config import CertFiles
from bench.errors import UserError
from bench.experiments import changed_mesh
from bench.mesh import Mesh, build
from bench.scenario import from_dict


def _certs(spiffe: str) -> CertFiles:
    return CertFiles(Path("/c.crt"), Path("/c.key"), Path("/ca.pem"))


def _altered(mode: str, experiment: str) -> set[str]:
    """Roles of the proxies whose rendered config the change alters."""
    mesh = build(from_dict({"name": "t", "topology": {"services": 2}}), mode)
    roles = {p.name: p.role for p in mesh.proxies}
    return {roles[n] for n in _names_altered(mesh, changed_mesh(mesh, experiment))}


@pytest.mark.parametrize("mode, experiment, roles", [
    ("sidecar", "new_service", {"sidecar"}),
    ("sidecar", "l7_route", {"sidecar"}),
    ("ambient", "new_service", {"ztunnel"}),
    ("ambient", "l7_route", set()),
    ("waypoint", "new_service", {"ztunnel", "waypoint"}),
    ("waypoint", "l7_route", {"waypoint"}),
    ("sidecar", "l4_authz", {"sidecar"}),
    ("ambient", "l4_authz", {"ztunnel"}),
    ("waypoint", "l4_authz", {"ztunnel"}),
])
def test_scoping_of_each_change(mode: str, experiment: str, roles: set[str]) -> None:
    assert _altered(mode, experiment) == roles


def test_new_service_has_a_fresh_vip_and_the_namespace_waypoint() -> None:
    mesh = build(from_dict({"name": "t"}), "waypoint")
    new = changed_mesh(mesh, "new_service").services[-1]
    assert new.vip not in {s.vip for s in mesh.services}
    assert new.waypoint == "waypoint"


def test_unknown_experiment_is_a_user_error() -> None:
    with pytest.raises(UserError, match="unknown experiment 'l8_route'"):
        changed_mesh(build(from_dict({"name": "t"}), "sidecar"), "l8_route")


def test_exposure_sidecar_knows_every_service_ztunnel_too_waypoint_only_its_own() -> None:
    from bench.experiments import exposure_samples
    from bench.store import Cell

    for mode in ("sidecar", "waypoint"):
        mesh = build(from_dict({"name": "t", "topology": {"services": 3}}), mode)
        configs = {p.name: envoy_config.build(mesh, p, _certs) for p in mesh.proxies}
        rows = exposure_samples(mesh, configs, Cell(1, mode, 0))
        known = {r.entity: r.value for r in rows if r.metric == "services_known"}
        size = {r.entity: r.value for r in rows if r.metric == "config_bytes"}
        assert all(v > 0 for v in size.values())
        for p in mesh.proxies:
            assert known[p.name] == 3  # sidecars and ztunnels: all; this waypoint serves all 3


def _names_altered(mesh: Mesh, after: Mesh) -> set[str]:
    """Names of the proxies whose rendered config differs between the two meshes."""
    out = set()
    for p in mesh.proxies:
        a = envoy_config.build(mesh, p, _certs)
        b = envoy_config.build(after, p, _certs)
        if json.dumps([a.listeners, a.clusters]) != json.dumps([b.listeners, b.clusters]):
            out.add(p.name)
    return out


def test_l4_policy_changes_only_the_selected_sidecars_but_istio_pushes_the_namespace() -> None:
    from bench.backends.local.backend import LocalBackend
    from bench.controlplane.pushrules import ConfigKey, NodeMeta, plan
    from bench.experiments import change_keys

    scenario = from_dict({"name": "t", "topology": {"services": 3, "pods_per_service": 2}})
    mesh = build(scenario, "sidecar")
    meta = LocalBackend(scenario).node_meta(mesh)

    def istio_scope(experiment: str) -> set[str]:
        keys = [ConfigKey.of(k) for k in change_keys(mesh, experiment)]
        return {n for n, m in meta.items() if plan(NodeMeta.of(m), keys).pushed}

    after = changed_mesh(mesh, "l4_authz")
    (policy,) = after.policies
    assert policy.selector == mesh.target.name and policy.action == "DENY"
    # rendered: only the two sidecars of the selected service's pods carry it
    assert _names_altered(mesh, after) == {"sidecar-svc-0-0", "sidecar-svc-0-1"}
    # Istio's push decision: every sidecar of the namespace, changed or not
    assert istio_scope("l4_authz") == {p.name for p in mesh.proxies}
    # a route (VirtualService) reaches every sidecar too: none has a Sidecar resource
    assert istio_scope("l7_route") == {p.name for p in mesh.proxies}
    scoped = LocalBackend(from_dict({"name": "t", "proxy": {"sidecar_egress": ["./*"]}}))
    elsewhere = [ConfigKey("ServiceEntry", "other", "x.other.svc.cluster.local")]
    assert not any(plan(NodeMeta.of(m), elsewhere).pushed
                   for m in scoped.node_meta(mesh).values())
    inbound = next(lst for lst in envoy_config.build(after, after.proxies[1], _certs).listeners
                   if lst["name"] == "virtualInbound")
    hcm = inbound["filter_chains"][0]["filters"][0]["typed_config"]
    first = hcm["http_filters"][0]  # RBAC as an HTTP filter on an HTTP chain, as Istio's
    rules = first["typed_config"]["rules"]
    assert first["name"] == "envoy.filters.http.rbac" and rules["action"] == "DENY"
    assert rules["policies"][policy.key]["principals"] == [
        {"authenticated": {"principal_name": {"exact": policy.principals[0]}}}]


def test_every_ztunnel_holds_every_l4_policy_matched_on_the_destination_pod() -> None:
    mesh = build(from_dict({"name": "t", "topology": {"nodes": 3, "services": 2,
                                                      "pods_per_service": 2}}), "waypoint")
    after = changed_mesh(changed_mesh(mesh, "l4_authz"), "l4_authz")  # two policies
    assert len(after.policies) == 2
    selected = {p.ip for p in after.pods if p.service == after.target.name}
    for z in after.proxies_of("ztunnel"):
        lst = next(x for x in envoy_config.build(after, z, _certs).listeners
                   if x["name"] == "ztunnel_inbound")
        hcm = lst["filter_chains"][0]["filters"][0]["typed_config"]
        rbac = hcm["http_filters"][0]
        assert rbac["name"] == "envoy.filters.http.rbac"
        pols = rbac["typed_config"]["rules"]["policies"]
        assert set(pols) == {p.key for p in after.policies}  # on every node, local pods or not
        for pol in pols.values():
            prefixes = {r["header"]["string_match"]["prefix"]
                        for r in pol["permissions"][0]["or_rules"]["rules"]}
            assert prefixes == {f"{ip}:" for ip in selected}
    # the waypoint enforces policies attached to it (targetRefs), not workload selectors
    assert _names_altered(mesh, after) == {z.name for z in mesh.proxies_of("ztunnel")}


def test_exposure_counts_policies_and_workloads() -> None:
    from bench.experiments import exposure_samples
    from bench.store import Cell

    for mode, holders in (("sidecar", {"sidecar-svc-0-0"}),
                          ("ambient", {"ztunnel-node0", "ztunnel-node1"})):
        mesh = changed_mesh(build(from_dict({"name": "t", "topology": {"services": 2}}), mode),
                            "l4_authz")
        configs = {p.name: envoy_config.build(mesh, p, _certs) for p in mesh.proxies}
        rows = exposure_samples(mesh, configs, Cell(1, mode, 0), state="after_changes")
        by = {(r.entity, r.metric): r.value for r in rows}
        assert {r.labels["state"] for r in rows} == {"after_changes"}
        for p in mesh.proxies:
            assert by[(p.name, "policies_total")] == 1
            assert by[(p.name, "policies_known")] == (1 if p.name in holders else 0)
            assert by[(p.name, "workloads_total")] == len(mesh.pods)
        if mode == "sidecar":  # its outbound names every server pod, not its own
            assert by[("sidecar-client-0", "workloads_known")] == len(mesh.pods) - 1


def test_kernel_view_subtracts_the_harness_calls_and_wakeup_pipes() -> None:
    from bench.probes.pushwire import KernelPush, SocketWrites

    writes = [SocketWrites(1, 1, 5_000, 3), SocketWrites(2, 1, 4_000, 2),  # two ADS streams
              SocketWrites(3, 1, 900, 1), SocketWrites(4, 1, 80, 1),  # two control replies
              SocketWrites(5, 1, 12, 12),  # the event loop's self-pipe: 1 byte per write
              SocketWrites(6, 1, 13, 1)]  # a WINDOW_UPDATE after an earlier ACK
    k = KernelPush.of(writes, control_replies=[900, 80])
    assert (k.sockets, k.bytes, k.small_sockets) == (2, 9_013, 1)
    assert (k.sockets_seen, k.bytes_seen, k.control_calls, k.control_bytes) == (5, 9_993, 2, 980)
    assert k.unexplained_control == 0


def test_kernel_view_finds_control_replies_on_a_reused_socket() -> None:
    """A closed control connection's struct sock reused by the next one: one socket, two
    replies; it is still recognised by its sizes, and no stream is subtracted instead."""
    from bench.probes.pushwire import KernelPush, SocketWrites

    streams = [SocketWrites(i, 1, 5_000 + i, 2) for i in range(10, 21)]  # 11 ADS streams
    reused = SocketWrites(1, 1, 1_900 + 84, 2)
    k = KernelPush.of([*streams, reused, SocketWrites(2, 1, 60, 1)],
                      control_replies=[1_900, 60, 84])
    assert k.sockets == 11 and k.unexplained_control == 0 and k.control_bytes == 2_044
    # a reply whose socket the probe did not see is reported, not taken from a stream
    k = KernelPush.of(streams, control_replies=[1_900])
    assert k.sockets == 11 and k.unexplained_control == 1


def test_push_report_lists_where_the_views_disagree() -> None:
    import pandas as pd

    from analysis.push import disagreements

    def frame(values: dict[str, float]) -> pd.DataFrame:
        return pd.DataFrame([{"experiment": "l4_authz", "mode": "sidecar", "repetition": 1,
                              "metric": m, "value": v} for m, v in values.items()])

    agree = frame({"proxies_updated": 7, "proxies_applied": 7, "kernel_sockets_written": 7,
                   "push_bytes_total": 100, "kernel_bytes_written": 130})
    assert disagreements(agree)[0].startswith("The three views agree")
    differ = frame({"proxies_updated": 7, "proxies_applied": 6, "kernel_sockets_written": 8,
                    "push_bytes_total": 100, "kernel_bytes_written": 90})
    text = "\n".join(disagreements(differ))
    assert "the Envoy counters view counts 6" in text and "the kernel view counts 8" in text
    assert "fewer bytes (90)" in text


def test_exposure_bytes_are_the_control_planes_snapshot_bytes() -> None:
    """Without the control plane's sizes, exposure computes the same measure it serves."""
    from bench.controlplane import wds
    from bench.controlplane.resources import snapshot_dict
    from bench.controlplane.snapshot import Converter
    from bench.experiments import exposure_samples
    from bench.store import Cell

    mesh = build(from_dict({"name": "t", "topology": {"services": 2}}), "waypoint")
    configs = {p.name: envoy_config.build(mesh, p, _certs) for p in mesh.proxies}
    rows = exposure_samples(mesh, configs, Cell(1, "waypoint", 0))
    got = {r.entity: r.value for r in rows if r.metric == "config_bytes"}
    served = {n: Converter().snapshot(snapshot_dict(c)).size for n, c in configs.items()}
    # a ztunnel's config is its WDS (Istio's shapes); its Envoy data path is reported apart
    wds_size = Converter().snapshot(wds.ztunnel_snapshot(mesh)).size
    want = {n: float(wds_size if n.startswith("ztunnel") else v) for n, v in served.items()}
    assert got == want and all(v > 0 for v in got.values())
    datapath = {r.entity: r.value for r in rows if r.metric == "datapath_config_bytes"}
    assert datapath == {n: float(v) for n, v in served.items() if n.startswith("ztunnel")}
