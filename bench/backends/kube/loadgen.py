"""One cell's load inside the cluster: Locust master and workers exec'd in their pods.

The pods (workloads/k8s/locust.yaml) idle until a cell starts; then the master and each
worker run `locust` through `kubectl exec`, the workers write per-second HDR files to
/results/<cell>/hdr.<pid> in their pods, and `wait()` copies them out with `kubectl cp`
to f"{hdr_out}.{worker:03d}{pid:07d}" so bench.load.hdr.hdr_files finds them. The
interface mirrors bench.load.driver.LocustRun (start, wait, stop, hdr_paths, pid,
cpu_percent_max), so the runner can drive either. Locust's CPU is measured in the pods:
each worker writes its process CPU time per interval into those files (cpu_s).
"""

from __future__ import annotations

import shlex
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bench.backends.kube.commands import Background, Commands
from bench.backends.kube.k8s import kubectl
from bench.errors import CellFailed
from bench.load.hdr import cpu_percent_max, hdr_files, read_intervals

LOCUSTFILE = "/mb/locust/mesh_http.py"
RESULTS = "/results"
MASTER = "locust-master"
CONTAINER = "locust"
STOP_GRACE_S = 10.0


class InClusterLoadError(CellFailed):
    """Locust in the cluster failed, overran its time, or left no results to copy."""


@dataclass(frozen=True)
class LoadSpec:
    context: str
    namespace: str
    workers: tuple[str, ...]  # worker pod names (client-0, ...)
    url: str  # http://svc-0.<ns>.svc.cluster.local:80
    target_rps: int
    users: int
    duration_s: float
    cell: str  # a path-safe cell id
    arrivals: str = "uniform"  # workloads/locustfiles/arrivals.py
    seed: int = 0

    def _env(self) -> str:
        # one Locust process per worker pod: users are shared by the workers
        return (f"MB_RATE={self.target_rps:g} MB_USERS={self.users} "
                f"MB_PROCESSES={len(self.workers)} MB_ARRIVALS={self.arrivals} "
                f"MB_SEED={self.seed} MB_HDR_OUT={RESULTS}/{self.cell}/hdr")

    def _exec(self, pod: str, locust_args: list[str]) -> list[str]:
        script = (f"mkdir -p {RESULTS}/{self.cell} && exec env {self._env()} "
                  + shlex.join(["locust", "-f", LOCUSTFILE, *locust_args]))
        return kubectl(self.context, "exec", pod, "-c", CONTAINER, "--", "sh", "-c", script,
                       namespace=self.namespace)

    def master_argv(self) -> list[str]:
        return self._exec(MASTER, [
            "--master", "--headless", "--expect-workers", str(len(self.workers)),
            "--expect-workers-max-wait", "60", "--host", self.url,
            "-u", str(self.users), "-r", str(self.users),
            "--run-time", f"{max(1, round(self.duration_s))}s", "--only-summary",
            "--stop-timeout", "1", "--exit-code-on-error", "0", "--loglevel", "WARNING"])

    def worker_argv(self, pod: str) -> list[str]:
        return self._exec(pod, ["--worker", "--master-host",
                                f"{MASTER}.{self.namespace}.svc.cluster.local",
                                "--loglevel", "WARNING"])

    def kill_argv(self, pod: str) -> list[str]:
        """Stop every Locust process in a pod: killing a local `kubectl exec` does not stop
        what it started. `kill -1` spares PID 1 (the idle `sleep`) and the caller."""
        return kubectl(self.context, "exec", pod, "-c", CONTAINER, "--", "sh", "-c",
                       "kill -TERM -1 2>/dev/null; true", namespace=self.namespace)

    def copy_argv(self, pod: str, dest: Path) -> list[str]:
        return kubectl(self.context, "cp", "-c", CONTAINER,
                       f"{self.namespace}/{pod}:{RESULTS}/{self.cell}", str(dest))


