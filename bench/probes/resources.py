"""CPU and memory of mesh processes: a sampler in its own process, and window summaries.

Run the sampler with `ResourceSampler` (a context manager) or directly:

    python -m bench.probes.resources --targets targets.json --out resources.jsonl \
        --interval 1.0 --pss-interval 5.0 [--stat-interval 1.0]

It lives in its own process, at raised priority where allowed, because under CPU
saturation a Python thread in the orchestrator stalls for seconds. It re-reads the
targets file (see `bench.probes.processes.write_targets`) whenever it changes, and
appends one JSON line per target per sweep, flushed every sweep, so data survive a crash:

    {"ts", "mono", "seq", "pid", "entity", "role", "pod", "namespace", "node", "mode",
     "cpu_ns", "rss_bytes"[, "cpu_ticks_s", "threads"][, "pss_bytes", "uss_bytes"]}

plus one "host" row per sweep, before the process rows: the machine's steal, pressure,
run queue (bench/probes/noise.py reads them);
{"...", "gone": true} once when a process has exited, {"...", "error": reason} when
it cannot be read, {"ts", "mono", "seq", "gap_s"} when a sweep starts more than two
intervals after the previous one, a "meta" line at start, and its own row (role
"sampler", with "sweep_s", the previous sweep's duration) every sweep.

Cost. psutil is left for discovery and metadata: the hot path reads /proc directly, one
syscall per file on descriptors held open, because psutil's per-process objects cost
~8x as much per sweep (benchmarks/bench_sampler.py). Every sweep reads each target's CPU
clock and /proc/PID/statm (RSS). The dearer files are read for a rotating share of the
targets per sweep, each target once per its interval, spread over the sweeps in between
rather than in one burst: /proc/PID/stat ("cpu_ticks_s", "threads": every
--stat-interval, and whenever the CPU clock cannot be read) and smaps_rollup ("pss_bytes",
"uss_bytes": every --pss-interval; a page-table walk in the kernel, the dearest read).

CPU source. `cpu_ns` is the kernel's process-wide CPU clock, read with
clock_gettime(MAKE_PROCESS_CPUCLOCK(pid, CPUCLOCK_SCHED)) -- the clock id glibc's
clock_getcpuclockid() builds. It is sum_exec_runtime in nanoseconds over all live
threads plus every thread that has exited (signal->sum_sched_runtime), costs one syscall
and no parsing, and needs no ptrace permission. The alternatives are worse, checked on
this kernel (6.18): /proc/PID/schedstat is the main thread only (0.34 s of a 1.14 s
process); summing /proc/PID/task/*/schedstat loses every exited thread; utime+stime from
/proc/PID/stat includes exited threads but ticks at 10 ms (up to 20 ms error per reading,
33 % of a 1 s window at 0.06 cores). `cpu_ticks_s` (utime+stime) is recorded as well, as
a cross-check and as the fallback when the clock cannot be read.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import select
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Self

from bench.errors import BenchError
from bench.probes.noise import read_host
from bench.probes.processes import DATAPLANE_ROLES, Target, proxy_of, read_targets
from bench.store import Cell, Sample

SAMPLER_ROLE = "sampler"
SOURCE = "resources"
MIB = 1024 * 1024
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
_CPUCLOCK_SCHED = 2
_PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # so `-m bench...` imports without install
_GONE_STATES = (b"Z", b"X")
# rows read within this long of each other share one time stamp (0.02 % of a 1 s window)
STAMP_REUSE_S = 0.0002  # a zombie has exited; its counters no longer move


def process_cpu_ns(pid: int) -> int:
    """CPU time of a whole process (all threads, live and exited) in ns. OSError if gone."""
    return time.clock_gettime_ns(((~pid) << 3) | _CPUCLOCK_SCHED)


_O_READ = os.O_RDONLY | os.O_CLOEXEC


def _kb(text: bytes, key: bytes) -> int:
    """The number on smaps_rollup's line `key` ("\\nPss:"), 0 if absent."""
    i = text.find(key)
    if i < 0:
        return 0
    i += len(key)
    return int(text[i:text.index(b"k", i)])  # "    1234 kB"; int() skips the spaces


