"""Push experiments, checked on configs alone: which proxies' resources a change alters."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.backends.local import envoy_config
from bench.backends.local.certs import CertFiles
from bench.errors import UserError
from bench.experiments import changed_mesh
from bench.mesh import build
from bench.scenario import from_dict


def _certs(spiffe: str) -> CertFiles:
    return CertFiles(Path("/c.crt"), Path("/c.key"), Path("/ca.pem"))


def _altered(mode: str, experiment: str) -> set[str]:
    mesh = build(from_dict({"name": "t", "topology": {"services": 2}}), mode)
    after = changed_mesh(mesh, experiment)
    out = set()
    for p in mesh.proxies:
        a = envoy_config.build(mesh, p, _certs)
        b = envoy_config.build(after, p, _certs)
        if json.dumps([a.listeners, a.clusters]) != json.dumps([b.listeners, b.clusters]):
            out.add(p.role)
    return out


@pytest.mark.parametrize("mode, experiment, roles", [
    ("sidecar", "new_service", {"sidecar"}),
    ("sidecar", "l7_route", {"sidecar"}),
    ("ambient", "new_service", {"ztunnel"}),
    ("ambient", "l7_route", set()),
    ("waypoint", "new_service", {"ztunnel", "waypoint"}),
    ("waypoint", "l7_route", {"waypoint"}),
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
