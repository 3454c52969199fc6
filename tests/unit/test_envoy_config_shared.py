"""build_all renders the parts many sidecars share once: every proxy's config must still be
exactly what build() renders for it alone (content and key order), before and after each
push experiment's change, with fault delays and a Sidecar resource's egress."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.controlplane import envoy_config
from bench.controlplane.envoy_config import CertFiles
from bench.experiments import changed_mesh
from bench.mesh import Mesh, build
from bench.scenario import from_dict


def _certs(spiffe: str) -> CertFiles:
    stem = spiffe.rsplit("/", 1)[-1]
    return CertFiles(Path(f"/c/{stem}.crt"), Path(f"/c/{stem}.key"), Path("/c/ca.pem"))


def _meshes(mode: str, pods: int = 4) -> list[Mesh]:
    """The mesh, then after each change of the fan-out sweep, cumulated as the runner does."""
    mesh = build(from_dict({"name": "t", "topology": {"nodes": 3, "services": 4,
                                                      "pods_per_service": pods}}), mode)
    out = [mesh]
    for change in ("new_service", "l7_route", "l4_authz"):
        mesh = changed_mesh(mesh, change)
        out.append(mesh)
    return out


OPTIONS = [envoy_config.Options(),
           envoy_config.Options(fault_delay_ms={"sidecar-client-0": 2.0, "waypoint": 1.0,
                                                "sidecar-svc-1-0": 3.0}),
           envoy_config.Options(sidecar_egress=("./*",))]


@pytest.mark.parametrize("mode", ["sidecar", "ambient", "waypoint"])
@pytest.mark.parametrize("opts", OPTIONS)
def test_build_all_equals_build_for_every_proxy(mode: str, opts: envoy_config.Options) -> None:
    for mesh in _meshes(mode):
        shared = envoy_config.build_all(mesh, mesh.proxies, _certs, opts)
        assert list(shared) == [p.name for p in mesh.proxies]
        for p in mesh.proxies:
            fresh = envoy_config.build(mesh, p, _certs, opts)
            assert shared[p.name] == fresh, p.name
            # same bytes as served statically (key order included)
            assert (json.dumps(envoy_config.bootstrap(p, shared[p.name], Path("/a")))
                    == json.dumps(envoy_config.bootstrap(p, fresh, Path("/a")))), p.name


def test_sidecars_share_per_service_parts_and_keep_their_own_certificate() -> None:
    mesh = _meshes("sidecar")[0]
    a, b = [p for p in mesh.proxies if p.role == "sidecar"][:2]
    cfgs = envoy_config.build_all(mesh, [a, b], _certs)
    ca, cb = cfgs[a.name].clusters[0], cfgs[b.name].clusters[0]
    assert ca["name"] == cb["name"]
    assert ca["load_assignment"] is cb["load_assignment"]  # rendered once
    tls = [c["transport_socket"]["typed_config"]["common_tls_context"] for c in (ca, cb)]
    assert tls[0]["validation_context"]["match_typed_subject_alt_names"] \
        is tls[1]["validation_context"]["match_typed_subject_alt_names"]
    assert tls[0]["tls_certificates"] != tls[1]["tls_certificates"]  # each its own identity