def parse_smaps_rollup(text: bytes) -> tuple[int, int] | None:
    """(PSS, USS) in bytes from the text of smaps_rollup; None for a process without memory.

    USS counts Private_Clean + Private_Dirty + Private_Hugetlb, as psutil does."""
    if b"\nPss:" not in text:
        return None
    uss = (_kb(text, b"\nPrivate_Clean:") + _kb(text, b"\nPrivate_Dirty:")
           + _kb(text, b"\nPrivate_Hugetlb:"))
    return _kb(text, b"\nPss:") * 1024, uss * 1024


def read_smaps_rollup(pid: int) -> tuple[int, int] | None:
    """(PSS, USS) in bytes from /proc/PID/smaps_rollup; None for a process without memory.

    Needs ptrace-read access to the process (PermissionError otherwise).
    """
    with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
        return parse_smaps_rollup(f.read())


class _Rotation:
    """Which targets a sweep reads an expensive file of: a rotating share of them, so that
    each is read once per `every` seconds and the reads are spread over the sweeps in
    between rather than made for all targets in one sweep. `every` <= 0: never."""

    def __init__(self, every: float, interval: float) -> None:
        self.share = interval / every if every > 0 else 0.0  # of the targets, per sweep
        self.credit = 0.0
        self.cursor = 0

    def pick(self, n: int) -> tuple[int, int]:
        """(start, count) for this sweep over n targets: index i is picked when
        (i - start) % n < count."""
        if self.share <= 0 or n == 0:
            return 0, 0
        if self.share >= 1:
            return 0, n
        self.credit += n * self.share
        count = min(n, int(self.credit + 1e-9))  # 10 x 0.1 is 0.9999...
        self.credit -= count
        start = self.cursor % n
        self.cursor = (start + count) % n
        return start, count


