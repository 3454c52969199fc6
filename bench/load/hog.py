"""A bounded CPU hog in a cgroup of its own: the stand-in for a neighbour that takes CPU.

    python -m bench.load.hog --share 0.4 --seconds 60 [--cpus 0,1] [--report hog.json]

It takes `share` of the machine's CPU (a CFS quota of share x CPUs on the cgroup's `cpu`
controller, v1 `cpu.cfs_quota_us` or v2 `cpu.max`) for at most `seconds`: one busy process
per CPU (pinned to `--cpus` when given), each of which also stops by itself at the
deadline. It detaches from whoever started it (a double fork), so that a run beside it sees
it as another's process, as a neighbour would be; it prints its PID and ends at the
deadline, or on SIGTERM. At the end it writes what it took, read from its cgroup (cpuacct
`cpuacct.usage` on v1, `cpu.stat` usage_usec on v2: the kernel's count, independent of the
harness), to --report as JSON: {"share", "seconds", "cpus", "wall_s", "usage_s", "cores"}.

On a virtual machine a neighbour's steal takes the vCPU away from the guest altogether; a
hog competes inside the guest under the same scheduler as the mesh. It is the stand-in the
threshold curve (benchmarks/bench_noise_threshold.py) is measured with; real steal is
recorded when it happens. Needs root (cgroups). Its cgroups are named meshbench-hog-<pid>.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from bench.errors import BenchError
from bench.probes.processes import alive

CG = Path("/sys/fs/cgroup")
PERIOD_US = 100_000
PREFIX = "meshbench-hog-"
_BUSY = ("import sys, time\n"
         "end = time.monotonic() + float(sys.argv[1])\n"
         "while time.monotonic() < end:\n"
         "    for _ in range(10000):\n"
         "        pass\n")


class _Cgroups:
    """The hog's cgroup(s): v1 cpu + cpuacct, or one v2 group."""

    def __init__(self, name: str) -> None:
        self.v1 = (CG / "cpu" / "cpu.cfs_quota_us").exists()
        if self.v1:
            self.dirs = [CG / "cpu" / name, CG / "cpuacct" / name]
        elif (CG / "cgroup.controllers").exists():
            self.dirs = [CG / name]
        else:
            raise BenchError("no cgroup cpu controller (v1 /sys/fs/cgroup/cpu or v2)",
                             hint="run as root on a Linux host with cgroups mounted")

    def make(self, share: float, ncpu: int) -> None:
        quota = max(1000, int(share * ncpu * PERIOD_US))
        if not self.v1:  # the root must hand the cpu controller down
            ctl = CG / "cgroup.subtree_control"
            if "cpu" not in ctl.read_text().split():
                ctl.write_text("+cpu")
        for d in self.dirs:
            d.mkdir(exist_ok=True)
        if self.v1:
            (self.dirs[0] / "cpu.cfs_period_us").write_text(str(PERIOD_US))
            (self.dirs[0] / "cpu.cfs_quota_us").write_text(str(quota))
        else:
            (self.dirs[0] / "cpu.max").write_text(f"{quota} {PERIOD_US}")

    def join(self, pid: int) -> None:
        for d in self.dirs:
            (d / "cgroup.procs").write_text(str(pid))

    def usage_s(self) -> float:
        if self.v1:
            return int((self.dirs[1] / "cpuacct.usage").read_text()) / 1e9
        for line in (self.dirs[0] / "cpu.stat").read_text().splitlines():
            if line.startswith("usage_usec "):
                return int(line.split()[1]) / 1e6
        return 0.0

    def remove(self) -> None:
        for d in self.dirs:
            for _ in range(50):  # empty once the busy processes are reaped
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.05)


