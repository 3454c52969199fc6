"""ztunnel's config in Istio's shapes: istio.workload.Address (a Workload per pod, a Service
per service) and istio.security.Authorization (one per ambient policy), as protobuf.

There is no Python package of these protos. The messages are built here from a descriptor
written from the upstream .proto files, with their field numbers and types:
  istio/ztunnel proto/workload.proto (tag 1.27.3): Address, Workload, Service, PortList,
    Port, GatewayAddress, NetworkAddress, NamespacedHostname (Extension, Locality,
    ApplicationTunnel and LoadBalancing are left out: istiod leaves them unset for the pods
    and services of this harness)
  istio/ztunnel proto/authorization.proto (tag 1.27.3): Authorization, Rule, Clause, Match,
    StringMatch (Address, ServiceAccountMatch left out: not used by our policies)
so the serialised bytes are what istiod would send for the same objects. What istiod puts
in each field follows pilot/pkg/serviceregistry/kube/controller/ambient (workloads.go,
services.go, policies.go) for a Kubernetes pod, Service and AuthorizationPolicy; see
`workload()`, `service()`, `authorization()` for which fields are filled and why.
Resource names as istiod's: a workload's uid, "namespace/hostname" for a service,
"namespace/name" for a policy (pilot/pkg/model AddressInfo/WorkloadAuthorization
ResourceName).
"""

from __future__ import annotations

import base64
import ipaddress
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory
from google.protobuf.message import Message

from bench.mesh import TRUST_DOMAIN, AuthorizationPolicy, Mesh, Pod, Service

ADDRESS_TYPE = "type.googleapis.com/istio.workload.Address"
AUTHORIZATION_TYPE = "type.googleapis.com/istio.security.Authorization"
CLUSTER_ID = "Kubernetes"  # istiod's default cluster id
F = descriptor_pb2.FieldDescriptorProto
STRING, BYTES, UINT32, BOOL, ENUM, MESSAGE = (F.TYPE_STRING, F.TYPE_BYTES, F.TYPE_UINT32,
                                              F.TYPE_BOOL, F.TYPE_ENUM, F.TYPE_MESSAGE)
REPEATED = F.LABEL_REPEATED

# (message, [(field, number, type, repeated, message/enum type, oneof index)]), from the
# upstream .proto files named in the module docstring
WORKLOAD_PROTO: dict[str, list[tuple[Any, ...]]] = {
    "Address": [("workload", 1, MESSAGE, False, ".istio.workload.Workload", 0),
                ("service", 2, MESSAGE, False, ".istio.workload.Service", 0)],
    "Service": [("name", 1, STRING), ("namespace", 2, STRING), ("hostname", 3, STRING),
                ("addresses", 4, MESSAGE, True, ".istio.workload.NetworkAddress"),
                ("ports", 5, MESSAGE, True, ".istio.workload.Port"),
                ("subject_alt_names", 6, STRING, True),
                ("waypoint", 7, MESSAGE, False, ".istio.workload.GatewayAddress"),
                ("ip_families", 9, ENUM, False, ".istio.workload.IPFamilies")],
    "Workload": [("uid", 20, STRING), ("name", 1, STRING), ("namespace", 2, STRING),
                 ("addresses", 3, BYTES, True), ("hostname", 21, STRING),
                 ("network", 4, STRING),
                 ("tunnel_protocol", 5, ENUM, False, ".istio.workload.TunnelProtocol"),
                 ("trust_domain", 6, STRING), ("service_account", 7, STRING),
                 ("waypoint", 8, MESSAGE, False, ".istio.workload.GatewayAddress"),
                 ("node", 9, STRING), ("canonical_name", 10, STRING),
                 ("canonical_revision", 11, STRING),
                 ("workload_type", 12, ENUM, False, ".istio.workload.WorkloadType"),
                 ("workload_name", 13, STRING), ("native_tunnel", 14, BOOL),
                 ("services", 22, MESSAGE, True, ".istio.workload.Workload.ServicesEntry"),
                 ("authorization_policies", 16, STRING, True),
                 ("status", 17, ENUM, False, ".istio.workload.WorkloadStatus"),
                 ("cluster_id", 18, STRING)],
    "PortList": [("ports", 1, MESSAGE, True, ".istio.workload.Port")],
    "Port": [("service_port", 1, UINT32), ("target_port", 2, UINT32)],
    "GatewayAddress": [("hostname", 1, MESSAGE, False, ".istio.workload.NamespacedHostname", 0),
                       ("address", 2, MESSAGE, False, ".istio.workload.NetworkAddress", 0),
                       ("hbone_mtls_port", 3, UINT32)],
    "NetworkAddress": [("network", 1, STRING), ("address", 2, BYTES)],
    "NamespacedHostname": [("namespace", 1, STRING), ("hostname", 2, STRING)],
}
WORKLOAD_ENUMS = {
    "IPFamilies": ["AUTOMATIC", "IPV4_ONLY", "IPV6_ONLY", "DUAL"],
    "WorkloadStatus": ["HEALTHY", "UNHEALTHY"],
    "WorkloadType": ["DEPLOYMENT", "CRONJOB", "POD", "JOB"],
    "TunnelProtocol": ["NONE", "HBONE"],
}
ONEOFS = {"Address": "type", "GatewayAddress": "destination", "StringMatch": "match_type"}
AUTHORIZATION_PROTO: dict[str, list[tuple[Any, ...]]] = {
    "Authorization": [("name", 1, STRING), ("namespace", 2, STRING),
                      ("scope", 3, ENUM, False, ".istio.security.Scope"),
                      ("action", 4, ENUM, False, ".istio.security.Action"),
                      ("rules", 5, MESSAGE, True, ".istio.security.Rule")],
    "Rule": [("clauses", 1, MESSAGE, True, ".istio.security.Clause")],
    "Clause": [("matches", 2, MESSAGE, True, ".istio.security.Match")],
    "Match": [("namespaces", 1, MESSAGE, True, ".istio.security.StringMatch"),
              ("not_namespaces", 2, MESSAGE, True, ".istio.security.StringMatch"),
              ("principals", 3, MESSAGE, True, ".istio.security.StringMatch"),
              ("not_principals", 4, MESSAGE, True, ".istio.security.StringMatch"),
              ("destination_ports", 9, UINT32, True),
              ("not_destination_ports", 10, UINT32, True)],
    "StringMatch": [("exact", 1, STRING, False, None, 0), ("prefix", 2, STRING, False, None, 0),
                    ("suffix", 3, STRING, False, None, 0)],
}
AUTHORIZATION_ENUMS = {"Scope": ["GLOBAL", "NAMESPACE", "WORKLOAD_SELECTOR"],
                       "Action": ["ALLOW", "DENY"]}


