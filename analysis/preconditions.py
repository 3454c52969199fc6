"""What a run must have for a claim to be testable in it (issue #22).

A claim about how costs grow with pods cannot be answered by a topology where pods and
nodes are equally many, nor a claim about ztunnel's memory by a backend whose ztunnel role
is an Envoy. When a run lacks what a claim needs, its verdict is "not testable here", with
the reason and the target that does test it, instead of a verdict decided by the topology.

Each rule reads the run's own record: the scenario (the mesh model `bench.mesh.build`
makes of it, and the changes its experiments apply on top, `bench.experiments.changed_mesh`)
and the backend's stated stand-ins (the manifest's `simplifications`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache

from analysis.rundata import Run
from bench.changes import CHANGES
from bench.errors import BenchError
from bench.experiments import changed_mesh
from bench.mesh import build
from bench.scenario import from_dict

NOT_TESTABLE = "not testable here"
# the local backend's stand-in, as its manifest states it (bench/backends/local/backend.py)
ENVOY_ZTUNNEL = "the ztunnel role is an Envoy"
FANOUT_TARGETS = ("make bench-fanout (up to 501 proxies) or make bench-fanout-istiod (real "
                  "istiod, up to 10,000 pods)")


@dataclass(frozen=True)
class Setup:
    """What the run's mesh gives the claims (from its scenario)."""

    sidecars: int  # the sidecar mode's proxies (one per pod)
    ztunnels: int  # the ambient modes' node proxies
    services: int
    policies: int  # after the run's changes
    policy_workloads: int  # distinct workloads the policies select
    real_ztunnel: bool
    waypoint_mode: bool

    @property
    def pods_exceed_nodes(self) -> bool:
        return self.sidecars > self.ztunnels


@cache
def _setup(scenario_json: str, envoy_ztunnel: bool) -> Setup | None:
    try:
        s = from_dict(json.loads(scenario_json), source="the run's manifest")
        side, amb = build(s, "sidecar"), build(s, "ambient")
        mesh = amb
        for name in s.experiments:
            mesh = changed_mesh(mesh, name)
    except (BenchError, ValueError, KeyError, TypeError):
        return None  # a scenario this version cannot rebuild: no rule applied
    return Setup(sidecars=len(side.proxies_of("sidecar")), ztunnels=len(amb.proxies_of("ztunnel")),
                 services=len(mesh.services), policies=len(mesh.policies),
                 policy_workloads=len({(p.namespace, p.selector) for p in mesh.policies}),
                 real_ztunnel=not envoy_ztunnel, waypoint_mode="waypoint" in s.modes)


def setup_of(run: Run) -> Setup | None:
    """The run's setup, None when its scenario cannot be rebuilt (then every claim is
    judged on its data alone, as before this rule)."""
    scenario = run.scenario
    if "topology" not in scenario:
        return None  # not a whole scenario (a fabricated run): nothing to judge it by
    stand_in = any(ENVOY_ZTUNNEL in str(x) for x in run.manifest.get("simplifications") or [])
    return _setup(json.dumps(scenario, sort_keys=True), stand_in)


def memory(setup: Setup | None) -> str:
    """Data-plane memory at one size, ambient or waypoint against sidecar."""
    if setup is not None and not setup.real_ztunnel:
        return (f"{ENVOY_ZTUNNEL} on this backend, so this would weigh Envoys against Envoys; "
                "tested by the pod-count slope (make bench-scaling) or a real ztunnel "
                "(the kind backend)")
    return ""


def fanout(setup: Setup | None, mode: str, experiment: str) -> str:
    """Bytes a change pushes, ambient or waypoint against sidecar."""
    if setup is None:
        return ""
    change = CHANGES.get(experiment)
    if change is not None and change.l7 and mode == "ambient":
        return ("ambient without a waypoint holds no L7 route: the change has nothing to "
                "reach there (the waypoint mode tests L7 routes)")
    return _scale(setup, "a change's fan-out over pods and over nodes")


def exposure(setup: Setup | None) -> str:
    """Config held by all of a mode's proxies."""
    return _scale(setup, "config held per pod and per node") if setup is not None else ""


def policies(setup: Setup | None) -> str:
    """Whether every sidecar holds every policy."""
    if setup is None:
        return ""
    if setup.policy_workloads < 2:
        return (f"{setup.policies} polic{'y' if setup.policies == 1 else 'ies'} selecting "
                f"{setup.policy_workloads} workload{'s' * (setup.policy_workloads != 1)}: "
                "no sidecar can hold fewer than all of them; needs at least 2 policies "
                f"selecting different workloads, as in {FANOUT_TARGETS.split(' or ')[1]}")
    return ""


def _scale(setup: Setup, what: str) -> str:
    if not setup.pods_exceed_nodes:
        return (f"{setup.sidecars} sidecars against {setup.ztunnels} ztunnels (no more pods "
                f"than nodes): {what} cannot differ; tested by {FANOUT_TARGETS}")
    if setup.services < 2:
        return (f"one service: {what} cannot differ by service; tested by {FANOUT_TARGETS}")
    return ""
