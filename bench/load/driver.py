"""Run Locust as a bounded subprocess, optionally inside a network namespace.

The orchestrator never imports Locust (gevent monkey-patches whatever imports it); it
starts `python -m locust` with workloads/locustfiles/mesh_http.py, which writes per-second
HDR histograms to f"{hdr_out}.{pid}" (read them with bench.load.hdr). While Locust runs,
a thread samples the CPU of every Locust process once per second.

    run = run_locust(netns="mb-client", url="http://10.96.0.10:8080/", target_rps=500,
                     users=4, processes=1, duration_s=30, hdr_out=p, log_path=l, timeout_s=60)
    try:
        ...                       # probes run here, in parallel with the load
        run.wait()                # raises LoadGeneratorError on timeout or failure
    finally:
        run.stop()                # always safe; kills the whole process group
    cpu = run.cpu_percent_max(t0, t1)
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self
from urllib.parse import urlsplit

import psutil

from bench.errors import CellFailed
from bench.load.hdr import hdr_files, read_intervals
from bench.paths import workloads

LOCUSTFILE = workloads() / "locustfiles" / "mesh_http.py"
SAMPLE_PERIOD_S = 1.0
STOP_GRACE_S = 5.0


class LoadGeneratorError(CellFailed):
    """Locust failed to start, exited non-zero, or overran its timeout (and was killed)."""


@dataclass(frozen=True)
class CpuSample:
    """CPU of one Locust process over [ts_start, ts_end] (wall clock), in % of one core."""

    ts_start: float
    ts_end: float
    pid: int
    percent: float


def locust_command(
    *, netns: str | None, base_url: str, users: int, processes: int, duration_s: float
) -> list[str]:
    """The argv that runs the locustfile headless for duration_s (users spawn at once)."""
    cmd = [
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless",
        "--host", base_url, "-u", str(users), "-r", str(users),
        "--run-time", f"{max(1, round(duration_s))}s", "--only-summary",
        "--stop-timeout", "1", "--exit-code-on-error", "0", "--loglevel", "WARNING",
    ]
    if processes > 1:
        cmd += ["--processes", str(processes)]
    # `ip netns exec` execs the command, so the Popen pid is Locust itself.
    return ["ip", "netns", "exec", netns, *cmd] if netns else cmd


def split_url(url: str) -> tuple[str, str]:
    """("http://host:port", "/path?query") from a full URL; only http(s) is accepted."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"not an http(s) URL with a host: {url!r}")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return f"{parts.scheme}://{parts.netloc}", path


