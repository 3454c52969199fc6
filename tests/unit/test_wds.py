"""ztunnel's WDS resources (bench/controlplane/wds.py) serialise with the field numbers of
istio/ztunnel proto/workload.proto and authorization.proto (1.27.3) and round-trip."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from google.protobuf import empty_pb2
from google.protobuf.unknown_fields import UnknownFieldSet

from bench.controlplane import wds
from bench.controlplane.snapshot import Converter
from bench.experiments import changed_mesh
from bench.mesh import build
from bench.scenario import from_dict


def _fields(data: bytes) -> dict[int, list[object]]:
    """Top-level field number -> values, read from the wire without any descriptor."""
    msg = empty_pb2.Empty()
    msg.ParseFromString(data)
    out: dict[int, list[object]] = {}
    for f in UnknownFieldSet(msg):
        out.setdefault(f.field_number, []).append(f.data)
    return out


def _mesh(mode: str = "waypoint"):  # type: ignore[no-untyped-def]
    m = build(from_dict({"name": "t", "topology": {"nodes": 3, "services": 2,
                                                   "pods_per_service": 2}}), mode)
    return changed_mesh(m, "l4_authz")


def test_workload_has_the_upstream_field_numbers() -> None:
    mesh = _mesh()
    pod = mesh.pod("svc-0-0")
    name, msg = wds.from_dict(wds.ADDRESS_TYPE, wds.workload(mesh, pod))
    assert name == "Kubernetes//Pod/bench/svc-0-0"
    outer = _fields(msg.SerializeToString())
    assert list(outer) == [1]  # Address.workload = 1 (oneof type)
    w = _fields(outer[1][0])  # type: ignore[arg-type]
    # workload.proto: uid 20, name 1, namespace 2, addresses 3 (bytes), tunnel_protocol 5,
    # trust_domain 6, service_account 7, node 9, canonical_name 10, workload_type 12,
    # services 22 (map), authorization_policies 16, cluster_id 18
    assert w[20] == [b"Kubernetes//Pod/bench/svc-0-0"]
    assert w[1] == [b"svc-0-0"] and w[2] == [b"bench"]
    assert w[3] == [ipaddress.ip_address(pod.ip).packed]
    assert w[5] == [1]  # HBONE
    assert w[6] == [b"cluster.local"] and w[7] == [b"svc-0"] and w[9] == [pod.node.encode()]
    assert w[12] == [2]  # POD
    assert w[16] == [b"bench/deny-intruder-0"]  # the l4_authz policy selects svc-0's pods
    assert w[18] == [b"Kubernetes"]
    entry = _fields(w[22][0])  # type: ignore[arg-type]
    assert entry[1] == [b"bench/svc-0.bench.svc.cluster.local"]
    port = _fields(_fields(entry[2][0])[1][0])  # type: ignore[arg-type]
    assert (port[1], port[2]) == ([80], [8080])


def test_service_and_authorization_field_numbers() -> None:
    mesh = _mesh()
    svc = mesh.services[0]
    name, msg = wds.from_dict(wds.ADDRESS_TYPE, wds.service(mesh, svc))
    assert name == "bench/svc-0.bench.svc.cluster.local"
    s = _fields(_fields(msg.SerializeToString())[2][0])  # type: ignore[arg-type]
    assert s[1] == [b"svc-0"] and s[3] == [svc.fqdn.encode()]
    assert _fields(s[4][0])[2] == [ipaddress.ip_address(svc.vip).packed]  # type: ignore[arg-type]
    wp = _fields(s[7][0])  # type: ignore[arg-type]  # waypoint: GatewayAddress
    assert wp[3] == [15008] and _fields(wp[1][0])[2] == [  # type: ignore[arg-type]
        b"waypoint.bench.svc.cluster.local"]
    policy = mesh.policies[-1]
    name, msg = wds.from_dict(wds.AUTHORIZATION_TYPE, wds.authorization(policy))
    assert name == "bench/deny-intruder-0"
    a = _fields(msg.SerializeToString())
    assert a[1] == [b"deny-intruder-0"] and a[2] == [b"bench"]
    assert a[3] == [2] and a[4] == [1]  # WORKLOAD_SELECTOR, DENY
    match = _fields(_fields(_fields(a[5][0])[1][0])[2][0])  # type: ignore[arg-type]
    assert _fields(match[3][0])[1] == [b"cluster.local/ns/intruder/sa/default"]  # type: ignore[arg-type]


def test_round_trip_and_every_ztunnel_holds_everything() -> None:
    mesh = _mesh("ambient")
    snap = wds.ztunnel_snapshot(mesh)
    assert len(snap["addresses"]) == len(mesh.pods) + len(mesh.services)
    assert len(snap["authorizations"]) == len(mesh.policies) == 1
    conv = Converter()
    s = conv.snapshot(snap)
    res = s.by_type[wds.ADDRESS_TYPE]
    for name, (packed, _) in res.by_name.items():
        # an Any: type_url (1) then value (2); the value parses back to the same message
        anyf = _fields(packed)
        assert anyf[1] == [wds.ADDRESS_TYPE.encode()]
        back = wds.Address.FromString(anyf[2][0])  # type: ignore[arg-type]
        assert back.SerializeToString(deterministic=True) == anyf[2][0]
        assert name in (back.workload.uid,
                        f"{back.service.namespace}/{back.service.hostname}")
    # a Workload is a few hundred bytes: the shape istiod sends is small
    sizes = [len(p) for p in res.packed]
    assert max(sizes) < 400, sizes


def test_the_wds_client_accepts_what_it_is_sent() -> None:
    """A workload in two services (a map of two entries) decodes and re-encodes to the
    same bytes in the client's check, whatever the map's order in memory."""
    from envoy.service.discovery.v3.discovery_pb2 import DeltaDiscoveryResponse

    from bench.controlplane.wds_client import NodeState

    mesh = changed_mesh(changed_mesh(_mesh("ambient"), "new_service"), "new_service")
    res = Converter().snapshot(wds.ztunnel_snapshot(mesh)).by_type[wds.ADDRESS_TYPE]
    resp = DeltaDiscoveryResponse(type_url=wds.ADDRESS_TYPE)
    for name, (packed, _) in res.by_name.items():
        r = resp.resources.add(name=name)
        r.resource.ParseFromString(packed)
    state = NodeState("z", Path("/nonexistent"))
    assert state.apply(resp) is None
    assert len(state.held[wds.ADDRESS_TYPE]) == len(mesh.pods) + len(mesh.services)
