"""The config changes the harness pushes (a scenario's `experiments`), in one registry.

Their names are written here and in the scenario files only: the local control plane's
push table (bench/controlplane/pushrules.py), the local measurement (bench/experiments.py),
the kube backends' objects (bench/backends/kube/push.py), the real-istiod sweep
(bench/istiod/changes.py) and the analysis ask this module what a change is.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.errors import UserError


@dataclass(frozen=True)
class Change:
    """One config change: its name, what it does, and what the analysis needs to know."""

    name: str
    description: str
    xds: str  # the Envoy config it changes first: "cds" (a cluster), "rds", "lds" (a listener)
    l7: bool  # an L7 change: in ambient mode only a waypoint holds L7 config
    adds_policy: bool  # adds an authorization policy (counted by claim (c))


NEW_SERVICE = Change("new_service", "a new Service appears in the namespace (selecting "
                     "existing pods)", "cds", l7=False, adds_policy=False)
L7_ROUTE = Change("l7_route", "an L7 route of one service changes (its timeout), as a "
                  "VirtualService would", "rds", l7=True, adds_policy=False)
L4_AUTHZ = Change("l4_authz", "an L4 AuthorizationPolicy appears in the namespace, denying "
                  "one identity access to the first service's workloads", "lds", l7=False,
                  adds_policy=True)
# the real-istiod sweep's own: a policy that selects one workload of the last namespace
L4_AUTHZ_ONE = Change("l4_authz_one", "an AuthorizationPolicy selecting one workload of the "
                      "last namespace (real istiod only)", "lds", l7=False, adds_policy=True)

CHANGES = {c.name: c for c in (NEW_SERVICE, L7_ROUTE, L4_AUTHZ)}  # what a scenario can name
ISTIOD_CHANGES = {**CHANGES, L4_AUTHZ_ONE.name: L4_AUTHZ_ONE}
EXPOSURE = "exposure"  # the step before the changes: what each proxy holds


def get(name: str, known: dict[str, Change] = CHANGES) -> Change:
    """The change called `name`; UserError naming the known ones otherwise."""
    try:
        return known[name]
    except KeyError:
        raise UserError(f"unknown experiment {name!r}",
                        hint="experiments are: " + ", ".join(known)) from None