class LocustRun:
    """One Locust subprocess: start(), then wait() or stop(); usable as a context manager."""

    def __init__(self, cmd: list[str], env: dict[str, str], *, hdr_out: Path, log_path: Path,
                 duration_s: float, timeout_s: float) -> None:
        self.cmd, self.env = cmd, env
        self.hdr_out, self.log_path = hdr_out, log_path
        self.duration_s, self.timeout_s = duration_s, timeout_s
        self.started_at: float | None = None  # wall clock (time.time()) at start()
        self.returncode: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._started_mono = 0.0
        self._cpu: list[CpuSample] = []
        self._cpu_lock = threading.Lock()
        self._stop_sampling = threading.Event()
        self._sampler: threading.Thread | None = None
        self._workers: set[int] = set()  # child processes seen (Locust --processes workers)

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> Self:
        """Launch Locust and return at once; a no-op if already started."""
        if self._proc is not None:
            return self
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.hdr_out.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.started_at = time.time()
            self._started_mono = time.monotonic()
            # A new session makes Locust and its --processes workers one killable group.
            self._proc = subprocess.Popen(
                self.cmd, env=self.env, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
            )
        self._sampler = threading.Thread(target=self._sample_cpu, name="locust-cpu", daemon=True)
        self._sampler.start()
        return self

    def wait(self) -> int:
        """Block until Locust exits (at most timeout_s after start) and return 0.

        Raises LoadGeneratorError if it overran the timeout (the group is then killed)
        or exited non-zero (errors in requests do not count: --exit-code-on-error 0).
        """
        proc = self._require_started()
        remaining = self.timeout_s - (time.monotonic() - self._started_mono)
        if proc.returncode is None and not self._wait_exit_unreaped(max(0.0, remaining)):
            self.stop()
            raise LoadGeneratorError(
                f"Locust did not finish within {self.timeout_s:.0f}s (run time "
                f"{self.duration_s:.0f}s) and was killed", hint=f"see {self.log_path}")
        if proc.returncode is None:
            self._finish()
        if proc.returncode != 0:
            raise LoadGeneratorError(
                f"Locust exited with code {proc.returncode}: {self._log_tail()}",
                hint=f"see {self.log_path}")
        return 0

    def started(self, processes: int = 1) -> bool:
        """Whether every load-generating process has started its test: each creates its
        HDR file when its test starts (workloads/locustfiles/hdr_recorder.py), before its
        users send."""
        return len(self.hdr_paths()) >= processes

    def finish_after(self, t: float, processes: int = 1, timeout_s: float = 5.0) -> None:
        """End the run early once every load-generating process has written its histogram
        interval that contains wall-clock time `t` (the recorder writes one per whole
        second): what comes after `t` is not needed. Raises LoadGeneratorError when Locust
        already exited with an error; falls back to `wait()` if the files do not show `t`
        within timeout_s."""
        proc = self._require_started()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:  # it ended by itself: its exit code says how
                self.wait()
                return
            ends: dict[int, float] = {}
            for i in read_intervals(self.hdr_paths()):
                ends[i.pid] = max(ends.get(i.pid, 0.0), i.ts_end)
            if len(ends) >= processes and min(ends.values()) >= t:
                self.stop()  # SIGTERM: Locust flushes its last partial second and exits
                return
            time.sleep(0.1)
        self.wait()

    def stop(self) -> None:
        """Kill the whole process group (SIGTERM, then SIGKILL) and reap; always safe."""
        if self._proc is None or self._proc.returncode is not None:
            self._stop_sampler()
            return
        self._signal_group(signal.SIGTERM)
        if not self._wait_exit_unreaped(STOP_GRACE_S):
            self._signal_group(signal.SIGKILL)
        self._finish()

    def check(self) -> str:
        """Why the load is broken now, "" while it is not: the leader exited before its run
        time was up, or a worker process it had (--processes) is gone. Call it only while
        the run should be going (warm-up, window)."""
        proc = self._require_started()
        if proc.returncode is not None:  # already reaped
            return f"Locust (pid {proc.pid}) exited with {proc.returncode}"
        info = os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT | os.WNOHANG)
        if info is not None:
            how = (f"signal {info.si_status}" if info.si_code in (os.CLD_KILLED, os.CLD_DUMPED)
                   else f"code {info.si_status}")
            return f"Locust (pid {proc.pid}) exited early with {how}: {self._log_tail(2)}"
        with self._cpu_lock:
            workers = sorted(self._workers)
        gone = [pid for pid in workers if not _running(pid)]
        if gone:
            return (f"Locust worker pid {gone[0]} is gone ({len(gone)} of {len(workers)} "
                    "workers): its share of the load stopped")
        return ""

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    @property
    def pid(self) -> int:
        """Pid of the Locust leader process, which is also its process-group id."""
        return self._require_started().pid

    # -- results -----------------------------------------------------------------------

    def hdr_paths(self) -> list[Path]:
        """The per-process HDR files written so far."""
        return hdr_files(self.hdr_out)

    def cpu_samples(self) -> list[CpuSample]:
        with self._cpu_lock:
            return list(self._cpu)

    cpu_missing = ("no CPU sample of any Locust process fell in the window (the sampler "
                   "thread took none)")

    def cpu_percent_max(self, t0: float, t1: float) -> float | None:
        """Highest CPU % (of one core) of any Locust process over samples whose midpoint
        lies in [t0, t1] (wall clock); None if there is none (see `cpu_missing`)."""
        return max((s.percent for s in self.cpu_samples()
                    if t0 <= (s.ts_start + s.ts_end) / 2 <= t1), default=None)

    # -- internals ---------------------------------------------------------------------

    def _require_started(self) -> subprocess.Popen[bytes]:
        if self._proc is None:
            raise RuntimeError("LocustRun was not started")
        return self._proc

    def _wait_exit_unreaped(self, timeout_s: float) -> bool:
        """Wait for the leader to exit WITHOUT reaping it: while it is an unreaped zombie its
        pid (= the group id) cannot be reused, so signalling the group stays safe."""
        pid = self._require_started().pid
        deadline = time.monotonic() + timeout_s
        while True:
            if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT | os.WNOHANG) is not None:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)

    def _finish(self) -> None:
        """Leader has exited: kill any straggler in its group, then reap the leader."""
        self._stop_sampler()
        self._signal_group(signal.SIGKILL)
        proc = self._require_started()
        proc.wait()
        self.returncode = proc.returncode

    def _signal_group(self, sig: int) -> None:
        try:
            os.killpg(self._require_started().pid, sig)
        except ProcessLookupError:
            pass

    def _stop_sampler(self) -> None:
        self._stop_sampling.set()
        if self._sampler is not None and self._sampler is not threading.current_thread():
            self._sampler.join(timeout=2 * SAMPLE_PERIOD_S)

    def _sample_cpu(self) -> None:
        # psutil's cpu_times tick at 10 ms; deltas over a 1 s period are good to ~1 %.
        # Computing over the measured wall interval keeps samples right even if this
        # thread is delayed when the machine is saturated.
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), -10)
        except OSError:
            pass  # not root: a late sample only makes its interval longer
        try:
            leader = psutil.Process(self._require_started().pid)
        except psutil.Error:
            return
        last: dict[tuple[int, float], tuple[float, float]] = {}
        while True:
            try:
                procs = [leader, *leader.children(recursive=True)]
            except psutil.Error:
                return
            with self._cpu_lock:
                self._workers.update(p.pid for p in procs[1:])
            for p in procs:
                try:
                    with p.oneshot():
                        key = (p.pid, p.create_time())
                        t = p.cpu_times()
                    now, cpu = time.time(), t.user + t.system
                except psutil.Error:
                    continue
                if key in last:
                    t_prev, cpu_prev = last[key]
                    if now > t_prev:
                        sample = CpuSample(t_prev, now, p.pid, 100.0 * (cpu - cpu_prev) / (now - t_prev))
                        with self._cpu_lock:
                            self._cpu.append(sample)
                last[key] = (now, cpu)
            if self._stop_sampling.wait(SAMPLE_PERIOD_S):
                return

    def _log_tail(self, lines: int = 5) -> str:
        try:
            tail = self.log_path.read_text(errors="replace").strip().splitlines()[-lines:]
        except OSError:
            return "(no log)"
        return " | ".join(tail) or "(empty log)"


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def run_locust(
    *,
    netns: str | None,
    url: str,
    target_rps: float,
    users: int,
    processes: int,
    duration_s: float,
    hdr_out: Path,
    log_path: Path,
    timeout_s: float,
    arrivals: str = "uniform",
    seed: int = 0,
) -> LocustRun:
    """Start Locust GETting `url` at target_rps over `users` keep-alive connections, spread
    over `processes` processes, for duration_s; return the started LocustRun. `arrivals`
    is the schedule model of workloads/locustfiles/arrivals.py (uniform, poisson, burst).

    `url` must point inside the harness's own namespaces (or loopback in tests); the
    load runs from inside `netns` when given. timeout_s bounds the whole run including
    Locust's start-up and must exceed duration_s. HDR files appear as f"{hdr_out}.{pid}".
    """
    if target_rps <= 0 or users < 1 or processes < 1 or duration_s <= 0:
        raise ValueError("target_rps, users, processes and duration_s must be positive")
    if processes > users or users % processes:
        raise ValueError(f"{users} users cannot be shared evenly by {processes} processes")
    if timeout_s <= duration_s:
        raise ValueError(f"timeout_s ({timeout_s}) must exceed duration_s ({duration_s})")
    base_url, path = split_url(url)
    env = {
        **os.environ,
        "MB_RATE": repr(float(target_rps)),
        "MB_USERS": str(users),
        "MB_PROCESSES": str(processes),
        "MB_ARRIVALS": arrivals,
        "MB_SEED": str(seed),
        "MB_PATH": path,
        "MB_HDR_OUT": str(hdr_out),
    }
    cmd = locust_command(netns=netns, base_url=base_url, users=users, processes=processes,
                         duration_s=duration_s)
    run = LocustRun(cmd, env, hdr_out=hdr_out, log_path=log_path, duration_s=duration_s,
                    timeout_s=timeout_s)
    return run.start()
