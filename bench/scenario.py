"""Scenario files: YAML -> frozen dataclasses, unknown keys rejected, cross-field checks, hash.

A scenario names everything a run needs: backend, topology, workload, modes, load
levels, timing, repetitions and probes. Every error names the file and the key path.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import yaml

from bench.errors import ScenarioError
from bench.paths import workloads

Mode = Literal["baseline", "sidecar", "ambient", "waypoint"]
MODES: tuple[Mode, ...] = ("baseline", "sidecar", "ambient", "waypoint")
MESH_MODES: tuple[Mode, ...] = MODES[1:]  # the modes with a mesh (every mode but baseline)
BACKENDS = ("local", "kind", "cluster")
SCENARIO_DIR = workloads() / "scenarios"


@dataclass(frozen=True)
class Topology:
    nodes: int = 2
    services: int = 1
    pods_per_service: int = 1
    client_node: int = 0
    server_node: int = 1
    waypoint_node: int = 1
    namespace: str = "bench"


@dataclass(frozen=True)
class Workload:
    protocol: Literal["http/1.1"] = "http/1.1"
    payload_bytes: int = 1024
    server_delay_ms: float = 0.0


@dataclass(frozen=True)
class Load:
    levels: tuple[int, ...] = (200, 500)
    connections: int = 4
    processes: int = 1
    # when each user sends (workloads/locustfiles/arrivals.py): uniform = fixed rate with the
    # users' schedules spread evenly over the period; poisson; burst = all users on one phase
    arrivals: Literal["uniform", "poisson", "burst"] = "uniform"
    # after each cell's window, the independent reference client (mb-refclient) at the same
    # rate and connections: `meshbench calibrate` turns it on
    reference: bool = False


@dataclass(frozen=True)
class Timing:
    warmup_s: float = 3.0
    window_s: float = 10.0
    ready_timeout_s: float = 30.0
    # the idle footprint window after readiness: long enough for two resource samples of
    # every process (at hundreds of processes one sampler pass takes a while)
    idle_s: float = 3.0
    # a window that lost more than this share of the machine's CPU to steal or to other
    # processes is contaminated (bench/probes/noise.py). Chosen from the curve in
    # benchmarks/results/noise-threshold.json (docs/noise.md): p99 rises by 1.3-2x from
    # 2 % on in every mode, while quiet windows stay under 1 %
    noise_threshold: float = 0.02
    # re-run a contaminated cell up to this many times (every attempt is recorded)
    rerun_noisy: int = 0


@dataclass(frozen=True)
class ResourceProbe:
    enabled: bool = True
    interval_s: float = 1.0
    pss_interval_s: float = 5.0


@dataclass(frozen=True)
class HopProbe:
    enabled: bool = True
    # run the first cell of each proxied mode again without the probe, to measure its cost
    overhead_check: bool = True


@dataclass(frozen=True)
class KernelLatencyProbe:
    """End-to-end latency timed in the kernel at the load generator's sockets (BCC); the
    headline latency when it runs, Locust's own timing otherwise."""

    enabled: bool = True


@dataclass(frozen=True)
class Probes:
    resources: ResourceProbe = field(default_factory=ResourceProbe)
    hops: HopProbe = field(default_factory=HopProbe)
    kernel_latency: KernelLatencyProbe = field(default_factory=KernelLatencyProbe)


@dataclass(frozen=True)
class Sweep:
    """Sizes for `meshbench sweep`: one run per value (per pair of values when both are
    given: services x pods_per_service), modes interleaved inside each."""

    pods_per_service: tuple[int, ...] = ()
    services: tuple[int, ...] = ()


@dataclass(frozen=True)
class Cluster:
    """Where `backend: cluster` runs: an existing kubeconfig context. MB_CONTEXT (or
    `make ... CONTEXT=name`) overrides it; with neither, the backend refuses to start."""

    context: str = ""


@dataclass(frozen=True)
class Kind:
    """Backend kind only. `cni`: kind's own kindnet, or Calico (the seed's cluster ran
    Calico) from its pinned manifest, with kindnet disabled."""

    cni: Literal["kindnet", "calico"] = "kindnet"


