"""The machine's own noise: CPU steal, CPU pressure, other processes' CPU and the run queue,
per measurement window, and whether the window is contaminated (issue #21).

These machines are virtual and shared. A neighbour that takes the CPU shows as *steal*
(the `steal` column of /proc/stat: time a vCPU wanted to run and the hypervisor ran
someone else); a process on this machine that is not the run's own shows as *foreign* CPU;
both leave the mesh less CPU than a quiet machine would, and move latency (p99 first).

Where the numbers come from. A window's two ends are *marks* (`mark()`): the machine's
CPU ticks per CPU and pressure totals (/proc/stat, /proc/pressure/cpu) and every process's
CPU time (/proc/PID/stat, whose utime + stime the kernel scales to the precise runtime),
taken by the orchestrator right before and right after the window. In between, the
resource sampler (bench/probes/resources.py) writes one "host" row per sweep (`read_host()`):

    {"ts", "mono", "seq", "host": {"cpus": [[user, nice, system, idle, iowait, irq,
     softirq, steal], ...] (ticks, one list per CPU), "psi": [some_us, full_us] | null,
     "running": procs_running, "blocked": procs_blocked}}

`summarize()` turns them into rows of source "noise" (entity "host"):

- steal_share: steal ticks over all ticks of every CPU between the marks (a share of the
  machine's capacity); steal_max_cpu_share: the most stolen CPU's; steal_peak_share: the
  largest one-sweep share (sampler rows).
- foreign_cores / foreign_share: the CPU time, over the window, of every process that is
  not the run's own (the run's own: the orchestrator and everything below it, the sampler,
  the sampler's targets), in cores and as a share of the machine. Kernel threads count
  (foreign_kernel_cores says how much of it they are: kworkers flushing the run's own
  writes are among them); a process that started and exited inside the window is not
  seen. The three largest are named (`foreign_top`).
- psi_some_share / psi_full_share: the share of wall time in which at least one runnable
  task waited for a CPU (/proc/pressure/cpu "some"; "full" is 0 for CPU at system level).
  A contended machine shows here whoever is to blame; steal does not (the guest does
  not see it as waiting).
- runq_mean / runq_max: runnable tasks other than the sampler (procs_running - 1, per
  sweep).
- speed_cpu (MiB/s of SHA-256) and speed_mem (GiB/s of a 64 MiB copy): how fast the
  machine is right after a cell's window, its load stopped (`speed()`): a neighbour that
  takes the host's memory bandwidth or the cores' clock shows here and not as steal.
- lost_share: steal_share + foreign_share, the share of the machine someone else took. A
  window whose lost_share exceeds the scenario's `timing.noise_threshold` is
  *contaminated* (metric "contaminated" = 1); the threshold comes from the curve in
  benchmarks/results/noise-threshold.json.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.store import Cell, Sample

SOURCE = "noise"
ENTITY = "host"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PROC_STAT = Path("/proc/stat")
PSI_CPU = Path("/proc/pressure/cpu")
# /proc/stat cpuN columns: user nice system idle iowait irq softirq steal (guest, guest_nice
# are already inside user and nice)
BUSY = (0, 1, 2, 5, 6)
STEAL = 7


def _read(path: Path) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def parse_stat(text: bytes) -> tuple[list[list[int]], int, int]:
    """Per-CPU tick columns (user .. steal), procs_running, procs_blocked from /proc/stat."""
    cpus: list[list[int]] = []
    running = blocked = 0
    for line in text.split(b"\n"):
        if line.startswith(b"cpu") and line[3:4].isdigit():
            cols = [int(x) for x in line.split()[1:9]]
            cpus.append(cols + [0] * (8 - len(cols)))
        elif line.startswith(b"procs_running "):
            running = int(line.split()[1])
        elif line.startswith(b"procs_blocked "):
            blocked = int(line.split()[1])
    return cpus, running, blocked


def parse_psi(text: bytes) -> list[int]:
    """[some total us, full total us] from /proc/pressure/cpu."""
    totals = {}
    for line in text.split(b"\n"):
        parts = line.split()
        if parts and parts[-1].startswith(b"total="):
            totals[parts[0]] = int(parts[-1][6:])
    return [totals.get(b"some", 0), totals.get(b"full", 0)]


def read_psi() -> list[int] | None:
    """CPU pressure totals, None where the kernel has no PSI (or it is off)."""
    try:
        return parse_psi(_read(PSI_CPU))
    except OSError:
        return None


def read_host() -> dict[str, Any]:
    """One reading of the machine (the sampler's "host" field)."""
    cpus, running, blocked = parse_stat(_read(PROC_STAT))
    return {"cpus": cpus, "psi": read_psi(), "running": running, "blocked": blocked}


# ------------------------------------------------------------------ window summary


@dataclass(frozen=True)
class Noise:
    """A window's noise, as the manifest keeps it (shares of the machine's capacity)."""

    span_s: float
    ncpu: int
    steal_share: float
    steal_max_cpu_share: float
    steal_peak_share: float | None  # the largest one-sweep share (None: no sampler rows)
    foreign_share: float
    foreign_cores: float
    foreign_kernel_cores: float
    psi_some_share: float | None
    psi_full_share: float | None
    runq_mean: float | None  # None: no sampler rows in the window
    runq_max: int | None
    sweeps: int
    foreign_top: tuple[dict[str, Any], ...] = ()
    # the machine's speed right after the window, its load stopped (speed()); None: not read
    cpu_mibps: float | None = None
    mem_gibps: float | None = None

    @property
    def lost_share(self) -> float:
        return self.steal_share + self.foreign_share

    def contaminated(self, threshold: float) -> bool:
        return self.lost_share > threshold

    def reason(self, threshold: float) -> str:
        """Why the window is contaminated ("" when it is not)."""
        if not self.contaminated(threshold):
            return ""
        who = ", ".join(f"{t['comm']} {t['cores']:.2f}" for t in self.foreign_top[:2])
        return (f"{100 * self.lost_share:.1f} % of the CPU taken by others (steal "
                f"{100 * self.steal_share:.1f} %, other processes "
                f"{100 * self.foreign_share:.1f} %{f': {who} cores' if who else ''}) "
                f"> {100 * threshold:g} %")

    def record(self, threshold: float) -> dict[str, Any]:
        d = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in self.__dict__.items()}
        d["foreign_top"] = list(self.foreign_top)
        return {**d, "lost_share": round(self.lost_share, 4),
                "contaminated": self.contaminated(threshold), "reason": self.reason(threshold)}

    def samples(self, cell: Cell, threshold: float, ts: float,
                labels: dict[str, Any]) -> list[Sample]:
        rows = [("steal_share", "share", self.steal_share),
                ("steal_max_cpu_share", "share", self.steal_max_cpu_share),
                ("steal_peak_share", "share", self.steal_peak_share),
                ("foreign_share", "share", self.foreign_share),
                ("foreign_cores", "cores", self.foreign_cores),
                ("foreign_kernel_cores", "cores", self.foreign_kernel_cores),
                ("psi_some_share", "share", self.psi_some_share),
                ("psi_full_share", "share", self.psi_full_share),
                ("runq_mean", "tasks", self.runq_mean),
                ("runq_max", "tasks", None if self.runq_max is None else float(self.runq_max)),
                ("lost_share", "share", self.lost_share),
                ("speed_cpu", "MiB/s", self.cpu_mibps),
                ("speed_mem", "GiB/s", self.mem_gibps),
                ("contaminated", "bool", 1.0 if self.contaminated(threshold) else 0.0)]
        lab = {**labels, "sweeps": self.sweeps, "threshold": threshold, "span_s": self.span_s}
        return [Sample.for_cell(cell, source=SOURCE, metric=m, unit=u, value=v,
                                entity=ENTITY, ts=ts, labels=lab)
                for m, u, v in rows if v is not None]