class _Watched:
    """One target being sampled, its /proc files held open between sweeps.

    Every sweep reads the CPU clock (one syscall, no parsing) and /proc/PID/statm (RSS: one
    pread of a ~30-byte file). /proc/PID/stat (utime+stime ticks, threads; 3x statm's
    kernel time) and smaps_rollup (PSS, USS; a page-table walk, 30x) are read only for the
    share of targets `_Rotation` picks. Holding a file open is cheaper than reopening it
    (one pread against open+read+close) and pins the original process: once it has exited,
    reads fail with ESRCH even if the PID number is reused.
    """

    __slots__ = ("target", "prefix", "clock", "statm_fd", "stat_fd", "smaps_fd", "last_error")

    def __init__(self, target: Target) -> None:
        self.target = target
        static = {
            "pid": target.pid, "entity": target.entity, "role": str(target.role),
            "pod": target.pod, "namespace": target.namespace, "node": target.node,
            "mode": target.mode,
        }
        # rows are the static fields plus a few numbers: encode the static part once
        self.prefix = json.dumps(static, separators=(",", ":"))[:-1]
        self.clock = ((~target.pid) << 3) | _CPUCLOCK_SCHED  # the process's CPU clock id
        self.statm_fd: int | None = None
        self.stat_fd: int | None = None
        self.smaps_fd: int | None = None
        self.last_error = ""

    def close(self) -> None:
        for fd in (self.statm_fd, self.stat_fd, self.smaps_fd):
            if fd is not None:
                os.close(fd)
        self.statm_fd = self.stat_fd = self.smaps_fd = None

    def sample(self, stamp: str, with_pss: bool, with_stat: bool = True) -> tuple[str, bool]:
        """One JSON line for this sweep, and whether the process is gone."""
        pid = self.target.pid
        try:
            if self.statm_fd is None:
                self.statm_fd = os.open(f"/proc/{pid}/statm", _O_READ)
        except FileNotFoundError:
            return self._gone(stamp), True
        except OSError as e:
            return self._error(stamp, e), False
        # The clock is read by PID number *before* the held files: if a held file's read
        # then succeeds, the original process was alive when the clock was read.
        try:
            cpu = str(time.clock_gettime_ns(self.clock))
        except OSError:
            cpu = "null"
            with_stat = True  # the ticks are the fallback
        extra = ""
        try:
            if with_stat:
                if self.stat_fd is None:
                    self.stat_fd = os.open(f"/proc/{pid}/stat", _O_READ)
                raw = os.pread(self.stat_fd, 4096, 0)
                # comm may hold spaces and parentheses: fields start after the last ')'
                f = raw[raw.rfind(b")") + 2:].split(None, 18)
                if f[0] in _GONE_STATES:
                    return self._gone(stamp), True
                extra = (f',"cpu_ticks_s":{(int(f[11]) + int(f[12])) / CLK_TCK:.2f}'
                         f',"threads":{int(f[17])}')
            if with_pss:
                extra += self._pss()
            statm = os.pread(self.statm_fd, 128, 0).split(None, 2)
        except (ProcessLookupError, FileNotFoundError):
            return self._gone(stamp), True
        except OSError as e:
            return self._error(stamp, e), False
        if statm[0] == b"0":
            # no address space: a zombie (its counters no longer move) or being reaped
            return self._gone(stamp), True
        self.last_error = ""
        return (f'{self.prefix},{stamp},"cpu_ns":{cpu},"rss_bytes":{int(statm[1]) * PAGE_SIZE}'
                f'{extra}}}\n'), False

    def _pss(self) -> str:
        """The PSS/USS fields of a row; ProcessLookupError/FileNotFoundError when gone."""
        try:
            if self.smaps_fd is None:
                self.smaps_fd = os.open(f"/proc/{self.target.pid}/smaps_rollup", _O_READ)
            mem = parse_smaps_rollup(os.pread(self.smaps_fd, 4096, 0))
        except (ProcessLookupError, FileNotFoundError):
            raise
        except OSError as e:
            return f',"pss_error":{json.dumps(e.strerror or str(e))}'
        return "" if mem is None else f',"pss_bytes":{mem[0]},"uss_bytes":{mem[1]}'

    def _gone(self, stamp: str) -> str:
        self.close()
        return f'{self.prefix},{stamp},"gone":true}}\n'

    def _error(self, stamp: str, e: OSError) -> str:
        reason = e.strerror or str(e)
        if reason == self.last_error:
            return ""  # recorded once per distinct reason; retried every sweep
        self.last_error = reason
        return f'{self.prefix},{stamp},"error":{json.dumps(reason)}}}\n'