def _message(name: str, fields: list[tuple[Any, ...]]) -> descriptor_pb2.DescriptorProto:
    m = descriptor_pb2.DescriptorProto(name=name)
    if name in ONEOFS:
        m.oneof_decl.add(name=ONEOFS[name])
    for spec in fields:
        fname, number, ftype = spec[:3]
        repeated = len(spec) > 3 and spec[3]
        type_name = spec[4] if len(spec) > 4 else None
        f = m.field.add(name=fname, number=number, type=ftype,
                        label=REPEATED if repeated else F.LABEL_OPTIONAL)
        if type_name:
            f.type_name = type_name
        if len(spec) > 5:
            f.oneof_index = spec[5]
    return m


def _file(name: str, package: str, messages: dict[str, list[tuple[Any, ...]]],
          enums: dict[str, list[str]]) -> descriptor_pb2.FileDescriptorProto:
    fd = descriptor_pb2.FileDescriptorProto(name=name, package=package, syntax="proto3")
    for mname, fields in messages.items():
        m = _message(mname, fields)
        if mname == "Workload":  # map<string, PortList> services = 22
            entry = m.nested_type.add(name="ServicesEntry")
            entry.options.map_entry = True
            entry.field.add(name="key", number=1, type=STRING, label=F.LABEL_OPTIONAL)
            entry.field.add(name="value", number=2, type=MESSAGE, label=F.LABEL_OPTIONAL,
                            type_name=".istio.workload.PortList")
        fd.message_type.append(m)
    for ename, values in enums.items():
        e = fd.enum_type.add(name=ename)
        for i, v in enumerate(values):
            e.value.add(name=v, number=i)
    return fd


def _pool() -> descriptor_pool.DescriptorPool:
    pool = descriptor_pool.DescriptorPool()
    pool.Add(_file("workload.proto", "istio.workload", WORKLOAD_PROTO, WORKLOAD_ENUMS))
    pool.Add(_file("authorization.proto", "istio.security", AUTHORIZATION_PROTO,
                   AUTHORIZATION_ENUMS))
    return pool


POOL = _pool()


def message_class(full_name: str) -> type[Message]:
    return message_factory.GetMessageClass(POOL.FindMessageTypeByName(full_name))


Address = message_class("istio.workload.Address")
Authorization = message_class("istio.security.Authorization")