def _run(share: float, seconds: float, cpus: list[int], report: Path | None) -> None:
    """The detached hog: its cgroup, one busy process per CPU, the deadline, the report."""
    ncpu = os.cpu_count() or 1
    cg = _Cgroups(f"{PREFIX}{os.getpid()}")
    cg.make(share, len(cpus) if cpus else ncpu)
    stop = False

    def on_term(signum: int, frame: Any) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    t0 = time.monotonic()
    procs = []
    try:
        for i in range(len(cpus) if cpus else ncpu):
            p = subprocess.Popen([sys.executable, "-c", _BUSY, str(seconds)],
                                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
            cg.join(p.pid)
            if cpus:
                os.sched_setaffinity(p.pid, {cpus[i % len(cpus)]})
            procs.append(p)
        while not stop and time.monotonic() - t0 < seconds and any(
                p.poll() is None for p in procs):
            time.sleep(0.1)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
        wall = time.monotonic() - t0
        usage = cg.usage_s()
        cg.remove()
        if report is not None:
            report.write_text(json.dumps({
                "share": share, "seconds": seconds, "cpus": cpus or list(range(ncpu)),
                "wall_s": round(wall, 3), "usage_s": round(usage, 3),
                "cores": round(usage / wall, 4) if wall > 0 else 0.0}))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.load.hog",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--share", type=float, required=True,
                   help="share of the machine's CPU to take, 0-1")
    p.add_argument("--seconds", type=float, required=True, help="at most this long (<= 3600)")
    p.add_argument("--cpus", default="", help="pin to these CPUs, e.g. 0,1 (default: all)")
    p.add_argument("--report", type=Path, default=None, help="JSON written at the end")
    args = p.parse_args(argv)
    if not 0 < args.share <= 1 or not 0 < args.seconds <= 3600:
        p.error("--share must be in (0, 1] and --seconds in (0, 3600]")
    try:
        cpus = [int(c) for c in args.cpus.split(",") if c]
    except ValueError:
        p.error(f"--cpus {args.cpus!r}: give CPU numbers, e.g. 0,1")
    if os.geteuid() != 0:
        print("meshbench hog: needs root (it makes cgroups)", file=sys.stderr)
        return 2
    # detach: the parent prints the daemon's PID and returns; the daemon's parent is init
    r, w = os.pipe()
    if os.fork() > 0:
        os.close(w)
        pid = os.read(r, 64).decode().strip()
        print(pid, flush=True)
        return 0 if pid.isdigit() else 1
    os.close(r)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    os.write(w, f"{os.getpid()}\n".encode())
    os.close(w)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):  # nobody waits on the daemon's output
        os.dup2(null, fd)
    try:
        _run(args.share, args.seconds, cpus, args.report)
    except Exception as e:  # the daemon has no caller to raise to: its report says it
        if args.report is not None:
            args.report.write_text(json.dumps({"error": f"{type(e).__name__}: {e}"}))
        os._exit(1)
    os._exit(0)


class CpuHog:
    """`with CpuHog(0.4, 60):` -- the hog for a block (at most `seconds`); `.report` after.

    Its PID is known, so stop() ends exactly it (SIGTERM, then SIGKILL to its group)."""

    def __init__(self, share: float, seconds: float, cpus: list[int] | None = None,
                 report: Path | None = None) -> None:
        self.share, self.seconds, self.cpus = share, seconds, cpus or []
        self.report_path = report or Path(f"/tmp/{PREFIX}{os.getpid()}-{id(self)}.json")
        self.pid: int | None = None
        self.report: dict[str, Any] = {}

    def start(self) -> Self:
        self.report_path.unlink(missing_ok=True)
        out = subprocess.run(
            [sys.executable, "-m", "bench.load.hog", "--share", str(self.share),
             "--seconds", str(self.seconds), "--cpus", ",".join(map(str, self.cpus)),
             "--report", str(self.report_path)],
            capture_output=True, text=True, timeout=30,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(
                x for x in (str(Path(__file__).resolve().parents[2]),
                            os.environ.get("PYTHONPATH", "")) if x)})
        if out.returncode != 0 or not out.stdout.strip().isdigit():
            raise BenchError(f"CPU hog did not start: {out.stderr.strip() or out.stdout}",
                             hint="it needs root and a cgroup cpu controller")
        self.pid = int(out.stdout.strip())
        return self

    def stop(self, timeout: float = 30.0) -> dict[str, Any]:
        """End the hog (if still running) and read its report ({} if it wrote none)."""
        if self.pid is not None:
            try:
                os.kill(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass  # it ended at its deadline; its report is below
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and alive(self.pid):
                time.sleep(0.05)
            if alive(self.pid):
                os.killpg(self.pid, signal.SIGKILL)
            self.pid = None
        if self.report_path.exists():
            self.report = json.loads(self.report_path.read_text())
            self.report_path.unlink()
        return self.report

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


if __name__ == "__main__":
    raise SystemExit(main())
