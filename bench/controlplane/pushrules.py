"""Istio 1.27's push decision, as one table: for a changed config, which proxies are pushed,
which xDS types they are sent, and whether a type is sent whole or as an increment.

Read from istio/istio at tag 1.27.3 (and istio/ztunnel 1.27.3 for the ztunnel's types); each
rule names the file and function it follows. The control plane applies `plan()` to every
node for every change (server.XdsServer.change); the rendered table (`table()`) goes into the
run's manifest and report, so a reader can check every row against the source.

Terms:
- A *change* is a set of ConfigKeys (kind, namespace, name), like istiod's
  PushRequest.ConfigsUpdated after the debounce has merged the events of one change. A
  Kubernetes Service is kind ServiceEntry with the hostname as its name (istiod's service
  registry keys it so). In the ambient modes a change that alters workload or service
  addresses also carries kind Address (the ambient index's updates, merged by the debounce).
- *Who*: a sidecar is pushed when pilot/pkg/model/sidecar.go SidecarScope.DependsOnConfig
  says its scope depends on a key, or a key is one of its own services
  (pilot/pkg/xds/proxy_dependencies.go DefaultProxyNeedsPush); a waypoint or a ztunnel on
  every change (proxy_dependencies.go ConfigAffectsProxy: "TODO: implement ambient aware
  scoping").
- *What*, per type (the generators' NeedsPush functions): WHOLE = every resource of the type
  the proxy holds, INCREMENTAL = only those the change altered (and removals), SKIP = none.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from bench.changes import L4_AUTHZ, L7_ROUTE, NEW_SERVICE
from bench.controlplane.resources import (
    ADDRESS_TYPE,
    AUTHORIZATION_TYPE,
    CLUSTER_TYPE,
    ENDPOINT_TYPE,
    LISTENER_TYPE,
    ROUTE_TYPE,
)

ISTIO_VERSION = "1.27.3"
ROOT_NAMESPACE = "istio-system"
WHOLE, INCREMENTAL, SKIP = "whole", "incremental", "skip"
# the Envoy data path of our ztunnel role is not Istio's: its types follow their content
CONTENT = "content"

# --- istio/istio 1.27.3 sets, copied with their source -----------------------------------------
# pilot/pkg/xds/cds.go skippedCdsConfigs
SKIPPED_CDS = frozenset({"Gateway", "WorkloadEntry", "WorkloadGroup", "AuthorizationPolicy",
                         "RequestAuthentication", "Secret", "Telemetry", "WasmPlugin",
                         "ProxyConfig", "DNSName"})
# pilot/pkg/xds/eds.go skippedEdsConfigs
SKIPPED_EDS = frozenset({"Gateway", "VirtualService", "WorkloadGroup", "AuthorizationPolicy",
                         "RequestAuthentication", "Secret", "Telemetry", "WasmPlugin",
                         "ProxyConfig", "DNSName"})
# pilot/pkg/xds/lds.go skippedLdsConfigs[SidecarProxy] (== [Waypoint])
SKIPPED_LDS = frozenset({"Gateway", "WorkloadGroup", "WorkloadEntry", "Secret", "ProxyConfig",
                         "DNSName", "KubernetesGateway"})
# pilot/pkg/xds/rds.go skippedRdsConfigs
SKIPPED_RDS = frozenset({"WorkloadEntry", "WorkloadGroup", "AuthorizationPolicy",
                         "RequestAuthentication", "PeerAuthentication", "Secret", "WasmPlugin",
                         "Telemetry", "ProxyConfig", "DNSName"})
# pilot/pkg/networking/core/cluster.go deltaConfigTypes (BuildDeltaClusters, shouldUseDelta)
DELTA_CDS = frozenset({"ServiceEntry", "DestinationRule"})
# pilot/pkg/model/sidecar.go clusterScopedKnownConfigTypes / sidecarScopedKnownConfigTypes
CLUSTER_SCOPED = frozenset({"EnvoyFilter", "AuthorizationPolicy", "RequestAuthentication",
                            "PeerAuthentication", "WasmPlugin", "Telemetry"})
SIDECAR_SCOPED = frozenset({"ServiceEntry", "VirtualService", "DestinationRule", "Sidecar"})

SOURCES = {
    "who:sidecar": "pilot/pkg/xds/proxy_dependencies.go DefaultProxyNeedsPush -> "
                   "ConfigAffectsProxy -> pilot/pkg/model/sidecar.go SidecarScope.DependsOnConfig",
    "who:ambient": "pilot/pkg/xds/proxy_dependencies.go ConfigAffectsProxy "
                   "(IsWaypointProxy || IsZTunnel: true)",
    CLUSTER_TYPE: "pilot/pkg/xds/cds.go cdsNeedsPush (+ waypointNeedsPush, xdsgen.go); "
                  "pilot/pkg/networking/core/cluster.go BuildDeltaClusters/shouldUseDelta",
    ENDPOINT_TYPE: "pilot/pkg/xds/eds.go edsNeedsPush, canSendPartialFullPushes",
    LISTENER_TYPE: "pilot/pkg/xds/lds.go ldsNeedsPush (+ waypointNeedsPush)",
    ROUTE_TYPE: "pilot/pkg/xds/rds.go rdsNeedsPush",
    ADDRESS_TYPE: "pilot/pkg/xds/workload.go WorkloadGenerator.GenerateDeltas "
                  "(AddressesUpdated only)",
    AUTHORIZATION_TYPE: "pilot/pkg/xds/workload.go WorkloadRBACGenerator.GenerateDeltas "
                        "(updated AuthorizationPolicies only)",
}


@dataclass(frozen=True)
class ConfigKey:
    """One changed config, as istiod's model.ConfigKey."""

    kind: str
    namespace: str
    name: str

    @classmethod
    def of(cls, d: Mapping[str, str]) -> ConfigKey:
        return cls(str(d["kind"]), str(d.get("namespace", "")), str(d.get("name", "")))