@dataclass(frozen=True)
class Proxy:
    # Envoy workers of sidecars and waypoints: 2 as Istio's (from its 2-CPU limit)
    concurrency: int = 2
    # static: bootstrap files; xds: served and pushed by the harness's ADS control plane
    config_source: Literal["static", "xds"] = "xds"
    log_level: Literal["trace", "debug", "info", "warning", "error", "critical", "off"] = "warning"
    # xDS protocol of sidecars and waypoints: delta (Istio's default since 1.22) or sotw
    xds: Literal["delta", "sotw"] = "delta"
    # istiod's PILOT_DEBOUNCE_AFTER (100 ms) and PILOT_PUSH_THROTTLE (0: Istio's default,
    # min(15 + 5 x cores, 100)); debounce 0 pushes at once
    debounce_ms: float = 100.0
    push_throttle: int = 0
    # a Sidecar resource's egress hosts for every sidecar ("./*", "istio-system/*"); empty:
    # no Sidecar resource, every sidecar sees every service of the mesh
    sidecar_egress: tuple[str, ...] = ()


@dataclass(frozen=True)
class Scenario:
    name: str
    backend: Literal["local", "kind", "cluster"] = "local"
    description: str = ""
    modes: tuple[Mode, ...] = MODES
    topology: Topology = field(default_factory=Topology)
    workload: Workload = field(default_factory=Workload)
    load: Load = field(default_factory=Load)
    timing: Timing = field(default_factory=Timing)
    repetitions: int = 2
    seed: int = 1
    probes: Probes = field(default_factory=Probes)
    proxy: Proxy = field(default_factory=Proxy)
    sweep: Sweep = field(default_factory=Sweep)
    cluster: Cluster = field(default_factory=Cluster)
    kind: Kind = field(default_factory=Kind)
    # config-push experiments run once per mode after its load cells (needs config_source xds)
    experiments: tuple[Literal["new_service", "l7_route", "l4_authz"], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return _plain(dataclasses.asdict(self))

    @property
    def hash(self) -> str:
        """Identity of what was measured: equal hashes mean comparable scenarios. A section
        added after hashes were first recorded counts only when it differs from its
        default, so that older runs keep their hash."""
        raw = self.to_dict()
        for key, default in _LATER_SECTIONS.items():
            if getattr(self, key) == default:
                raw.pop(key)
        for key in _NOT_MEASUREMENT:  # which windows count, not what a window measures
            raw["timing"].pop(key)
        canon = json.dumps(raw, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canon.encode()).hexdigest()[:16]


_LATER_SECTIONS: dict[str, Any] = {"kind": Kind()}
_NOT_MEASUREMENT = ("noise_threshold", "rerun_noisy")


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def resolve_path(name_or_path: str) -> Path:
    """A scenario is a path, or a name of a file in workloads/scenarios/."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.exists():
        if not p.exists():
            raise ScenarioError(f"scenario file {p} does not exist", hint=_known_hint())
        return p
    candidate = SCENARIO_DIR / f"{name_or_path}.yaml"
    if not candidate.exists():
        raise ScenarioError(f"unknown scenario '{name_or_path}'", hint=_known_hint())
    return candidate


def _known_hint() -> str:
    names = sorted(p.stem for p in SCENARIO_DIR.glob("*.yaml"))
    return f"known scenarios: {', '.join(names)}; or pass a path to a .yaml file"


def read(name_or_path: str, **overrides: Any) -> Scenario:
    path = resolve_path(name_or_path)
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ScenarioError(f"{path}: not valid YAML: {str(e).splitlines()[0]}") from e
    if not isinstance(raw, dict):
        raise ScenarioError(f"{path}: a scenario must be a mapping of keys to values")
    raw.setdefault("name", path.stem)
    for key, value in overrides.items():
        if value is not None:
            raw[key] = value
    return from_dict(raw, source=str(path))


def from_dict(raw: dict[str, Any], source: str = "<scenario>") -> Scenario:
    scenario = _build(Scenario, raw, source, "")
    _check(scenario, source)
    return scenario


def _build(cls: type, raw: Any, source: str, path: str) -> Any:
    if not isinstance(raw, dict):
        raise ScenarioError(f"{source}: '{path or 'top level'}' must be a mapping")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        where = f"{path}." if path else ""
        raise ScenarioError(
            f"{source}: unknown key '{where}{unknown[0]}'",
            hint=f"allowed keys{' under ' + path if path else ''}: {', '.join(sorted(names))}",
        )
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name in raw:
            key = f"{path}.{f.name}" if path else f.name
            kwargs[f.name] = _coerce(hints[f.name], raw[f.name], source, key)
    missing = [
        f.name
        for f in dataclasses.fields(cls)
        if f.name not in kwargs
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ScenarioError(f"{source}: missing key '{missing[0]}'")
    return cls(**kwargs)


def _coerce(tp: Any, value: Any, source: str, key: str) -> Any:
    origin = get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, source, key)  # type: ignore[arg-type]
    if origin is Literal:
        allowed = get_args(tp)
        if value not in allowed:
            raise ScenarioError(
                f"{source}: {key} = {value!r} is not allowed",
                hint=f"allowed values: {', '.join(map(str, allowed))}",
            )
        return value
    if origin is tuple:
        inner = get_args(tp)[0]
        if isinstance(value, (str, int, float)):
            value = [value]
        if not isinstance(value, list):
            raise ScenarioError(f"{source}: {key} must be a list")
        items = tuple(_coerce(inner, v, source, f"{key}[{i}]") for i, v in enumerate(value))
        if len(set(items)) != len(items):
            raise ScenarioError(f"{source}: {key} has duplicate entries")
        return items
    if origin in (typing.Union, types.UnionType):
        raise ScenarioError(f"{source}: {key}: unions are not supported in scenarios")
    if tp is bool:
        if not isinstance(value, bool):
            raise ScenarioError(f"{source}: {key} must be true or false, not {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ScenarioError(f"{source}: {key} must be a whole number, not {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ScenarioError(f"{source}: {key} must be a number, not {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ScenarioError(f"{source}: {key} must be a string, not {value!r}")
        return value
    raise ScenarioError(f"{source}: {key}: unsupported type {tp}")  # pragma: no cover


def _positive(source: str, key: str, value: float, minimum: float = 1) -> None:
    if value < minimum:
        raise ScenarioError(f"{source}: {key} = {value} must be at least {minimum}")


def _check(s: Scenario, source: str) -> None:
    """Cross-field checks: what each key allows on its own is checked by _coerce."""
    t = s.topology
    for key, value in (("modes", s.modes), ("load.levels", s.load.levels)):
        if not value:
            raise ScenarioError(f"{source}: {key} must not be empty")
    _positive(source, "topology.nodes", t.nodes)
    _positive(source, "topology.services", t.services)
    _positive(source, "topology.pods_per_service", t.pods_per_service)
    if t.nodes > 200:
        raise ScenarioError(f"{source}: topology.nodes = {t.nodes}: at most 200 nodes")
    if t.services * t.pods_per_service > 5000:
        raise ScenarioError(f"{source}: topology: at most 5000 server pods")
    for key in ("client_node", "server_node", "waypoint_node"):
        v = getattr(t, key)
        if not 0 <= v < t.nodes:
            raise ScenarioError(
                f"{source}: topology.{key} = {v} is not a node",
                hint=f"nodes are numbered 0 to {t.nodes - 1}",
            )
    if not t.namespace.isascii() or not t.namespace.replace("-", "").isalnum():
        raise ScenarioError(f"{source}: topology.namespace must be a DNS label like 'bench'")
    _positive(source, "workload.payload_bytes", s.workload.payload_bytes, 0)
    _positive(source, "workload.server_delay_ms", s.workload.server_delay_ms, 0)
    for i, lvl in enumerate(s.load.levels):
        _positive(source, f"load.levels[{i}]", lvl)
    _positive(source, "load.connections", s.load.connections)
    _positive(source, "load.processes", s.load.processes)
    if s.load.connections % s.load.processes:
        raise ScenarioError(
            f"{source}: load.connections = {s.load.connections} cannot be shared evenly by "
            f"load.processes = {s.load.processes} (each user's schedule slot must be unique)",
            hint="make connections a multiple of processes")
    _positive(source, "timing.warmup_s", s.timing.warmup_s, 0)
    _positive(source, "timing.window_s", s.timing.window_s, 1)
    _positive(source, "repetitions", s.repetitions)
    _positive(source, "proxy.concurrency", s.proxy.concurrency)
    _positive(source, "proxy.debounce_ms", s.proxy.debounce_ms, 0)
    _positive(source, "proxy.push_throttle", s.proxy.push_throttle, 0)
    for i, host in enumerate(s.proxy.sidecar_egress):
        ns, _, name = host.partition("/")
        if not ns or not name:
            raise ScenarioError(f"{source}: proxy.sidecar_egress[{i}] = {host!r} must read "
                                "namespace/host, like ./* or istio-system/*")
    r = s.probes.resources
    if not 0.1 <= r.interval_s <= 60:
        raise ScenarioError(f"{source}: probes.resources.interval_s must be 0.1 to 60 s (10 Hz max)")
    if not 1 <= s.timing.idle_s <= 600:
        raise ScenarioError(f"{source}: timing.idle_s must be 1 to 600 s")
    if not 0 < s.timing.noise_threshold <= 1:
        raise ScenarioError(f"{source}: timing.noise_threshold must be a share above 0 and at "
                            "most 1 (0.10 = a tenth of the machine's CPU)")
    if not 0 <= s.timing.rerun_noisy <= 5:
        raise ScenarioError(f"{source}: timing.rerun_noisy must be 0 to 5 re-runs")
    if r.pss_interval_s < 1:
        raise ScenarioError(f"{source}: probes.resources.pss_interval_s must be at least 1 s")
    if s.experiments and s.proxy.config_source != "xds":
        raise ScenarioError(f"{source}: experiments need proxy.config_source: xds",
                            hint="add proxy: {config_source: xds}")
    for key in ("pods_per_service", "services"):
        for i, size in enumerate(getattr(s.sweep, key)):
            _positive(source, f"sweep.{key}[{i}]", size)
    for svc in s.sweep.services or (t.services,):
        for pps in s.sweep.pods_per_service or (t.pods_per_service,):
            if svc * pps > 5000:
                raise ScenarioError(f"{source}: sweep size {svc} services x {pps} pods is "
                                    "more than 5000 pods", hint="use smaller sweep sizes")
    if s.backend in ("kind", "cluster") and t.client_node == t.server_node:
        raise ScenarioError(
            f"{source}: backend {s.backend} places the client and the server pods on different "
            f"nodes, but topology.client_node = topology.server_node = {t.client_node}",
            hint="set topology.client_node and topology.server_node to different nodes")
    if s.cluster.context and s.backend != "cluster":
        raise ScenarioError(f"{source}: cluster.context is for backend cluster, not {s.backend}",
                            hint="set backend: cluster, or remove cluster.context")
    if s.kind != Kind() and s.backend != "kind":
        raise ScenarioError(f"{source}: kind.cni is for backend kind, not {s.backend}",
                            hint="set backend: kind, or remove the kind section")


def parse_modes(text: str) -> tuple[str, ...]:
    """--modes sidecar,ambient -> ('sidecar', 'ambient'), with a hint for typos."""
    modes = tuple(m.strip() for m in text.split(",") if m.strip())
    for m in modes:
        if m not in MODES:
            raise ScenarioError(f"unknown mode '{m}'", hint=f"modes are: {', '.join(MODES)}")
    if not modes:
        raise ScenarioError("no mode given", hint=f"modes are: {', '.join(MODES)}")
    return modes
