"""What every backend offers the runner: build a mode, say where load goes, tear down."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from bench.mesh import Mesh


@dataclass(frozen=True)
class ProcessRef:
    """A process of the deployment the probes should watch."""

    pid: int
    role: str  # sidecar, ztunnel, waypoint, control-plane, app, loadgen
    entity: str
    pod: str = ""
    node: str = ""
    namespace: str = ""
    # the program, where a role has several per proxy: "envoy" and "pilot-agent" for an
    # Istio sidecar or waypoint; only the Envoy carries traffic (the hop probe's target)
    process: str = ""


@dataclass
class Deployment:
    mesh: Mesh
    load_netns: str | None  # where the load generator runs (inside the mesh)
    url: str  # what it calls
    processes: list[ProcessRef] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)


class Backend(Protocol):
    name: str

    def preflight(self) -> None:
        """Raise PrerequisiteError naming what is missing and how to fix it."""

    def plan(self, mode: str) -> list[str]:
        """Everything a run of `mode` would create, in order, without creating it."""

    def provision(self, mode: str) -> Deployment:
        """Build the mode and wait until a request crosses the full path."""

    def check(self, deployment: Deployment) -> list[str]:
        """Reasons the deployment is broken now (a proxy died); empty when healthy."""

    def path_counters(self, deployment: Deployment) -> dict[str, float]:
        """Counters from the proxies that prove which path requests took."""

    def teardown(self) -> None:
        """Remove everything provision created; safe to call twice or after a failure."""