class _SamplerLoop:
    """The loop inside the sampler process."""

    def __init__(self, targets_path: Path, out_path: Path, interval: float,
                 pss_interval: float, parent_pid: int, stat_interval: float = 1.0) -> None:
        self.targets_path = targets_path
        self.interval = interval
        self.pss_interval = pss_interval
        self.parent_pid = parent_pid
        self.pss_turns = _Rotation(pss_interval, interval)
        self.stat_turns = _Rotation(stat_interval, interval)
        self.out = open(out_path, "a")  # noqa: SIM115 -- open for the process's life
        self.watched: dict[tuple[int, str], _Watched] = {}
        self.gone: set[tuple[int, str]] = set()
        self.me = _Watched(Target(pid=os.getpid(), role=SAMPLER_ROLE, entity=SAMPLER_ROLE))
        self.targets_key: tuple[int, int, int] | None = None
        self.stop = False
        self.wake_r, wake_w = os.pipe()
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w)  # a signal interrupts the select() between sweeps

    def on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.stop = True

    def reload_targets(self) -> None:
        try:
            st = os.stat(self.targets_path)
        except FileNotFoundError:
            return
        # write_targets replaces the file, so the inode changes even within one mtime tick
        key = (st.st_ino, st.st_mtime_ns, st.st_size)
        if key == self.targets_key:
            return
        try:
            targets = read_targets(self.targets_path)
        except (ValueError, TypeError, KeyError, OSError) as e:
            print(f"sampler: keeping old targets, cannot read {self.targets_path}: {e}",
                  file=sys.stderr)
            return
        self.targets_key = key
        wanted = {(t.pid, t.entity): t for t in targets}
        for k in set(self.watched) - set(wanted):
            self.watched.pop(k).close()
        for k, t in wanted.items():
            if k not in self.watched and k not in self.gone:
                self.watched[k] = _Watched(t)

    def sweep(self, seq: int, own_pss: bool, last_sweep_s: float) -> None:
        offset = time.time() - time.monotonic()
        lines = []
        items = list(self.watched.items())
        n = len(items)
        pss0, pss_n = self.pss_turns.pick(n)
        stat0, stat_n = self.stat_turns.pick(n)
        monotonic, clock_gettime_ns, pread = time.monotonic, time.clock_gettime_ns, os.pread
        # the machine first (steal, pressure, run queue: bench/probes/noise.py), so that a
        # window's noise and its processes' CPU are read at the same sweeps
        mono = monotonic()
        lines.append(f'{{"ts":{mono + offset:.6f},"mono":{mono:.6f},"seq":{seq},"host":'
                     f'{json.dumps(read_host(), separators=(",", ":"))}}}\n')
        stamp, stamp_at = "", -math.inf
        for i, (k, w) in enumerate(items):
            mono = monotonic()
            if mono - stamp_at > STAMP_REUSE_S:  # formatting two floats costs as much as a read
                stamp = f'"ts":{mono + offset:.6f},"mono":{mono:.6f},"seq":{seq}'
                stamp_at = mono
            with_pss, with_stat = (i - pss0) % n < pss_n, (i - stat0) % n < stat_n
            if w.statm_fd is not None and not (with_pss or with_stat):
                # the common row, inline (a call and its error handling cost as much as a
                # read); anything unusual is left to sample(), which reads afresh
                try:
                    cpu = clock_gettime_ns(w.clock)
                    statm = pread(w.statm_fd, 128, 0)
                except OSError:
                    statm = b"0"
                if statm[0] != 48:  # "0": no address space, gone (sample() says so)
                    lines.append(f'{w.prefix},{stamp},"cpu_ns":{cpu},"rss_bytes":'
                                 f'{int(statm.split(None, 2)[1]) * PAGE_SIZE}}}\n')
                    w.last_error = ""
                    continue
            line, gone = w.sample(stamp, with_pss, with_stat)
            lines.append(line)
            if gone:
                del self.watched[k]
                self.gone.add(k)
        mono = monotonic()
        line, _ = self.me.sample(
            f'"ts":{mono + offset:.6f},"mono":{mono:.6f},"seq":{seq},"sweep_s":{last_sweep_s:.6f}',
            own_pss)
        lines.append(line)
        # one write and flush per sweep: a crash loses at most the sweep in progress
        self.out.write("".join(lines))
        self.out.flush()

    def wait(self, seconds: float) -> None:
        # capped so that a dead parent is noticed within a second
        ready, _, _ = select.select([self.wake_r], [], [], min(seconds, 1.0))
        if ready:
            os.read(self.wake_r, 512)

    def run(self, meta: dict[str, Any]) -> None:
        self.out.write(json.dumps({"ts": time.time(), "mono": time.monotonic(), "meta": meta})
                       + "\n")
        seq, prev_start, last_pss, last_sweep_s = 0, -math.inf, -math.inf, 0.0
        next_t = time.monotonic()
        try:
            while not self.stop and os.getppid() == self.parent_pid:
                wait = next_t - time.monotonic()
                if wait > 0:
                    self.wait(wait)
                    continue
                start = time.monotonic()
                if start - prev_start > 2 * self.interval and seq > 0:
                    self.out.write(json.dumps({
                        "ts": time.time(), "mono": start, "seq": seq,
                        "gap_s": round(start - prev_start, 6)}) + "\n")
                self.reload_targets()
                # the sampler's own PSS, by time; half an interval of slack so that it does
                # not slip a whole sweep to jitter
                own_pss = (self.pss_interval > 0
                           and start - last_pss >= self.pss_interval - self.interval / 2)
                self.sweep(seq, own_pss, last_sweep_s)
                last_pss = start if own_pss else last_pss
                prev_start, seq = start, seq + 1
                now = time.monotonic()
                last_sweep_s = now - start
                # keep the grid; skip missed slots rather than sweeping back to back
                next_t += self.interval
                if next_t <= now:
                    next_t += math.ceil((now - next_t) / self.interval) * self.interval
        finally:
            for w in self.watched.values():
                w.close()
            self.me.close()
            self.out.close()


