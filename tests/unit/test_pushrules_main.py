"""pushrules.plan_main, our reading of the istiod the real-istiod sweep builds (Istio main at
eed52ebb66ad), beside plan (1.27.3): each difference with the file it comes from. The
system test (tests/system/test_istiod.py) holds plan_main against that istiod itself."""

from __future__ import annotations

from bench.controlplane.pushrules import (
    INCREMENTAL,
    SKIP,
    WHOLE,
    ConfigKey,
    NodeMeta,
    plan,
    plan_main,
)
from bench.controlplane.resources import (
    CLUSTER_TYPE as CDS,
)
from bench.controlplane.resources import (
    ENDPOINT_TYPE as EDS,
)
from bench.controlplane.resources import (
    LISTENER_TYPE as LDS,
)
from bench.controlplane.resources import (
    ROUTE_TYPE as RDS,
)

SIDE = NodeMeta("sidecar", "a", ("svc-0.a.svc.cluster.local",))
OTHER_NS = NodeMeta("sidecar", "b")
WP_A, WP_B = NodeMeta("waypoint", "a"), NodeMeta("waypoint", "b")
POD = ConfigKey("Address", "", "Kubernetes//Pod/a/svc-0-0")


def test_scoped_address_pushes_skip_sidecars() -> None:
    """proxy_dependencies.go: an Address key alone no longer reaches a sidecar (1.27: it is
    unknown to the scope, so every sidecar was pushed)."""
    assert not plan_main(OTHER_NS, [POD]).pushed
    assert plan(OTHER_NS, [ConfigKey("Address", "a", "h")]).pushed


def test_selector_policy_reaches_its_namespace_only() -> None:
    keys = [ConfigKey("AuthorizationPolicy", "a", "p"), POD]
    p = plan_main(SIDE, keys)
    assert p.pushed and p.sends(LDS) == WHOLE and p.sends(CDS) == SKIP
    assert not plan_main(OTHER_NS, keys).pushed
    # a waypoint is pushed for every change (ConfigAffectsProxy's TODO), LDS only here
    assert plan_main(WP_B, keys).types == {CDS: SKIP, EDS: SKIP, LDS: WHOLE, RDS: SKIP}


def test_virtual_service_is_delta_for_sidecars_whole_for_waypoints() -> None:
    """cluster.go deltaConfigTypes gained VirtualService; a waypoint's inbound-vip clusters
    are always rebuilt, and its routes are inline (no RDS)."""
    keys = [ConfigKey("VirtualService", "a", "svc-0.a.svc.cluster.local")]
    assert plan_main(SIDE, keys).sends(CDS) == INCREMENTAL
    assert plan(SIDE, keys).sends(CDS) == WHOLE
    assert plan_main(WP_A, keys).types == {CDS: WHOLE, EDS: SKIP, LDS: WHOLE, RDS: SKIP}


def test_new_service_reaches_its_waypoint_whole_others_partly() -> None:
    """xdsgen.go waypointNeedsPush: the waypoint the change names (its namespace's) gets
    CDS, EDS and LDS whole; another namespace's waypoint sees the Service's key only."""
    keys = [ConfigKey("ServiceEntry", "a", "svc-new.a.svc.cluster.local"),
            ConfigKey("Address", "", "a/svc-new.a.svc.cluster.local"), POD]
    assert plan_main(WP_A, keys).types == {CDS: WHOLE, EDS: WHOLE, LDS: WHOLE}
    other = plan_main(WP_B, keys)
    assert other.sends(CDS) == WHOLE and other.sends(EDS) == WHOLE  # Address seen by EDS
    side = plan_main(OTHER_NS, keys)
    assert side.sends(CDS) == INCREMENTAL and side.sends(EDS) == INCREMENTAL
