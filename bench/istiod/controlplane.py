"""Istio's real control plane on this host: kine (SQLite), kube-apiserver, Istio's and the
Gateway API's CRDs, then istiod with ambient on. Every listener is on 127.0.0.1, on a port
chosen free at start; every file lives in RUNTIME (/run/meshbench/istiod); every process
is ours by PID (written to RUNTIME/pids with its executable) so that `teardown --all`
removes exactly what this module started. The local backend's lock is held while it runs.

    with ControlPlane.start(paths, say=log) as cp:
        cp.api.create(...)            # the simulated cluster (bench.istiod.cluster)
        cp.metrics()                  # istiod's /metrics on its monitoring port
        cp.syncz()                    # istiod's /debug/syncz

Readiness waits on health endpoints (kine: a TCP accept; the API server: /readyz; the
CRDs: their Established condition; istiod: /ready on its HTTP port), each with a deadline,
never a fixed sleep. A process that exits while it is awaited fails at once with its log's
last lines.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bench.errors import PrerequisiteError, ProvisionError
from bench.istiod.kubeapi import KubeAPI

RUNTIME = Path("/run/meshbench/istiod")
CLUSTER_ID = "Kubernetes"
SYSTEM_NS = "istio-system"
# apart from the local backend's pod (10.244/16) and VIP (10.96/16) ranges: these addresses
# are only data in the API server, never a traffic target
SERVICE_CIDR = "10.112.0.0/16"
LOCALHOST = "127.0.0.1"

# Istio 1.27's behaviour on a newer istiod: manifests/charts/base/files/
# profile-compatibility-version-1.27.yaml (read from the built module at start)
COMPAT_PROFILE = "manifests/charts/base/files/profile-compatibility-version-1.27.yaml"


MEMCG = Path("/sys/fs/cgroup/memory/meshbench-istiod")  # cgroup v1, as on this kernel
MEM_FRACTION = 0.8  # of the memory available at start, for the whole control plane


class MemCap:
    """A memory cgroup around the control plane and the simulated proxies, so that a size
    too large for this machine ends with the OOM killer inside it (that size recorded
    failed, with the limit) instead of taking the harness or the host down. Without a v1
    memory controller it records why it is absent and caps nothing."""

    def __init__(self, fraction: float = MEM_FRACTION) -> None:
        self.path: Path | None = None
        self.why = ""
        self.limit = 0
        if not MEMCG.parent.is_dir():
            self.why = "no cgroup v1 memory controller at /sys/fs/cgroup/memory"
            return
        try:
            if MEMCG.exists():
                MEMCG.rmdir()  # a previous run's, empty once its processes are gone
            MEMCG.mkdir()
            avail = _meminfo_kib("MemAvailable") * 1024
            self.limit = int(avail * fraction)
            (MEMCG / "memory.limit_in_bytes").write_text(str(self.limit))
            self.path = MEMCG
        except OSError as e:
            self.why = f"cannot make the memory cgroup {MEMCG}: {e.strerror or e}"

    def add(self, pid: int) -> None:
        if self.path is not None:
            with suppress(OSError):
                (self.path / "cgroup.procs").write_text(str(pid))

    def peak(self) -> int:
        if self.path is None:
            return 0
        with suppress(OSError, ValueError):
            return int((self.path / "memory.max_usage_in_bytes").read_text())
        return 0

    def oom_kills(self) -> int:
        if self.path is None:
            return 0
        with suppress(OSError, ValueError):
            for line in (self.path / "memory.oom_control").read_text().splitlines():
                if line.startswith("oom_kill "):
                    return int(line.split()[1])
        return 0

    def remove(self) -> None:
        if self.path is not None:
            with suppress(OSError):
                self.path.rmdir()
            self.path = None


def _meminfo_kib(key: str) -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


_taken: set[int] = set()


def _ephemeral() -> tuple[int, int]:
    with suppress(OSError, ValueError):
        lo, hi = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(lo), int(hi)
    return 32768, 60999


def free_port() -> int:
    """A loopback port free now and outside the kernel's ephemeral range, so that no
    outgoing connection (the API server's to kine, istiod's to the API server) can take it
    between this choice and the listener's bind; never the same one twice in a process."""
    import random

    lo, hi = _ephemeral()
    candidates = [p for p in range(20000, 32000) if not lo <= p <= hi] or list(range(hi + 1,
                                                                                      65535))
    for port in random.sample(candidates, len(candidates)):
        if port in _taken:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((LOCALHOST, port))
            except OSError:
                continue
        _taken.add(port)
        return port
    raise ProvisionError("no free loopback port outside the ephemeral range",
                         hint="stop what listens on 127.0.0.1:20000-31999")