def main(argv: list[str] | None = None) -> int:
    """Entry point of the sampler process. Exits on SIGTERM/SIGINT or when its parent dies."""
    p = argparse.ArgumentParser(prog="python -m bench.probes.resources",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--targets", type=Path, required=True, help="JSON file from write_targets")
    p.add_argument("--out", type=Path, required=True, help="JSONL file, appended to")
    p.add_argument("--interval", type=float, default=1.0, help="seconds between sweeps")
    p.add_argument("--pss-interval", type=float, default=5.0,
                   help="seconds between PSS/USS reads; 0 turns them off")
    p.add_argument("--stat-interval", type=float, default=1.0,
                   help="seconds between reads of a target's stat (CPU ticks, threads)")
    p.add_argument("--nice", type=int, default=-5, help="absolute nice value to ask for")
    p.add_argument("--parent-pid", type=int, default=None,
                   help="exit when this is no longer the parent (default: the parent now)")
    args = p.parse_args(argv)
    if args.interval <= 0 or args.pss_interval < 0 or args.stat_interval <= 0:
        p.error("--interval and --stat-interval must be > 0, --pss-interval >= 0")
    parent = args.parent_pid if args.parent_pid is not None else os.getppid()
    if os.getppid() != parent:
        return 0  # the parent died before we got here
    try:
        os.setpriority(os.PRIO_PROCESS, 0, args.nice)
    except PermissionError:
        print(f"sampler: cannot set nice {args.nice}; sampling at normal priority",
              file=sys.stderr)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:  # up to three held-open /proc files per target
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    loop = _SamplerLoop(args.targets, args.out, args.interval, args.pss_interval, parent,
                        args.stat_interval)
    signal.signal(signal.SIGTERM, loop.on_signal)
    signal.signal(signal.SIGINT, loop.on_signal)
    loop.run({
        "pid": os.getpid(), "interval": args.interval, "pss_interval": args.pss_interval,
        "stat_interval": args.stat_interval, "nice": os.getpriority(os.PRIO_PROCESS, 0),
        "clk_tck": CLK_TCK, "ncpu": os.cpu_count(),
        "page_size": PAGE_SIZE, "cpu_source": "clock_gettime(CPUCLOCK_SCHED)",
        "rss_source": "statm", "pss_source": "smaps_rollup, spread over the sweeps",
    })
    return 0


class ResourceSampler:
    """Runs the sampler process for the duration of a `with` block.

        with ResourceSampler(run_dir / "targets.json", run_dir / "resources.jsonl"):
            ...  # write_targets(...) whenever processes come and go

    `start()` returns once the sampler has written its first line; `stop()` sends SIGTERM
    and waits (then SIGKILL). The sampler also exits on its own if this process dies.
    """

    def __init__(self, targets_path: Path, out_path: Path, interval: float = 1.0,
                 pss_interval: float = 5.0, nice: int = -5,
                 python: str = sys.executable, stat_interval: float = 1.0) -> None:
        self.targets_path = Path(targets_path)
        self.out_path = Path(out_path)
        self.interval = interval
        self.pss_interval = pss_interval
        self.stat_interval = stat_interval
        self.nice = nice
        self.python = python
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self, timeout: float = 10.0) -> Self:
        size0 = self.out_path.stat().st_size if self.out_path.exists() else 0
        self.proc = subprocess.Popen(
            [self.python, "-m", "bench.probes.resources", "--targets", str(self.targets_path),
             "--out", str(self.out_path), "--interval", str(self.interval),
             "--pss-interval", str(self.pss_interval), "--nice", str(self.nice),
             "--stat-interval", str(self.stat_interval),
             "--parent-pid", str(os.getpid())],
            # its own session: a Ctrl-C to the orchestrator's group does not cut samples short
            start_new_session=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(
                p for p in (str(_PACKAGE_ROOT), os.environ.get("PYTHONPATH", "")) if p)},
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"resource sampler exited at start with {self.proc.returncode}",
                                 hint="see its stderr above")
            if self.out_path.exists() and self.out_path.stat().st_size > size0:
                return self
            time.sleep(0.02)
        self.stop()
        raise BenchError(f"resource sampler wrote nothing to {self.out_path} in {timeout} s")

    def stop(self, timeout: float = 5.0) -> int | None:
        """Stop the sampler; returns its exit code (None if it was never started)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


# ---------------------------------------------------------------- window summaries


@dataclass(frozen=True)
class WindowSummary:
    """Rows for one window, and why entities were left out ("entity: reason")."""

    samples: tuple[Sample, ...]
    skipped: tuple[str, ...]


@dataclass(frozen=True)
class _EntityWindow:
    entity: str
    role: str
    labels: dict[str, Any]
    cores: float
    span_s: float
    n: int
    rss: dict[Any, int]  # sweep -> bytes, samples inside [t0, t1]
    pss: dict[Any, int]
    uss: dict[Any, int]


def _rows(path: Path, t1: float) -> Iterator[dict[str, Any]]:
    with open(path) as f:
        for line in f:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # a crash can cut the last line short
            # rows are appended in time order; the margin tolerates small wall-clock steps
            if row.get("ts", 0) > t1 + 60:
                return
            yield row


def _entity_window(rows: list[dict[str, Any]], t0: float, t1: float
                   ) -> _EntityWindow | str:
    """Summarise one entity's samples, or say why not."""
    before = [r for r in rows if r["ts"] <= t0]
    inside = [r for r in rows if t0 < r["ts"] <= t1]
    if inside:
        # entity names repeat across repetitions: an earlier process of the same name that
        # is gone by now is not this one's starting point
        before = [r for r in before if r["pid"] == inside[-1]["pid"]]
    used = before[-1:] + inside
    if len(used) < 2:
        return f"{len(used)} sample(s) in window"
    first, last = used[0], used[-1]
    if len({r["pid"] for r in used}) > 1:
        return "pid changed within window (restarted?)"
    # monotonic time is immune to wall-clock steps; synthetic rows may carry ts only
    clock = "mono" if "mono" in first and "mono" in last else "ts"
    span = last[clock] - first[clock]
    if span <= 0:
        return "no time between first and last sample"
    if first.get("cpu_ns") is not None and last.get("cpu_ns") is not None:
        cpu_s = (last["cpu_ns"] - first["cpu_ns"]) / 1e9
    elif "cpu_ticks_s" in first and "cpu_ticks_s" in last:
        cpu_s = last["cpu_ticks_s"] - first["cpu_ticks_s"]
    else:
        return "no CPU reading of one source at both ends (clock unreadable, no stat row)"
    if cpu_s < 0:
        return "CPU time went backwards"
    mem = [r for r in used if r["ts"] >= t0]

    return _EntityWindow(
        entity=last["entity"], role=last["role"],
        labels={k: last.get(k, "") for k in ("role", "pod", "namespace", "node")},
        cores=cpu_s / span, span_s=span, n=len(used),
        rss={r["_sweep"]: r["rss_bytes"] for r in mem},
        pss={r["_sweep"]: r["pss_bytes"] for r in mem if "pss_bytes" in r},
        uss={r["_sweep"]: r["uss_bytes"] for r in mem if "uss_bytes" in r},
    )