@dataclass(frozen=True)
class NodeMeta:
    """What the control plane must know of a proxy to decide its pushes (istiod's
    model.Proxy: type, namespace, service targets, SidecarScope)."""

    role: str  # "sidecar", "waypoint", "ztunnel"
    namespace: str = ""
    services: tuple[str, ...] = ()  # hostnames of the services it is an endpoint of
    # Sidecar resource egress hosts ("ns/host", "." = own namespace, "*" = any); empty =
    # no Sidecar resource: the default scope sees every service of the mesh
    egress: tuple[str, ...] = ()

    @classmethod
    def of(cls, d: Mapping[str, object]) -> NodeMeta:
        return cls(str(d.get("role", "")), str(d.get("namespace", "")),
                   tuple(d.get("services") or ()),  # type: ignore[arg-type]
                   tuple(d.get("egress") or ()))  # type: ignore[arg-type]


def egress_sees(meta: NodeMeta, namespace: str, hostname: str) -> bool:
    """Whether a Sidecar resource's egress hosts include a service (pilot/pkg/model/sidecar.go
    hostClassification.Matches, namespace part "." / "*" / name; host "*" or exact, or a
    "*." suffix wildcard)."""
    if not meta.egress:
        return True
    for entry in meta.egress:
        ns, _, host = entry.partition("/")
        if ns == ".":
            ns = meta.namespace
        if ns not in ("*", namespace):
            continue
        if host == "*" or host == hostname or (
                host.startswith("*.") and hostname.endswith(host[1:])):
            return True
    return False


def depends_on(meta: NodeMeta, key: ConfigKey, root_ns: str = ROOT_NAMESPACE) -> bool:
    """SidecarScope.DependsOnConfig (pilot/pkg/model/sidecar.go), for a sidecar: policies
    and other cluster-scoped kinds from its own namespace or the root namespace; services
    and routes when its scope sees the host; kinds unknown to the scope always."""
    if key.kind in CLUSTER_SCOPED:
        return key.namespace in (root_ns, meta.namespace)
    if key.kind not in SIDECAR_SCOPED:
        return True
    if key.kind == "Sidecar":
        return key.namespace == meta.namespace
    # ServiceEntry (name = hostname) and VirtualService (name = the host it routes): in
    # the scope's configDependencies when the egress hosts see the host
    return egress_sees(meta, key.namespace, key.name)