def _tail(path: Path, n: int = 4) -> str:
    with suppress(OSError):
        lines = path.read_text(errors="replace").strip().splitlines()
        return " | ".join(line[:300] for line in lines[-n:])
    return ""


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def alive(self) -> bool:
        return self.popen.poll() is None

    def died(self) -> str:
        return (f"{self.name} exited with code {self.popen.returncode}: "
                f"{_tail(self.log) or 'no output'} (log: {self.log})")


@dataclass
class Ports:
    kine: int = field(default_factory=free_port)
    apiserver: int = field(default_factory=free_port)
    xds: int = field(default_factory=free_port)  # plaintext gRPC (Istio's 15010)
    secure_xds: int = field(default_factory=free_port)  # mTLS gRPC (15012)
    http: int = field(default_factory=free_port)  # /ready, /debug (8080)
    monitoring: int = field(default_factory=free_port)  # /metrics (15014)
    webhook: int = field(default_factory=free_port)  # injection/validation HTTPS (15017)
    ctrlz: int = field(default_factory=free_port)


def istio_module_dir(version: str) -> Path:
    """The istio module's source as `go` downloaded it (CRDs, the compatibility profile)."""
    from bench.istiod.build import module_files

    return module_files("istio.io/istio", version)[0]


def gateway_api_dir(istio_dir: Path) -> Path:
    """sigs.k8s.io/gateway-api at the version Istio's go.mod requires (its CRDs)."""
    import re

    from bench.istiod.build import module_files

    m = re.search(r"^\s*sigs\.k8s\.io/gateway-api (v\S+)", (istio_dir / "go.mod").read_text(),
                  re.M)
    if not m:
        raise PrerequisiteError("istio's go.mod names no sigs.k8s.io/gateway-api version")
    return module_files("sigs.k8s.io/gateway-api", m[1])[0]


def compat_env(istio_dir: Path, profile: str) -> dict[str, str]:
    """The environment variables of one of Istio's compatibility profiles ("1.27"): the
    pilot.env block of the profile's values."""
    path = istio_dir / COMPAT_PROFILE.replace("1.27", profile)
    if not path.exists():
        raise PrerequisiteError(f"no Istio compatibility profile {profile} in this istiod "
                                f"({path.name} missing)", hint="--compat 1.27, or none")
    doc = yaml.safe_load(path.read_text()) or {}
    env = ((doc.get("pilot") or {}).get("env")) or {}
    return {str(k): str(v).lower() if isinstance(v, bool) else str(v) for k, v in env.items()}


def crd_documents(istio_dir: Path, gw_dir: Path) -> list[dict[str, Any]]:
    """Istio's CRDs (the chart's crd-all.gen.yaml) and the Gateway API's standard ones."""
    files = [istio_dir / "manifests/charts/base/files/crd-all.gen.yaml"]
    files += sorted((gw_dir / "config/crd/standard").glob("*.yaml"))
    docs = []
    for f in files:
        for d in yaml.safe_load_all(f.read_text()):
            if isinstance(d, dict) and d.get("kind") == "CustomResourceDefinition":
                docs.append(d)
    if not docs:
        raise PrerequisiteError(f"no CRDs found in {files[0]}")
    return docs


def mesh_config() -> str:
    """istiod's mesh config: Istio's defaults, the root namespace and trust domain spelled."""
    return yaml.safe_dump({"rootNamespace": SYSTEM_NS, "trustDomain": "cluster.local",
                           "defaultConfig": {"discoveryAddress": f"istiod.{SYSTEM_NS}.svc:15012"}})


def _write_sa_keys(d: Path) -> tuple[Path, Path]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    priv, pub = d / "sa.key", d / "sa.pub"
    priv.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    pub.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo))
    return priv, pub


def kubeconfig(port: int, token: str) -> str:
    """A static token over TLS to the local API server (AlwaysAllow, loopback only: the API
    server turns anonymous access off under AlwaysAllow)."""
    return yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "mb",
        "clusters": [{"name": "mb", "cluster": {"server": f"https://{LOCALHOST}:{port}",
                                                "insecure-skip-tls-verify": True}}],
        "users": [{"name": "mb", "user": {"token": token}}],
        "contexts": [{"name": "mb", "context": {"cluster": "mb", "user": "mb"}}]})


