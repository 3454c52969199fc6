"""The config changes of the real-istiod experiments, as the Kubernetes and Istio objects a
user would apply (and, for a new Service, the EndpointSlice its controller would write):

- new_service: a Service `svc-new` in the first namespace selecting the first service's
  pods (+ its EndpointSlice);
- l7_route: a VirtualService on the first service's host with a request timeout (the
  kind the local backend's push table keys, pushrules.change_keys);
- l4_authz: an AuthorizationPolicy in the first namespace denying an identity nobody has,
  selecting the first service's pods (the local backend's and kube backends' change);
- l4_authz_one: the same policy in the LAST namespace, selecting ONE workload (by its
  per-pod label) in a namespace of many: a sidecar-mode mesh pushes it to that namespace's
  sidecars only (SidecarScope.DependsOnConfig scopes policies by namespace), ambient to
  every ztunnel.
"""

from __future__ import annotations

from typing import Any

from bench.changes import ISTIOD_CHANGES, L4_AUTHZ, L4_AUTHZ_ONE, L7_ROUTE, NEW_SERVICE
from bench.errors import UserError
from bench.istiod import cluster
from bench.istiod.cluster import PodRef, Shape

EXPERIMENTS = tuple(ISTIOD_CHANGES)
INTRUDER = "cluster.local/ns/intruder/sa/default"  # as bench/backends/kube/push.py
Obj = dict[str, Any]


def _deny(name: str, namespace: str, selector: dict[str, str], shape: Shape) -> Obj:
    return {"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
            "metadata": {"name": name, "namespace": namespace, "labels": shape.labels()},
            "spec": {"selector": {"matchLabels": selector}, "action": "DENY",
                     "rules": [{"from": [{"source": {"principals": [INTRUDER]}}]}]}}


def objects(experiment: str, shape: Shape, refs: list[PodRef]) -> list[Obj]:
    """The objects that make the change, in the order to create them."""
    apps = [r for r in refs if r.service != cluster.WAYPOINT]
    first = apps[0]
    ns0 = first.namespace
    if experiment == NEW_SERVICE.name:
        members = [r for r in apps if r.service == first.service]
        return [{"apiVersion": "v1", "kind": "Service",
                 "metadata": {"name": "svc-new", "namespace": ns0, "labels": shape.labels()},
                 "spec": {"selector": {"app": first.service},
                          "ports": [{"name": "http", "port": cluster.SVC_PORT,
                                     "targetPort": cluster.APP_PORT}]}},
                cluster.endpoint_slice(shape, "svc-new", ns0, members)]
    if experiment == L7_ROUTE.name:
        host = f"{first.service}.{ns0}.svc.cluster.local"
        return [{"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
                 "metadata": {"name": f"{first.service}-timeout", "namespace": ns0,
                              "labels": shape.labels()},
                 "spec": {"hosts": [host],
                          "http": [{"timeout": "7.5s",
                                    "route": [{"destination": {"host": host}}]}]}}]
    if experiment == L4_AUTHZ.name:
        return [_deny("deny-intruder", ns0, {"app": first.service}, shape)]
    if experiment == L4_AUTHZ_ONE.name:
        last = apps[-1]
        target = next(r for r in apps if r.namespace == last.namespace)
        return [_deny("deny-intruder-one", target.namespace,
                      {cluster.POD_LABEL: target.name}, shape)]
    raise UserError(f"unknown experiment {experiment!r}",
                    hint="experiments are: " + ", ".join(EXPERIMENTS))


def change_keys(experiment: str, mode: str, refs: list[PodRef]) -> list[Any]:
    """The ConfigKeys our push table (bench.controlplane.pushrules) predicts istiod sees."""
    from bench.controlplane import pushrules

    apps = [r for r in refs if r.service != cluster.WAYPOINT]
    first = apps[0]
    host = f"{first.service}.{first.namespace}.svc.cluster.local"
    if experiment == NEW_SERVICE.name:
        return pushrules.change_keys(NEW_SERVICE.name, mode, first.namespace,
                                     f"svc-new.{first.namespace}.svc.cluster.local")
    if experiment == L7_ROUTE.name:
        return pushrules.change_keys(L7_ROUTE.name, mode, first.namespace, host)
    if experiment == L4_AUTHZ.name:
        return pushrules.change_keys(L4_AUTHZ.name, mode, first.namespace, host,
                                     "deny-intruder")
    last = next(r for r in apps if r.namespace == apps[-1].namespace)
    return pushrules.change_keys(L4_AUTHZ.name, mode, last.namespace,
                                 f"{last.service}.{last.namespace}.svc.cluster.local",
                                 "deny-intruder-one")


def main_keys(experiment: str, mode: str, refs: list[PodRef]) -> list[Any]:
    """The ConfigKeys the measured istiod (Istio main) sees, named as its ambient index names
    Address keys (NS/HOST for a service, Kubernetes//Pod/NS/NAME for a workload), for
    pushrules.plan_main."""
    from bench.controlplane.pushrules import ConfigKey

    apps = [r for r in refs if r.service != cluster.WAYPOINT]
    first = apps[0]
    ns0 = first.namespace
    ambient = mode in ("ambient", "waypoint")

    def pods_of(selected: list[PodRef]) -> list[ConfigKey]:
        return [ConfigKey("Address", "", f"Kubernetes//Pod/{r.namespace}/{r.name}")
                for r in selected] if ambient else []
    members = [r for r in apps if r.service == first.service]
    if experiment == NEW_SERVICE.name:
        host = f"svc-new.{ns0}.svc.cluster.local"
        return [ConfigKey("ServiceEntry", ns0, host),
                *([ConfigKey("Address", "", f"{ns0}/{host}")] if ambient else []),
                *pods_of(members)]
    if experiment == L7_ROUTE.name:
        return [ConfigKey("VirtualService", ns0, f"{first.service}.{ns0}.svc.cluster.local")]
    if experiment == L4_AUTHZ.name:
        return [ConfigKey("AuthorizationPolicy", ns0, "deny-intruder"), *pods_of(members)]
    last_ns = apps[-1].namespace
    target = next(r for r in apps if r.namespace == last_ns)
    return [ConfigKey("AuthorizationPolicy", last_ns, "deny-intruder-one"), *pods_of([target])]
