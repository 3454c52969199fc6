"""What every backend offers the runner: build a mode, say where load goes, tear down;
and, typed, the optional abilities some backends have (`Abilities`), declared by each
backend once, so that the runner and the experiments never probe a backend by name."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from bench.mesh import Mesh

if TYPE_CHECKING:
    from bench.outcomes import PushOutcome
    from bench.store import Cell, Sample


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

    def abilities(self) -> Abilities:
        """What else this backend can do (declared, not probed)."""

    def teardown(self) -> None:
        """Remove everything provision created; safe to call twice or after a failure."""

    def manifest_facts(self) -> dict[str, Any]:
        """What the run's manifest records about this backend when the run starts: "envoy"
        (the Envoy version, or where it will be found), "simplifications" (how it departs
        from Istio; empty for a real Istio), and any other top-level facts."""

    def deployment_facts(self, key: str, info: dict[str, Any],
                         manifest: dict[str, Any]) -> dict[str, Any]:
        """The manifest fields to update once deployment `key` ("r<rep>-<mode>") is up,
        given its `info` and the manifest as it stands; {} when nothing is recorded."""


# ---- optional abilities ----------------------------------------------------------------------
class ServesXds(Protocol):
    """The local backend: the harness's own xDS control plane serves every proxy; a config
    change is rendered by the harness and pushed by that control plane (bench/experiments.py
    measures it from the control plane's accounting, Envoy's counters and the ztunnel WDS
    client's ACKs)."""

    controlplane: Any  # a started bench.controlplane.client.ControlPlane, or None
    configs: dict[str, Any]  # proxy name -> the config it was given (ProxyConfig)

    def reconfigure(self, mesh: Mesh, change: list[dict[str, str]] | None = None,
                    ) -> dict[str, Any]: ...

    def wds_state(self) -> dict[str, Any]: ...

    def proxy_pids(self) -> dict[str, int]: ...

    def stats(self, name: str, filter: str = "") -> dict[str, float]: ...

    def config_dump_bytes(self, name: str) -> int: ...


class PushesThroughIstiod(Protocol):
    """The kube backends: a config change is applied to the cluster and measured from
    istiod's metrics and /debug/syncz (bench/backends/kube/push.py)."""

    def push_experiment(self, mesh: Mesh, experiment: str, timeout_s: float,
                        wire: Any = None) -> PushOutcome: ...

    def controlplane_pid(self) -> int | None:
        """istiod's host PID when the host sees the pods (the kernel view of pushes)."""


class LoadHandle(Protocol):
    """A running load generator of one cell (bench.load.driver.LocustRun, or its
    in-cluster twin)."""

    @property
    def pid(self) -> int: ...

    def check(self) -> str: ...

    def wait(self) -> int: ...

    def stop(self) -> None: ...

    def hdr_paths(self) -> list[Path]: ...

    cpu_missing: str  # why cpu_percent_max found nothing

    def cpu_percent_max(self, t0: float, t1: float) -> float | None: ...


class RunsLoadInCluster(Protocol):
    """Locust runs in the cluster's pods (the host cannot reach the pods' network)."""

    def start_load(self, *, cell: str, target_rps: int, duration_s: float, hdr_out: Path,
                   log_path: Path, timeout_s: float) -> Any: ...


class ReadsApiResources(Protocol):
    """CPU and memory from the Kubernetes metrics API, where the host sampler sees none of
    the pods' processes."""

    def window_resources(self, cell: Cell) -> Sequence[Sample]: ...


class HoldsLock(Protocol):
    """One run at a time on this host's backend (the local backend's lock file)."""

    def hold_lock(self, run_id: str, wait_s: float = 0.0) -> None: ...

    def release_lock(self) -> None: ...


class ProvesPath(Protocol):
    """Counters from the proxies that show which path requests took."""

    def path_counters(self, deployment: Deployment) -> dict[str, float]: ...


class ClusterOnHost(Protocol):
    """The cluster's nodes run on this host (kind): their processes (kubelet, the API
    server, every pod) are the run's own, not a neighbour's, for the machine's noise."""

    def cluster_cgroups(self) -> tuple[str, ...]: ...


@dataclass(frozen=True)
class Abilities:
    """The optional abilities of one backend, each the backend itself or None."""

    xds: ServesXds | None = None
    istiod: PushesThroughIstiod | None = None
    in_cluster_load: RunsLoadInCluster | None = None
    api_resources: ReadsApiResources | None = None
    lock: HoldsLock | None = None
    path: ProvesPath | None = None
    cluster_on_host: ClusterOnHost | None = None