def pushed(meta: NodeMeta, keys: Iterable[ConfigKey], root_ns: str = ROOT_NAMESPACE) -> bool:
    """Whether istiod pushes this proxy for the change (DefaultProxyNeedsPush)."""
    keys = list(keys)
    if not keys:  # "empty changes means all" (ConfigAffectsProxy)
        return True
    if meta.role in ("waypoint", "ztunnel"):
        return True
    if any(depends_on(meta, k, root_ns) for k in keys):
        return True
    # the proxy's own service changed (ServiceTargets)
    return any(k.kind == "ServiceEntry" and k.name in meta.services for k in keys)


def envoy_types(role: str, kinds: set[str]) -> dict[str, str]:
    """CDS/EDS/LDS/RDS for a sidecar or waypoint that is pushed, for the kinds changed."""
    out: dict[str, str] = {}
    # CDS: skipped kinds filtered out; a waypoint is pushed for Address changes; incremental
    # (BuildDeltaClusters) only when every remaining kind is delta-aware
    cds_kinds = kinds - SKIPPED_CDS
    if cds_kinds or (role == "waypoint" and "Address" in kinds):
        delta = bool(cds_kinds) and cds_kinds <= DELTA_CDS and not (
            role == "waypoint" and "Address" in kinds)
        out[CLUSTER_TYPE] = INCREMENTAL if delta else WHOLE
    else:
        out[CLUSTER_TYPE] = SKIP
    eds_kinds = kinds - SKIPPED_EDS
    if eds_kinds:
        out[ENDPOINT_TYPE] = INCREMENTAL if eds_kinds <= {"ServiceEntry"} else WHOLE
    else:
        out[ENDPOINT_TYPE] = SKIP
    lds = kinds - SKIPPED_LDS or (role == "waypoint" and "Address" in kinds)
    out[LISTENER_TYPE] = WHOLE if lds else SKIP
    out[ROUTE_TYPE] = WHOLE if kinds - SKIPPED_RDS else SKIP
    return out


def ztunnel_types(kinds: set[str]) -> dict[str, str]:
    """WDS for a ztunnel: deltas of what changed, nothing for other kinds. Envoy's types
    are not Istio's for this role (our data path): they follow their content."""
    return {ADDRESS_TYPE: INCREMENTAL if "Address" in kinds else SKIP,
            AUTHORIZATION_TYPE: INCREMENTAL if "AuthorizationPolicy" in kinds else SKIP,
            CLUSTER_TYPE: CONTENT, LISTENER_TYPE: CONTENT,
            ENDPOINT_TYPE: CONTENT, ROUTE_TYPE: CONTENT}


@dataclass(frozen=True)
class Plan:
    """One proxy's push for one change: pushed at all, and per type how."""

    pushed: bool
    types: dict[str, str] = field(default_factory=dict)

    def sends(self, type_url: str) -> str:
        return self.types.get(type_url, SKIP) if self.pushed else SKIP


def plan(meta: NodeMeta, keys: Iterable[ConfigKey], root_ns: str = ROOT_NAMESPACE) -> Plan:
    """Istio's decision for one proxy and one (debounced) change."""
    keys = list(keys)
    kinds = {k.kind for k in keys}
    if not pushed(meta, keys, root_ns):
        # our ztunnel data path aside, an unpushed proxy gets nothing
        return Plan(False)
    if meta.role == "ztunnel":
        return Plan(True, ztunnel_types(kinds))
    if not kinds:  # a forced full push: every type whole
        return Plan(True, {t: WHOLE for t in (CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE,
                                              ROUTE_TYPE)})
    return Plan(True, envoy_types(meta.role, kinds))