def from_dict(type_url: str, d: dict[str, Any]) -> tuple[str, Message]:
    """An Address or Authorization from its proto3 JSON dict, and its resource name."""
    if type_url == ADDRESS_TYPE:
        msg = json_format.ParseDict(d, Address(), descriptor_pool=POOL)
        if msg.HasField("workload"):  # type: ignore[attr-defined]
            return msg.workload.uid, msg  # type: ignore[attr-defined]
        svc = msg.service  # type: ignore[attr-defined]
        return f"{svc.namespace}/{svc.hostname}", msg
    if type_url == AUTHORIZATION_TYPE:
        msg = json_format.ParseDict(d, Authorization(), descriptor_pool=POOL)
        return f"{msg.namespace}/{msg.name}", msg  # type: ignore[attr-defined]
    raise ValueError(f"not a ztunnel type: {type_url}")


# ---- the mesh in these shapes -------------------------------------------------------------------
def _ip(ip: str) -> str:
    return base64.b64encode(ipaddress.ip_address(ip).packed).decode()


def _waypoint(mesh: Mesh, pod_name: str) -> dict[str, Any]:
    wp = mesh.pod(pod_name)
    # a namespace waypoint is addressed by its Service's hostname (GatewayAddress.hostname)
    return {"hostname": {"namespace": wp.namespace,
                         "hostname": f"{wp.name}.{wp.namespace}.svc.{TRUST_DOMAIN}"},
            "hboneMtlsPort": 15008}


def workload(mesh: Mesh, pod: Pod) -> dict[str, Any]:
    """A pod as istiod's ambient index renders it (workloads.go podWorkloadBuilder): uid
    "<cluster>//Pod/<ns>/<name>", its IP, HBONE (enrolled), identity, node, canonical
    labels, the services selecting it with their ports, the policies selecting it."""
    services = {f"{s.namespace}/{s.fqdn}": {"ports": [{"servicePort": s.port,
                                                        "targetPort": s.target_port}]}
                for s in mesh.services if pod.name in s.endpoints}
    policies = [f"{p.namespace}/{p.name}" for p in mesh.policies_for(pod)]
    w: dict[str, Any] = {
        "uid": f"{CLUSTER_ID}//Pod/{pod.namespace}/{pod.name}", "name": pod.name,
        "namespace": pod.namespace, "addresses": [_ip(pod.ip)],
        "tunnelProtocol": "HBONE" if mesh.enrolled(pod) else "NONE",
        "trustDomain": TRUST_DOMAIN, "serviceAccount": pod.service_account, "node": pod.node,
        "canonicalName": pod.service or pod.name, "canonicalRevision": "latest",
        "workloadType": "POD", "workloadName": pod.service or pod.name,
        "services": services, "authorizationPolicies": policies, "clusterId": CLUSTER_ID}
    return {"workload": w}


def service(mesh: Mesh, svc: Service) -> dict[str, Any]:
    """A Service (services.go): hostname, VIP, ports, waypoint when it uses one."""
    s: dict[str, Any] = {"name": svc.name, "namespace": svc.namespace, "hostname": svc.fqdn,
                         "addresses": [{"address": _ip(svc.vip)}],
                         "ports": [{"servicePort": svc.port, "targetPort": svc.target_port}],
                         "ipFamilies": "IPV4_ONLY"}
    if svc.waypoint:
        s["waypoint"] = _waypoint(mesh, svc.waypoint)
    return {"service": s}


def authorization(policy: AuthorizationPolicy) -> dict[str, Any]:
    """An L4 policy as policies.go convertAuthorizationPolicy renders it: scope
    WORKLOAD_SELECTOR (it has a selector), one rule with one clause matching the principals
    (the SPIFFE id without its "spiffe://" prefix)."""
    principals = [{"exact": p.removeprefix("spiffe://")} for p in policy.principals]
    return {"name": policy.name, "namespace": policy.namespace,
            "scope": "WORKLOAD_SELECTOR" if policy.selector else "NAMESPACE",
            "action": policy.action,
            "rules": [{"clauses": [{"matches": [{"principals": principals}]}]}]}


def ztunnel_snapshot(mesh: Mesh) -> dict[str, list[dict[str, Any]]]:
    """What istiod serves every ztunnel (no per-proxy filter, pilot/pkg/xds/workload.go):
    every workload and service address, every ambient policy."""
    return {"addresses": [workload(mesh, p) for p in mesh.pods]
            + [service(mesh, s) for s in mesh.services],
            "authorizations": [authorization(p) for p in mesh.policies]}