def _host_rows(path: Path, offset: int, t0: float, t1: float) -> list[dict[str, Any]]:
    """The sampler's host rows inside [t0, t1], read from `offset` (the file's size at the
    window's start: rows are appended in time order, so nothing before it is needed)."""
    out = []
    with open(path, "rb") as f:
        f.seek(offset)
        for raw in f:
            line = raw.decode(errors="replace")
            if '"host"' not in line:
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # a crash can cut the last line short
            ts = row.get("ts", 0)
            if ts > t1 + 60:
                break
            if t0 <= ts <= t1 and "host" in row:
                out.append(row)
    return out


def _deltas(a: list[list[int]], b: list[list[int]]) -> list[list[int]]:
    return [[y - x for x, y in zip(ca, cb)] for ca, cb in zip(a, b)]


def summarize(a: Mark, b: Mark, own: set[int], sampler_out: Path | None = None,
              own_cgroups: tuple[str, ...] = ()) -> Noise | str:
    """The noise between two marks, or why there is none: steal and pressure from the
    machine's counters at the marks, other processes' CPU from the marks' process scans
    (`own`: the run's root processes), the one-second steal peak and the run queue from
    the sampler's host rows in between (when `sampler_out` has any)."""
    span = b.mono - a.mono
    if span <= 0 or len(a.cpus) != len(b.cpus) or not a.cpus:
        return "no time between the window's ends, or the CPU count changed"
    ncpu = len(a.cpus)
    d = _deltas(a.cpus, b.cpus)
    total = sum(sum(x) for x in d)
    if total <= 0:
        return "no CPU ticks between the window's ends"
    f = foreign(a, b, own, own_cgroups=own_cgroups)
    hosts = _host_rows(sampler_out, a.sampler_offset, a.ts, b.ts) if (
        sampler_out is not None and sampler_out.exists()) else []
    peak = None
    for x, y in zip(hosts, hosts[1:]):
        dx = _deltas(x["host"]["cpus"], y["host"]["cpus"])
        tot = sum(sum(v) for v in dx)
        if tot > 0:
            peak = max(peak or 0.0, sum(v[STEAL] for v in dx) / tot)
    runq = [max(0, h["host"].get("running", 1) - 1) for h in hosts]
    psi_some = psi_full = None
    if a.psi is not None and b.psi is not None:
        psi_some = (b.psi[0] - a.psi[0]) / (span * 1e6)
        psi_full = (b.psi[1] - a.psi[1]) / (span * 1e6)
    return Noise(
        span_s=span, ncpu=ncpu, steal_share=sum(x[STEAL] for x in d) / total,
        steal_max_cpu_share=max(x[STEAL] / max(1, sum(x)) for x in d),
        steal_peak_share=peak, foreign_share=f.cores / ncpu, foreign_cores=f.cores,
        foreign_kernel_cores=f.kernel_cores, psi_some_share=psi_some,
        psi_full_share=psi_full, runq_mean=sum(runq) / len(runq) if runq else None,
        runq_max=max(runq) if runq else None, sweeps=len(hosts),
        foreign_top=tuple(f.top))