# --- the experiments' changes as Istio sees them -----------------------------------------------
def change_keys(experiment: str, mode: str, namespace: str, hostname: str,
                policy: str = "") -> list[ConfigKey]:
    """The ConfigKeys istiod would see for one of our experiments: a Kubernetes Service
    (ServiceEntry), a VirtualService on the service's host, an AuthorizationPolicy. In the
    ambient modes the ambient index adds the addresses the change alters (kind Address):
    the new Service (and the workloads it selects), the workloads the policy selects."""
    ambient = mode in ("ambient", "waypoint")
    if experiment == NEW_SERVICE.name:
        keys = [ConfigKey("ServiceEntry", namespace, hostname)]
        return keys + ([ConfigKey("Address", namespace, hostname)] if ambient else [])
    if experiment == L7_ROUTE.name:
        return [ConfigKey("VirtualService", namespace, hostname)]
    if experiment == L4_AUTHZ.name:
        keys = [ConfigKey("AuthorizationPolicy", namespace, policy)]
        return keys + ([ConfigKey("Address", namespace, hostname)] if ambient else [])
    raise ValueError(f"unknown experiment {experiment!r}")


def table(kinds: Iterable[str] = ("ServiceEntry", "VirtualService", "AuthorizationPolicy"),
          ) -> list[dict[str, str]]:
    """The decision for each (kind, role), one row each, with the sources: the table the
    manifest and report carry. Kinds alone (no Address) and the default SidecarScope."""
    rows = []
    names = {CLUSTER_TYPE: "CDS", ENDPOINT_TYPE: "EDS", LISTENER_TYPE: "LDS",
             ROUTE_TYPE: "RDS", ADDRESS_TYPE: "WDS Address", AUTHORIZATION_TYPE: "WDS Authorization"}
    for kind in kinds:
        for role in ("sidecar", "waypoint", "ztunnel"):
            p = plan(NodeMeta(role, "ns"), [ConfigKey(kind, "ns", "h")])
            who = ("every sidecar whose scope depends on it (own or root namespace for "
                   "policies; every sidecar for services and routes without a Sidecar "
                   "resource)" if role == "sidecar" else "every " + role)
            types = {names[t]: v for t, v in p.types.items() if v != CONTENT}
            rows.append({"kind": kind, "role": role, "who": who,
                         **{n: types.get(n, "-") for n in names.values()
                            if (role == "ztunnel") == n.startswith("WDS")},
                         "source": "; ".join([SOURCES["who:sidecar" if role == "sidecar"
                                                      else "who:ambient"]]
                                             + [SOURCES[t] for t, v in p.types.items()
                                                if v != CONTENT])})
    return rows


# --- the same decision at Istio's main branch (istio.io/istio eed52ebb66ad, 2026-08-27), ---
# the istiod the real-istiod sweep builds (bench/istiod). Read at that commit; the differences
# from 1.27.3 above, each with its file:
MAIN_VERSION = "main@eed52ebb66ad"
# pilot/pkg/xds/cds.go skippedCdsConfigs: + TrafficExtension, Endpoints, Address
MAIN_SKIPPED_CDS = SKIPPED_CDS | {"TrafficExtension", "Endpoints", "Address"}
# pilot/pkg/xds/eds.go skippedEdsConfigs: + TrafficExtension, Sidecar, Address
MAIN_SKIPPED_EDS = SKIPPED_EDS | {"TrafficExtension", "Sidecar", "Address"}
# pilot/pkg/xds/lds.go: KubernetesGateway no longer listed; Endpoints and Address skipped
MAIN_SKIPPED_LDS = (SKIPPED_LDS - {"KubernetesGateway"}) | {"Endpoints", "Address"}
# pilot/pkg/xds/rds.go skippedRdsConfigs: + TrafficExtension, Endpoints (Address when scoped)
MAIN_SKIPPED_RDS = SKIPPED_RDS | {"TrafficExtension", "Endpoints", "Address"}
# pilot/pkg/networking/core/cluster.go deltaConfigTypes: + VirtualService, PeerAuthentication,
# Sidecar
MAIN_DELTA_CDS = DELTA_CDS | {"VirtualService", "PeerAuthentication", "Sidecar"}
# pilot/pkg/xds/eds.go canSendPartialFullPushes: every key one of these (1.27: ServiceEntry)
MAIN_EDS_PARTIAL = frozenset({"ServiceEntry", "Endpoints", "DestinationRule",
                              "PeerAuthentication"})