def _memory_samples(cell: Cell, entity: str, ts: float, labels: dict[str, Any],
                    rss: list[float], pss: list[float], uss: list[float]) -> list[Sample]:
    out = [
        Sample.for_cell(cell, source=SOURCE, metric="rss_mib", unit="MiB", entity=entity,
                        value=sum(rss) / len(rss) / MIB, ts=ts, labels=labels),
        Sample.for_cell(cell, source=SOURCE, metric="rss_max_mib", unit="MiB", entity=entity,
                        value=max(rss) / MIB, ts=ts, labels=labels),
    ]
    for metric, values in (("pss_mib", pss), ("uss_mib", uss)):
        if values:
            out.append(Sample.for_cell(cell, source=SOURCE, metric=metric, unit="MiB",
                                       entity=entity, value=sum(values) / len(values) / MIB,
                                       ts=ts, labels=labels))
    return out


def _aggregate(cell: Cell, entity: str, ts: float, labels: dict[str, Any],
               members: list[_EntityWindow], ref_span: float) -> list[Sample]:
    # A member that lived for part of the window counts for that part of it.
    share = [min(1.0, m.span_s / ref_span) for m in members]
    cores = sum(m.cores * w for m, w in zip(members, share))
    # RSS, read every sweep, is summed sweep by sweep, so the max is of the total, not a
    # sum of maxima.
    rss_by_sweep: dict[Any, float] = defaultdict(float)
    for m in members:
        for sweep, v in m.rss.items():
            rss_by_sweep[sweep] += v
    # PSS and USS are read for a rotating share of the targets per sweep, so no sweep holds
    # them all: the total is the sum of the members' means (a member weighted by its share
    # of the window, as its CPU is).
    means: list[list[float]] = []
    for attr in ("pss", "uss"):
        parts = [(sum(v.values()) / len(v), w) for m, w in zip(members, share)
                 if (v := getattr(m, attr))]
        means.append([sum(x * w for x, w in parts)] if parts else [])
    # "entities" counts proxies (a sidecar's Envoy and pilot-agent are one), "processes" all
    labels = {**labels, "entities": len({proxy_of(m.entity) for m in members}),
              "processes": len(members)}
    return [
        Sample.for_cell(cell, source=SOURCE, metric="cpu_cores", unit="cores", entity=entity,
                        value=cores, ts=ts, labels=labels),
        Sample.for_cell(cell, source=SOURCE, metric="samples", unit="count", entity=entity,
                        value=sum(m.n for m in members), ts=ts, labels=labels),
        *_memory_samples(cell, entity, ts, labels, list(rss_by_sweep.values()), *means),
    ]