@dataclass
class ControlPlane:
    """The running processes and how to reach them."""

    paths: Mapping[str, Path]
    istio_version: str
    ports: Ports = field(default_factory=Ports)
    dir: Path = RUNTIME
    compat: str = ""
    extra_env: Mapping[str, str] = field(default_factory=dict)
    say: Callable[[str], None] = print
    procs: dict[str, Proc] = field(default_factory=dict)
    api: KubeAPI | None = None
    env: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    token: str = ""
    memcap: MemCap | None = None
    _lock_fd: int | None = None

    # ---- lifecycle ---------------------------------------------------------------------
    @classmethod
    def start(cls, paths: Mapping[str, Path], istio_version: str, compat: str = "",
              extra_env: Mapping[str, str] | None = None,
              say: Callable[[str], None] = print, run_id: str = "") -> ControlPlane:
        cp = cls(paths, istio_version, compat=compat, extra_env=dict(extra_env or {}), say=say)
        cp._take_lock(run_id)
        try:
            cp._start()
        except BaseException:
            cp.stop()
            raise
        return cp

    def __enter__(self) -> ControlPlane:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _take_lock(self, run_id: str) -> None:
        from bench.backends.local.lock import HostLock

        self._host_lock = HostLock()
        self._host_lock.take(run_id or "istiod")

    def _start(self) -> None:
        if self.dir.exists():
            remove_all(self.dir)  # a previous run's leftovers, by PID and our own dir only
        self.dir.mkdir(parents=True)
        (self.dir / "logs").mkdir()
        self.memcap = MemCap()
        istio_dir = istio_module_dir(self.istio_version)
        t0 = time.monotonic()
        self._start_kine()
        self.timings["kine_s"] = time.monotonic() - t0
        t1 = time.monotonic()
        self._start_apiserver()
        self.timings["apiserver_s"] = time.monotonic() - t1
        t2 = time.monotonic()
        self._apply_crds(istio_dir)
        self.timings["crds_s"] = time.monotonic() - t2
        t3 = time.monotonic()
        self._start_istiod(istio_dir)
        self.timings["istiod_s"] = time.monotonic() - t3

    def _spawn(self, name: str, args: list[str], env: Mapping[str, str] | None = None) -> Proc:
        log = self.dir / "logs" / f"{name}.log"
        fh = open(log, "wb")  # noqa: SIM115 (the child owns it; closed below)
        argv = args
        if self.memcap is not None and self.memcap.path is not None:
            # join the memory cgroup before exec, so that istiod's automemlimit reads its
            # limit at start (exec keeps the PID)
            argv = ["/bin/sh", "-c", 'echo $$ > "$0" && exec "$@"',
                    str(self.memcap.path / "cgroup.procs"), *args]
        try:
            popen = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, cwd=self.dir,
                                     env={**os.environ, **(env or {})},
                                     start_new_session=True)
        except OSError as e:
            raise PrerequisiteError(f"cannot start {name}: {e}",
                                    hint="meshbench istiod build") from None
        finally:
            fh.close()
        proc = Proc(name, popen, log)
        self.procs[name] = proc
        with open(self.dir / "pids", "a") as f:
            f.write(f"{popen.pid} {args[0]}\n")
        return proc

    def _await(self, what: str, ready: Callable[[], bool], procs: list[Proc],
               timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        delay = 0.05
        while True:
            for p in procs:
                if not p.alive():
                    raise ProvisionError(p.died())
            with suppress(Exception):
                if ready():
                    return
            if time.monotonic() > deadline:
                logs = "; ".join(f"{p.name}: {_tail(p.log, 2)}" for p in procs)
                raise ProvisionError(f"{what} not ready after {timeout_s:.0f} s ({logs})",
                                     hint=f"logs in {self.dir / 'logs'}")
            time.sleep(delay)
            delay = min(delay * 2, 0.5)

    def _start_kine(self) -> None:
        db = self.dir / "kine.db"
        # kine appends its SQLite defaults only to its default endpoint: spell them
        params = "_journal_mode=WAL&_busy_timeout=30000&_synchronous=NORMAL&_txlock=immediate&cache=shared"
        p = self._spawn("kine", [str(self.paths["kine"]),
                                 "--listen-address", f"{LOCALHOST}:{self.ports.kine}",
                                 "--metrics-bind-address", "0",
                                 "--endpoint", f"sqlite://{db}?{params}"])

        def accepts() -> bool:
            with socket.create_connection((LOCALHOST, self.ports.kine), timeout=1):
                return True
        self._await("kine", accepts, [p], 60)

    def _start_apiserver(self) -> None:
        certs = self.dir / "apiserver"
        certs.mkdir()
        priv, pub = _write_sa_keys(certs)
        self.token = secrets.token_hex(16)
        tokens = certs / "tokens.csv"
        tokens.write_text(f'{self.token},meshbench,meshbench,"system:masters"\n')
        tokens.chmod(0o600)
        args = [str(self.paths["kube-apiserver"]),
                f"--etcd-servers=http://{LOCALHOST}:{self.ports.kine}",
                f"--bind-address={LOCALHOST}", f"--advertise-address={LOCALHOST}",
                f"--secure-port={self.ports.apiserver}", f"--cert-dir={certs}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                f"--service-account-key-file={pub}",
                f"--service-account-signing-key-file={priv}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                "--api-audiences=https://kubernetes.default.svc.cluster.local,istio-ca",
                "--authorization-mode=AlwaysAllow", f"--token-auth-file={tokens}",
                "--endpoint-reconciler-type=none",
                # no controller-manager makes service-account tokens: the plugin that
                # requires them would refuse every pod
                "--disable-admission-plugins=ServiceAccount",
                "--enable-priority-and-fairness=false",
                "--max-requests-inflight=2000", "--max-mutating-requests-inflight=1000",
                "--profiling=false", "--watch-cache=true", "-v=1"]
        p = self._spawn("kube-apiserver", args)
        self.api = KubeAPI(f"https://{LOCALHOST}:{self.ports.apiserver}", self.token)
        api = self.api
        self._await("kube-apiserver /readyz", lambda: api.healthy("/readyz"), [p, self.procs["kine"]],
                    180)

    def _apply_crds(self, istio_dir: Path) -> None:
        assert self.api is not None
        docs = crd_documents(istio_dir, gateway_api_dir(istio_dir))
        for d in docs:
            self.api.apply(d)
        names = [d["metadata"]["name"] for d in docs]
        api = self.api

        def established() -> bool:
            for n in names:
                crd = api.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", n)
                conds = {c["type"]: c["status"] for c in
                         ((crd or {}).get("status") or {}).get("conditions") or []}
                if conds.get("Established") != "True":
                    return False
            return True
        self._await(f"{len(names)} CRDs Established", established,
                    list(self.procs.values()), 120)
        self.crd_count = len(names)
        self.api.apply({"apiVersion": "v1", "kind": "Namespace",
                        "metadata": {"name": SYSTEM_NS, "labels": {"meshbench.io/owned": "true"}}})

    def _start_istiod(self, istio_dir: Path) -> None:
        (self.dir / "kubeconfig").write_text(kubeconfig(self.ports.apiserver, self.token))
        (self.dir / "mesh.yaml").write_text(mesh_config())
        env = {
            "POD_NAMESPACE": SYSTEM_NS, "POD_NAME": "istiod-mb", "REVISION": "default",
            "PILOT_ENABLE_AMBIENT": "true",
            # no injector templates here: the Gateway deployment controller would need them;
            # the harness creates each waypoint's Service, EndpointSlice and Pod itself
            "PILOT_ENABLE_GATEWAY_API_DEPLOYMENT_CONTROLLER": "false",
            # no injector or webhooks: the pods are written as the injector leaves them
            "INJECT_ENABLED": "false",
            "INJECTION_WEBHOOK_CONFIG_NAME": "", "VALIDATION_WEBHOOK_CONFIG_NAME": "",
            # one istiod: its controllers (Gateway status among them) run at once
            "ENABLE_LEADER_ELECTION": "false",
            # PILOT_MAX_REQUESTS_PER_SECOND keeps its default: min(15 + 5 x GOMAXPROCS, 100)
            # = 25 new xDS streams per second on 2 cores (features/tuning.go RequestLimit); a
            # stream refused by it is retried by the simulated proxy, as Envoy does. Raising
            # it (the sweep's istiod_env) let 10,000 sidecars in at once and istiod used
            # 10.5 GiB and 208 CPU-s before 7 of them were synced.
            "KUBECONFIG": str(self.dir / "kubeconfig"),
            "HOME": str(self.dir),
        }
        if self.compat:
            env.update(compat_env(istio_dir, self.compat))
        env.update(self.extra_env)
        self.env = env
        args = [str(self.paths["pilot-discovery"]), "discovery",
                f"--kubeconfig={self.dir / 'kubeconfig'}",
                f"--meshConfig={self.dir / 'mesh.yaml'}",
                f"--clusterID={CLUSTER_ID}", "--domain=cluster.local",
                f"--grpcAddr={LOCALHOST}:{self.ports.xds}",
                f"--secureGRPCAddr={LOCALHOST}:{self.ports.secure_xds}",
                f"--httpAddr={LOCALHOST}:{self.ports.http}",
                f"--monitoringAddr={LOCALHOST}:{self.ports.monitoring}",
                f"--httpsAddr={LOCALHOST}:{self.ports.webhook}",
                f"--ctrlz_port={self.ports.ctrlz}", f"--ctrlz_address={LOCALHOST}",
                "--keepaliveMaxServerConnectionAge=24h", "--profile=false",
                "--log_output_level=default:warn,ads:warn"]
        self._spawn("istiod", args, env)
        port = self.ports.http
        self._await("istiod /ready", lambda: _http_ok(port, "/ready"),
                    list(self.procs.values()), 180)

    def stop(self) -> None:
        """Stop istiod, the API server and kine (in that order) and remove every file."""
        for name in ("istiod", "kube-apiserver", "kine"):
            proc = self.procs.get(name)
            if proc is not None and proc.alive():
                _terminate(proc.popen)
        self.procs.clear()
        if self.dir.exists():
            remove_all(self.dir)
        if self.memcap is not None:
            self.memcap.remove()
        lock = getattr(self, "_host_lock", None)
        if lock is not None:
            lock.release()

    # ---- what the measurements read ----------------------------------------------------
    def pid(self, name: str) -> int:
        return self.procs[name].popen.pid

    def alive(self) -> list[str]:
        """Why each process that died did (empty when all run): an OOM kill inside the
        control plane's memory cgroup is named with the limit."""
        dead = [p.died() for p in self.procs.values() if not p.alive()]
        if dead and self.memcap is not None and self.memcap.oom_kills():
            dead = [f"{d} -- killed by the OOM killer: the control plane's memory cgroup "
                    f"limit is {self.memcap.limit / 2**30:.1f} GiB "
                    f"({MEM_FRACTION:.0%} of the memory available at start)" for d in dead]
        return dead

    def metrics(self) -> str:
        return _http_get(self.ports.monitoring, "/metrics")

    def syncz(self) -> str:
        return _http_get(self.ports.http, "/debug/syncz")



def _http_get(port: int, path: str, timeout: float = 30.0) -> str:
    import urllib.request

    with urllib.request.urlopen(f"http://{LOCALHOST}:{port}{path}", timeout=timeout) as r:
        return str(r.read().decode())


def _http_ok(port: int, path: str) -> bool:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://{LOCALHOST}:{port}{path}", timeout=2) as r:
            return bool(r.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _terminate(popen: subprocess.Popen[bytes], grace_s: float = 10.0) -> None:
    with suppress(ProcessLookupError):
        popen.send_signal(signal.SIGTERM)
    try:
        popen.wait(grace_s)
    except subprocess.TimeoutExpired:
        with suppress(ProcessLookupError):
            popen.kill()
        popen.wait(5)


def _ours(pid: int, exe: str) -> bool:
    """A PID from our list is still the process we started: same executable (a stale list
    must never kill a stranger that reused the PID)."""
    try:
        return os.readlink(f"/proc/{pid}/exe").removesuffix(" (deleted)") == exe
    except OSError:
        return False


def remove_all(directory: Path = RUNTIME) -> list[str]:
    """Kill the processes listed in the control plane's pid file (only if still ours), then
    remove its directory (database, logs, certificates, sockets). Returns what was removed."""
    removed: list[str] = []
    pids = directory / "pids"
    if pids.exists():
        for line in pids.read_text().splitlines():
            pid_s, _, exe = line.partition(" ")
            pid = int(pid_s or 0)
            if pid and _ours(pid, exe):
                with suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
                deadline = time.monotonic() + 10
                while _ours(pid, exe) and time.monotonic() < deadline:
                    time.sleep(0.1)
                if _ours(pid, exe):
                    with suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                removed.append(f"{Path(exe).name} pid {pid}")
    if directory.exists() and directory.name == "istiod":
        shutil.rmtree(directory, ignore_errors=True)
        removed.append(f"dir {directory}")
    if MEMCG.exists():
        with suppress(OSError):
            MEMCG.rmdir()
            removed.append(f"cgroup {MEMCG}")
    return removed