# ------------------------------------------------------------ who else used the CPU


@dataclass(frozen=True)
class Proc:
    comm: str
    ppid: int
    ticks: int  # utime + stime: the kernel scales them to the precise runtime
    start: int  # start time in ticks since boot: with the PID, the process's identity
    children: int = 0  # cutime + cstime: its children that exited and were reaped


@dataclass(frozen=True)
class Mark:
    """One end of a window: the clocks, the machine's CPU ticks and pressure, and every
    process's CPU time then."""

    ts: float
    mono: float
    cpus: list[list[int]]
    psi: list[int] | None
    procs: dict[int, Proc]
    sampler_offset: int = 0  # the sampler file's size then: its host rows are read from here


def scan() -> dict[int, Proc]:
    """Every process now, from /proc/PID/stat; processes that vanish while read are left
    out. ~2 ms for 70 processes: taken at a window's ends, never inside it."""
    out: dict[int, Proc] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            raw = _read(Path("/proc") / name / "stat")
        except OSError:
            continue
        close = raw.rfind(b")")
        f = raw[close + 2:].split()
        try:
            out[int(name)] = Proc(comm=raw[raw.find(b"(") + 1:close].decode(errors="replace"),
                                  ppid=int(f[1]), ticks=int(f[11]) + int(f[12]),
                                  start=int(f[19]), children=int(f[13]) + int(f[14]))
        except (IndexError, ValueError):
            continue
    return out