class InClusterLoad:
    """start() -> wait() (raises InClusterLoadError) -> stop() (always safe)."""

    def __init__(self, spec: LoadSpec, commands: Commands, *, hdr_out: Path, log_path: Path,
                 timeout_s: float) -> None:
        self.spec, self.commands = spec, commands
        self.hdr_out, self.log_path, self.timeout_s = hdr_out, log_path, timeout_s
        self._master: Background | None = None
        self._workers: list[Background] = []

    def start(self) -> InClusterLoad:
        if self._master is not None:
            return self
        self.hdr_out.parent.mkdir(parents=True, exist_ok=True)
        for pod in self.spec.workers:
            self._workers.append(self.commands.start(self.spec.worker_argv(pod),
                                                     self._log(pod)))
        self._master = self.commands.start(self.spec.master_argv(), self._log(MASTER))
        return self

    def _log(self, pod: str) -> Path:
        return self.log_path.with_name(f"{self.log_path.stem}-{pod}{self.log_path.suffix}")

    @property
    def pid(self) -> int:
        """Pid of the local `kubectl exec` of the master (not of Locust: that runs in a pod)."""
        if self._master is None:
            raise RuntimeError("InClusterLoad was not started")
        return self._master.pid

    def wait(self) -> int:
        if self._master is None:
            raise RuntimeError("InClusterLoad was not started")
        rc = self._master.wait(self.timeout_s)
        if rc is None:
            self.stop()
            raise InClusterLoadError(f"Locust master did not finish within {self.timeout_s:.0f} s",
                                     hint=f"see {self._log(MASTER)}")
        for w in self._workers:  # workers quit when the master tells them to
            w.wait(STOP_GRACE_S)
        if rc != 0:
            raise InClusterLoadError(f"Locust master exited with code {rc}",
                                     hint=f"see {self._log(MASTER)}")
        self._copy_results()
        return 0

    def check(self) -> str:
        """Why the run failed already ("" while the master and workers live or ended
        cleanly): a `kubectl exec` that exited with an error before the window's end."""
        for name, b in [(MASTER, self._master), *zip(self.spec.workers, self._workers)]:
            code = b.poll() if b is not None else None
            if code:
                return f"kubectl exec of {name} exited with {code} (see {self._log(name)})"
        return ""

    def _copy_results(self) -> None:
        for i, pod in enumerate(self.spec.workers):
            tmp = Path(tempfile.mkdtemp(prefix="mb-cp-", dir=self.hdr_out.parent))
            dest = tmp / "out"  # kubectl cp creates it, with the directory's contents
            try:
                r = self.commands.run(self.spec.copy_argv(pod, dest), timeout_s=120)
                if not r.ok:
                    raise InClusterLoadError(f"kubectl cp from {pod} failed: "
                                             f"{r.first_error_line()}")
                files = hdr_files(dest / "hdr")
                if not files:
                    raise InClusterLoadError(f"{pod} wrote no HDR files for cell {self.spec.cell}")
                for f in files:
                    pid = int(f.suffix[1:])
                    f.rename(self.hdr_out.with_name(f"{self.hdr_out.name}.{i:03d}{pid:07d}"))
            finally:
                shutil.rmtree(tmp)

    def stop(self) -> None:
        running = [b for b in [*self._workers, *([self._master] if self._master else [])]
                   if b.poll() is None]
        for b in running:
            b.stop()
        if running:  # cut short: the Locust processes in the pods may live on
            for pod in (MASTER, *self.spec.workers):
                self.commands.run(self.spec.kill_argv(pod), timeout_s=30)

    def hdr_paths(self) -> list[Path]:
        return hdr_files(self.hdr_out)

    cpu_missing = ("the Locust workers' HDR files carry no CPU time (cpu_s) for the window "
                   "(an older locustfile?), or none were copied")

    def cpu_percent_max(self, t0: float, t1: float) -> float | None:
        """Highest CPU % (of one core) of any Locust worker over [t0, t1], measured in its
        pod (bench.load.hdr.cpu_percent_max over the copied files); None when the files
        carry none (see `cpu_missing`)."""
        try:
            return cpu_percent_max(read_intervals(self.hdr_paths()), t0, t1)
        except (KeyError, ValueError, OSError):
            return None