def summarize_window(path: Path, t0: float, t1: float, cell: Cell) -> WindowSummary:
    """Summarise the sampler's JSONL over the window [t0, t1] (epoch seconds) for one cell.

    Per entity: "cpu_cores" = CPU time between the last sample at/before t0 (or the first
    one inside) and the last at/before t1, over the time between those two samples;
    "rss_mib" (mean), "rss_max_mib", "pss_mib", "uss_mib" (means, where read) over the
    samples inside the window; "samples" = samples used. Then "role:<role>" sums and
    "dataplane" (sidecar + ztunnel + waypoint), where RSS is summed per sweep, PSS and USS
    are sums of the members' means, and a process alive for part of the window adds its
    CPU, PSS and USS for that part only. Only targets
    whose mode is "" or `cell.mode` count. Entities with fewer than 2 samples (including
    unreadable ones), or whose PID changed, are skipped with a reason; processes that
    exited before t0 or first appear after t1 are left out silently. Exited processes
    contribute their samples up to exit, never zeros.
    """
    if t1 <= t0:
        raise ValueError(f"empty window: t0={t0} t1={t1}")
    by_entity: dict[str, list[dict[str, Any]]] = defaultdict(list)
    errors: dict[str, str] = {}
    gone_at: dict[tuple[str, int], float] = {}
    started = 0  # sampler starts seen: seq restarts at 0 when a sampler appends to the file
    for row in _rows(Path(path), t1):
        started += "meta" in row
        # the sweep a row belongs to, for per-sweep memory sums
        row["_sweep"] = (started, row.get("seq", row.get("ts")))
        if "entity" not in row or row["ts"] > t1 or row.get("mode", "") not in ("", cell.mode):
            continue
        if row.get("gone"):
            gone_at[(row["entity"], row["pid"])] = row["ts"]
        elif "error" in row:
            errors[row["entity"]] = row["error"]
        elif "rss_bytes" in row:
            by_entity[row["entity"]].append(row)
    windows: list[_EntityWindow] = []
    skipped: list[str] = []
    for entity in sorted(set(by_entity) | set(errors)):
        # a process that exited before the window is no part of it, not a skip
        rows = [r for r in by_entity.get(entity, [])
                if gone_at.get((entity, r["pid"]), math.inf) > t0]
        if not rows and entity not in errors:
            continue
        w = _entity_window(rows, t0, t1)
        if isinstance(w, str):
            why = f"; last error: {errors[entity]}" if entity in errors else ""
            skipped.append(f"{entity}: {w}{why}")
        else:
            windows.append(w)
    samples: list[Sample] = []
    for w in windows:
        samples += [
            Sample.for_cell(cell, source=SOURCE, metric="cpu_cores", unit="cores",
                            entity=w.entity, value=w.cores, ts=t1, labels=w.labels),
            Sample.for_cell(cell, source=SOURCE, metric="samples", unit="count",
                            entity=w.entity, value=w.n, ts=t1, labels=w.labels),
            *_memory_samples(cell, w.entity, t1, w.labels, list(w.rss.values()),
                             list(w.pss.values()), list(w.uss.values())),
        ]
    if windows:
        ref_span = max(w.span_s for w in windows)
        roles = sorted({w.role for w in windows} - {SAMPLER_ROLE})
        for role in roles:
            members = [w for w in windows if w.role == role]
            samples += _aggregate(cell, f"role:{role}", t1, {"role": role}, members, ref_span)
        proxies = [w for w in windows if w.role in DATAPLANE_ROLES]
        if proxies:
            samples += _aggregate(cell, "dataplane", t1, {"role": "dataplane"}, proxies,
                                  ref_span)
    return WindowSummary(samples=tuple(samples), skipped=tuple(skipped))


def per_krps(samples: tuple[Sample, ...] | list[Sample], achieved_rps: float) -> list[Sample]:
    """"cpu_cores_per_krps" for every proxy, proxy-role sum and "dataplane" cpu_cores row.

    Returns [] when nothing was achieved (achieved_rps <= 0): a cost per request of a cell
    that served none is undefined, not zero.
    """
    if not achieved_rps > 0:
        return []
    out = []
    for s in samples:
        role = (s.labels or {}).get("role", "")
        if s.metric == "cpu_cores" and (role in DATAPLANE_ROLES or role == "dataplane"):
            out.append(Sample(
                source=s.source, metric="cpu_cores_per_krps", unit="cores/krps",
                value=s.value / (achieved_rps / 1000), entity=s.entity, mode=s.mode,
                level=s.level, repetition=s.repetition, ts=s.ts,
                labels={**(s.labels or {}), "achieved_rps": achieved_rps},
            ))
    return out


if __name__ == "__main__":
    raise SystemExit(main())