# pilot/pkg/model/sidecar.go: PeerAuthentication moved to the dependency-scoped kinds
MAIN_CLUSTER_SCOPED = (CLUSTER_SCOPED - {"PeerAuthentication"}) | {"TrafficExtension"}
MAIN_SIDECAR_SCOPED = SIDECAR_SCOPED | {"Endpoints", "PeerAuthentication"}
MAIN_SOURCES = {
    "who:sidecar": "pilot/pkg/xds/proxy_dependencies.go proxyDependentOnConfig: with "
                   "AMBIENT_SCOPED_ADDRESS_PUSHES (default true, pilot/pkg/features/ambient.go) "
                   "an Address key pushes only proxies that watch Address (not sidecars)",
    "who:waypoint": "pilot/pkg/xds/xdsgen.go waypointNeedsPush: an Address change reaches a "
                    "waypoint's CDS/EDS/LDS/RDS (whole) only when WaypointsUpdated names it",
}


def _main_pushed(meta: NodeMeta, keys: list[ConfigKey], root_ns: str) -> bool:
    if not keys or meta.role in ("waypoint", "ztunnel"):
        return True  # proxy_dependencies.go ConfigAffectsProxy: still "TODO ambient scoping"
    for k in keys:
        if k.kind == "Address":
            continue  # scoped address pushes: sidecars do not watch Address
        if k.kind in MAIN_CLUSTER_SCOPED:
            if k.namespace in (root_ns, meta.namespace):
                return True
        elif k.kind not in MAIN_SIDECAR_SCOPED:
            return True
        elif k.kind == "Sidecar":
            if k.namespace == meta.namespace:
                return True
        elif egress_sees(meta, k.namespace, k.name):
            return True
    return any(k.kind == "ServiceEntry" and k.name in meta.services for k in keys)


def _attached(meta: NodeMeta, keys: list[ConfigKey]) -> bool:
    """A waypoint named by the change's WaypointsUpdated: a service address (name NS/HOST)
    in the waypoint's own namespace, the namespace using it (istio.io/use-waypoint; a
    workload address does not, the waypoint being for services)."""
    return meta.role == "waypoint" and any(
        k.kind == "Address" and "/" in k.name and not k.name.startswith("Kubernetes//")
        and k.name.split("/", 1)[0] == meta.namespace for k in keys)


def plan_main(meta: NodeMeta, keys: Iterable[ConfigKey],
              root_ns: str = ROOT_NAMESPACE) -> Plan:
    """The decision of istiod at Istio's main branch (MAIN_VERSION) for one proxy and change.
    Address keys are named as istiod's ambient index names them: NS/HOST for a service,
    Kubernetes//Pod/NS/NAME for a workload (pilot/pkg/serviceregistry/ambient)."""
    keys = list(keys)
    if not _main_pushed(meta, keys, root_ns):
        return Plan(False)
    kinds = {k.kind for k in keys}
    if meta.role == "ztunnel" or not kinds:
        return plan(meta, keys, root_ns)  # WDS deltas, or a forced full push: as 1.27.3
    if _attached(meta, keys):
        return Plan(True, {t: WHOLE for t in (CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE)})
    out: dict[str, str] = {}
    cds = kinds - MAIN_SKIPPED_CDS
    # a waypoint's clusters are inbound-vip|..., and BuildDeltaClusters always rebuilds every
    # inbound cluster (pilot/pkg/networking/core/cluster.go): whole for a waypoint
    delta = cds <= MAIN_DELTA_CDS and meta.role != "waypoint"
    out[CLUSTER_TYPE] = (INCREMENTAL if delta else WHOLE) if cds else SKIP
    eds = kinds - MAIN_SKIPPED_EDS
    # a waypoint's requests are never filtered: the partial check still sees Address
    seen = kinds if meta.role == "waypoint" else kinds - {"Address"}
    out[ENDPOINT_TYPE] = (INCREMENTAL if seen <= MAIN_EDS_PARTIAL else WHOLE) if eds else SKIP
    out[LISTENER_TYPE] = WHOLE if kinds - MAIN_SKIPPED_LDS else SKIP
    # a waypoint's routes are inline in its listeners (pilot/pkg/networking/core/waypoint.go):
    # it subscribes no RDS, so none is sent
    rds = kinds - MAIN_SKIPPED_RDS and meta.role != "waypoint"
    out[ROUTE_TYPE] = WHOLE if rds else SKIP
    return Plan(True, out)
