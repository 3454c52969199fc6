"""Config-push experiments on real Istio (kind and existing clusters).

The same three changes as the local backend, as Istio objects in the run's namespace
(labelled with the run, so teardown removes them with the namespace):
- new_service: a Service `svc-new` selecting the first service's pods;
- l7_route: an HTTPRoute (Gateway API, GAMMA: parentRef the Service) with a request timeout
  for the first service, which Istio programs into sidecars and into the waypoint;
- l4_authz: an AuthorizationPolicy denying an identity nobody has, selecting the first
  service's pods (sidecars enforce it; every ztunnel receives it).

Measured from istiod (metrics deltas over the experiment: `pilot_xds_pushes` by type,
`pilot_xds_config_size_bytes`, `pilot_proxy_convergence_time`, `pilot_total_xds_rejects`)
and from `/debug/syncz` (per proxy and type, the nonce sent and the nonce ACKed), polled until
every proxy whose nonce moved has ACKed it and nothing moved for QUIET_S, or the timeout.
Only the run's proxies count (its namespace's sidecars and waypoint, its ztunnels): syncz
lists every proxy connected to istiod, other namespaces' and gateways' included.
istiod's convergence metric stops at *send*; the ACK time here is the poll that first saw
the ACK (resolution POLL_S), from the apply call. The kernel view (BCC on pilot-discovery's
host PID) counts every socket istiod wrote to, its Kubernetes API watches included.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable, Mapping
from typing import Any

from bench.backends.kube import manifests
from bench.changes import L4_AUTHZ, L7_ROUTE, NEW_SERVICE, get
from bench.mesh import Mesh
from bench.outcomes import PushOutcome
from bench.probes.pushwire import KernelPush

POLL_S = 0.2
QUIET_S = 2.0  # istiod debounces 100 ms by default, up to 10 s under a burst of changes
INTRUDER = "cluster.local/ns/intruder/sa/default"

Obj = dict[str, Any]


def experiment_objects(mesh: Mesh, experiment: str, namespace: str,
                       labels: Mapping[str, str]) -> list[Obj]:
    """The Istio or Kubernetes objects that make the change."""
    first = mesh.services[0]
    md = {"namespace": namespace, "labels": dict(labels)}
    if experiment == NEW_SERVICE.name:
        return [{"apiVersion": "v1", "kind": "Service",
                 "metadata": {"name": "svc-new", **md},
                 "spec": {"selector": {"app": first.name},
                          "ports": [{"name": "http", "port": first.port,
                                     "targetPort": first.target_port}]}}]
    if experiment == L7_ROUTE.name:
        return [{"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
                 "metadata": {"name": f"{first.name}-timeout", **md},
                 "spec": {"parentRefs": [{"group": "", "kind": "Service", "name": first.name,
                                          "port": first.port}],
                          "rules": [{"backendRefs": [{"name": first.name, "port": first.port}],
                                     "timeouts": {"request": "7500ms"}}]}}]
    if experiment == L4_AUTHZ.name:
        return [{"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
                 "metadata": {"name": "deny-intruder", **md},
                 "spec": {"selector": {"matchLabels": {"app": first.name}}, "action": "DENY",
                          "rules": [{"from": [{"source": {"principals": [INTRUDER]}}]}]}}]
    get(experiment)  # raises, naming the known ones
    raise AssertionError(f"experiment {experiment!r} has no objects on the kube backends")


# Short names of the xDS types (pkg/model/xds.go), as in the SyncStatus field names.
TYPE_NAMES = {
    "type.googleapis.com/envoy.config.cluster.v3.Cluster": "cluster",
    "type.googleapis.com/envoy.config.listener.v3.Listener": "listener",
    "type.googleapis.com/envoy.config.route.v3.RouteConfiguration": "route",
    "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment": "endpoint",
    "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig": "extensionconfig",
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret": "secret",
    "type.googleapis.com/istio.workload.Address": "address",
    "type.googleapis.com/istio.workload.Workload": "workload",
    "type.googleapis.com/istio.security.Authorization": "authorization",
}
_TOP_LEVEL = ("cluster", "listener", "route", "endpoint", "extensionconfig")


def type_name(type_url: str) -> str:
    return TYPE_NAMES.get(type_url, type_url.rsplit("/", 1)[-1])


def parse_syncz(text: str, keep: Callable[[str], bool] = lambda proxy: True
                ) -> dict[str, dict[str, tuple[str, str]]]:
    """istiod /debug/syncz -> proxy -> type -> (sent nonce, acked nonce), for the proxies
    `keep` accepts.

    The document is a JSON array of SyncStatus (pilot/pkg/xds/debug.go, Syncz). Its
    `resources` map holds every watched type URL with {sent, acked}: the only place a
    ztunnel's Address and Authorization nonces appear. The top-level <type>_sent and
    <type>_acked fields cover CDS, LDS, RDS, EDS and ECDS only, and are read only for an
    entry without `resources` (an istiod older than the map)."""
    out: dict[str, dict[str, tuple[str, str]]] = {}
    for entry in json.loads(text or "[]") or []:
        proxy = str(entry.get("proxy", ""))
        if not proxy or not keep(proxy):
            continue
        types: dict[str, tuple[str, str]] = {}
        resources = entry.get("resources") or {}
        for url, st in resources.items():
            types[type_name(url)] = (str(st.get("sent") or ""), str(st.get("acked") or ""))
        if not resources:
            for t in _TOP_LEVEL:
                if entry.get(f"{t}_sent") or entry.get(f"{t}_acked"):
                    types[t] = (str(entry.get(f"{t}_sent") or ""),
                                str(entry.get(f"{t}_acked") or ""))
        out[proxy] = types
    return out


def metric_deltas(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, float]:
    """Per istiod sample, after - before (counters and histogram sums and counts)."""
    return {k: after[k] - before.get(k, 0.0) for k in after if after[k] != before.get(k, 0.0)}


def _family(deltas: Mapping[str, float], name: str) -> float:
    return sum(v for k, v in deltas.items() if k == name or k.startswith(name + "{"))


def run(backend: Any, mesh: Mesh, experiment: str, timeout_s: float, wire: Any,
        fetch_syncz: Callable[[], str], clock: Any,
        keep: Callable[[str], bool] = lambda proxy: True) -> Any:
    """Apply the change and watch istiod until every moved proxy `keep` accepts ACKed;
    a PushOutcome."""

    before = backend.istiod_metrics()
    sync0 = parse_syncz(fetch_syncz(), keep)
    if wire is not None:
        wire.reset()
    labels = manifests.run_labels(backend.run_id, mesh.mode)
    t0 = clock.monotonic()
    for obj in experiment_objects(mesh, experiment, backend.namespace, labels):
        backend.kube.apply(obj)
    acked_at: dict[str, float] = {}
    moved: set[str] = set()
    last_change = clock.monotonic()
    state = sync0
    while True:
        clock.sleep(POLL_S)
        now = clock.monotonic()
        state = parse_syncz(fetch_syncz(), keep)
        for proxy, types in state.items():
            old = sync0.get(proxy, {})
            changed = any(sent and sent != old.get(t, ("", ""))[0]
                          for t, (sent, _) in types.items())
            if changed and proxy not in moved:
                moved.add(proxy)
                last_change = now
            if proxy in moved and proxy not in acked_at and all(
                    sent == acked for sent, acked in types.values()):
                acked_at[proxy] = now
                last_change = now
        done = moved and set(acked_at) == moved and now - last_change >= QUIET_S
        if done or now - t0 >= timeout_s or (not moved and now - t0 >= QUIET_S * 5):
            break
    after = backend.istiod_metrics()
    deltas = metric_deltas(before, after)
    stragglers = {p: {t: f"sent {s}, acked {a}" for t, (s, a) in state.get(p, {}).items()
                      if s != a} for p in moved - set(acked_at)}
    kernel = KernelPush.of(wire.read(), [], wire.overflowed()) if wire is not None else None
    conv = {p: (at - t0) * 1000.0 for p, at in acked_at.items()}
    istiod = {
        "pushes": _family(deltas, "pilot_xds_pushes"),
        "config_bytes": _family(deltas, "pilot_xds_config_size_bytes_sum"),
        "convergence_to_send_sum_s": _family(deltas, "pilot_proxy_convergence_time_sum"),
        "convergence_to_send_count": _family(deltas, "pilot_proxy_convergence_time_count"),
        "rejects": _family(deltas, "pilot_total_xds_rejects"),
    }
    return PushOutcome(
        experiment=experiment, mode=mesh.mode, proxies=tuple(sorted(state)),
        updated=tuple(sorted(moved)), converge_ms=conv,
        nacks=((f"istiod counted {istiod['rejects']:.0f} rejected configs",)
               if istiod["rejects"] > 0 else ()),
        stragglers=stragglers, kernel=kernel, istiod=istiod, view="istiod")


def summary(outcome: Any) -> dict[str, float]:
    """A few figures for the progress line and tests."""
    conv = list(outcome.converge_ms.values())
    return {"updated": len(outcome.updated), "acked": len(conv),
            "ack_p50_ms": statistics.median(conv) if conv else 0.0}