def mark(sampler_out: Path | None = None) -> Mark:
    """Now, as one end of a window; with the sampler's file, where its rows stand now."""
    cpus, _, _ = parse_stat(_read(PROC_STAT))
    try:
        offset = sampler_out.stat().st_size if sampler_out is not None else 0
    except FileNotFoundError:
        offset = 0
    return Mark(ts=time.time(), mono=time.monotonic(), cpus=cpus, psi=read_psi(),
                procs=scan(), sampler_offset=offset)


def descendants(procs: dict[int, Proc], roots: set[int]) -> set[int]:
    """`roots` and every process below them (by parent PID)."""
    children: dict[int, list[int]] = {}
    for pid, p in procs.items():
        children.setdefault(p.ppid, []).append(pid)
    out, todo = set(), list(roots)
    while todo:
        pid = todo.pop()
        if pid not in out:
            out.add(pid)
            todo += children.get(pid, [])
    return out


def is_kernel_thread(pid: int, p: Proc) -> bool:
    return pid == 2 or p.ppid == 2  # kthreadd and its children


@dataclass(frozen=True)
class Foreign:
    cores: float
    kernel_cores: float  # of which kernel threads (kworkers, ksoftirqd: may be the run's I/O)
    top: list[dict[str, Any]]


def read_cgroup(pid: int) -> str:
    try:
        return _read(Path("/proc") / str(pid) / "cgroup").decode(errors="replace")
    except OSError:
        return ""  # gone: judged by its PID's ancestry alone


def foreign(a: Mark, b: Mark, own: set[int], n: int = 3, own_cgroups: tuple[str, ...] = (),
            cgroup_of: Callable[[int], str] = read_cgroup) -> Foreign:
    """CPU of the processes that are not the run's own between two marks, in cores.

    Every process below `own` (the orchestrator, the sampler, the targets) is the run's,
    and so is one whose cgroup path holds one of `own_cgroups` (a kind cluster's). A
    process counts its own CPU time and its reaped children's (cutime + cstime), so that
    a short job that started and exited inside the window is seen through its parent; a
    process that was there at the first mark and is gone at the second is seen through
    its reaper's children's time, less what it had used before the window. A kernel
    thread that exited inside the window is not seen."""
    span = b.mono - a.mono
    mine = descendants(b.procs, own) | descendants(a.procs, own)
    used: dict[str, float] = {}
    total = kernel = 0.0

    def add(name: str, ticks: int, kthread: bool = False) -> None:
        nonlocal total, kernel
        s = ticks / CLK_TCK
        total += s
        kernel += s if kthread else 0.0
        used[name] = used.get(name, 0.0) + s

    def label(p: Proc, pid: int) -> str:
        # kworker/1:2-events: a kernel thread's name without its current work queue
        return p.comm.split("-", 1)[0] if is_kernel_thread(pid, p) else p.comm

    for pid, p in b.procs.items():
        if pid in mine:
            continue
        prev = a.procs.get(pid)
        if own_cgroups and p.ticks + p.children != (
                (prev.ticks + prev.children) if prev is not None else 0) and any(
                mark in cgroup_of(pid) for mark in own_cgroups):
            mine.add(pid)  # the cluster's (its reaped children too)
            continue
        if prev is not None and prev.start != p.start:
            prev = None  # another process on a reused PID: it counts from 0
        kthread = is_kernel_thread(pid, p)
        add(label(p, pid), p.ticks - (prev.ticks if prev else 0), kthread)
        add(f"{label(p, pid)}: exited children", p.children - (prev.children if prev else 0))
    for pid, q in a.procs.items():
        now = b.procs.get(pid)
        if pid in mine or q.ppid in mine or (now is not None and now.start == q.start) or (
                is_kernel_thread(pid, q)):
            continue
        # gone: its reaper's children's time holds its whole life, less what it had
        reaper = b.procs.get(q.ppid)
        name = f"{label(reaper, q.ppid)}: exited children" if reaper else "exited processes"
        add(name, -(q.ticks + q.children))
    if span <= 0:
        return Foreign(0.0, 0.0, [])
    top = sorted(((c, s) for c, s in used.items() if s > 0), key=lambda kv: -kv[1])[:n]
    return Foreign(max(0.0, total) / span, max(0.0, kernel) / span,
                   [{"comm": c, "cores": round(s / span, 3)} for c, s in top])


# ------------------------------------------------------------------ a run's summary


def summary(entries: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The manifest's `noise`: how many cells were measured for noise, contaminated (in
    their last attempt), re-run; the worst shares seen in any window."""
    measured = [e for e in entries if "noisy" in e]
    windows = [n for e in entries for a in (e, *e.get("attempts", ()))
               for n in (a.get("noise"), a.get("noise_reference")) if n]

    def worst(key: str) -> float | None:
        vals = [n[key] for n in windows if n.get(key) is not None]
        return round(max(vals), 4) if vals else None

    return {"cells": len(entries), "measured": len(measured),
            "contaminated": sum(1 for e in measured if e["noisy"]),
            "rerun": sum(1 for e in entries if e.get("attempts")),
            "attempts_set_aside": sum(len(e.get("attempts", ())) for e in entries),
            "worst": {k: worst(k) for k in ("lost_share", "steal_share", "steal_peak_share",
                                             "foreign_share", "psi_some_share")}}


# ------------------------------------------------------------------ the machine's speed

SPEED_HASH_MIB = 2
SPEED_COPY_MIB = 64  # above any last-level cache: main memory's bandwidth


def speed(rounds: int = 3) -> dict[str, float]:
    """How fast this machine is right now, with nothing of the run's load going: SHA-256
    over 2 MiB (MiB/s: the cores' speed, their clock and what a neighbour leaves of the
    shared caches) and a 64 MiB copy (GiB/s: memory bandwidth), the best of `rounds`
    (~100 ms in all). A neighbour that takes the hypervisor's memory bandwidth or the
    core's frequency shows here, not as steal."""
    block = bytes(SPEED_HASH_MIB << 20)
    src = bytearray(b"\x01") * (SPEED_COPY_MIB << 20)
    dst = bytearray(SPEED_COPY_MIB << 20)
    dst[:] = src  # touch every page first: page faults are not bandwidth
    hash_s = copy_s = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        hashlib.sha256(block).digest()
        t1 = time.perf_counter()
        dst[:] = src
        t2 = time.perf_counter()
        hash_s, copy_s = min(hash_s, t1 - t0), min(copy_s, t2 - t1)
    return {"cpu_mibps": SPEED_HASH_MIB / hash_s, "mem_gibps": SPEED_COPY_MIB / 1024 / copy_s}


# ------------------------------------------------------------------ doctor


def psi_avg60() -> float | None:
    """CPU pressure "some" over the last minute as a share; None without PSI."""
    try:
        text = _read(PSI_CPU)
    except OSError:
        return None
    for line in text.split(b"\n"):
        if line.startswith(b"some "):
            fields = dict(f.split(b"=", 1) for f in line.split()[1:] if b"=" in f)
            if b"avg60" in fields:
                return float(fields[b"avg60"]) / 100
    return None


def sample_now(seconds: float = 3.0) -> dict[str, float | None]:
    """Steal and busy shares of the machine over the next `seconds` (nothing of a run is
    running, so all busy CPU is someone else's), and CPU pressure over the last minute
    (PSI avg60) as shares."""
    a, _, _ = parse_stat(_read(PROC_STAT))
    time.sleep(seconds)
    b, _, _ = parse_stat(_read(PROC_STAT))
    d = [[y - x for x, y in zip(ca, cb)] for ca, cb in zip(a, b)]
    total = max(1, sum(sum(x) for x in d))
    avg60 = psi_avg60()
    return {"steal_share": sum(x[STEAL] for x in d) / total,
            "busy_share": sum(x[i] for x in d for i in BUSY) / total,
            "psi_some_avg60": avg60}
