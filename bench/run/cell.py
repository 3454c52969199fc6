"""One measurement cell: a load level on a running mode. Locust starts, warms up, then the
window runs with every probe (its boundaries recorded); at its end the cell's rows are
collected from every source: Locust's and the kernel's timing, the hop probe, the resource
sampler (or the metrics API), and, when the scenario asks, the independent reference
client right before or after on the same deployment."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

from bench.backends.base import Deployment, LoadHandle
from bench.errors import BenchError, CellFailed, StorageError
from bench.load import hdr
from bench.load.driver import run_locust
from bench.load.reference import SOURCE_KERNEL as REFERENCE_KERNEL
from bench.load.reference import reference_cell
from bench.load.reference import to_samples as reference_to_samples
from bench.probes import client_latency, noise
from bench.probes.lifecycle import NothingToProbe, one_line
from bench.probes.processes import Target
from bench.probes.resources import per_krps
from bench.run.context import RunContext
from bench.store import Cell, Sample

LOCUST_START_S = 2.0  # Locust's own start-up, before its first request (an upper guess)
LOCUST_START_TIMEOUT_S = 30.0  # a busy machine imports gevent slowly; a hang is not that
IN_CLUSTER_START_S = 5.0


@dataclass
class CellOutcome:
    cell: Cell
    status: str
    reason: str = ""
    window: dict[str, float] | None = None
    summary: hdr.LatencySummary | None = None
    loadgen_pid: int | None = None
    kernel: hdr.LatencySummary | None = None
    reference: hdr.LatencySummary | None = None
    attempt: int = 1
    hdr: str = ""  # the HDR files' prefix, relative to the run directory
    noise: dict[str, Any] | None = None  # the window's (bench/probes/noise.py)
    noise_reference: dict[str, Any] | None = None  # the reference client's window's

    @property
    def noisy(self) -> str:
        """Why the cell is contaminated ("" when it is not, or was not measured)."""
        for what, n in (("window", self.noise), ("reference window", self.noise_reference)):
            if n and n.get("contaminated"):
                return f"{what}: {n['reason']}"
        return ""


def in_cluster(dep: Deployment) -> bool:
    """Whether the load generator runs in the cluster's pods (a kube backend)."""
    return bool(dep.info.get("load", {}).get("where") == "in-cluster")


def make_kernel_latency(ok: bool) -> Any:
    """The factory of the kernel-timed latency probe (a ModeProbe's `make`)."""

    def make(dep: Deployment) -> Any:
        if not ok:
            return None
        if in_cluster(dep):
            raise NothingToProbe("the load generator runs in the cluster: latency is "
                                 "Locust's own timing there")
        return client_latency.ClientLatencyProbe(url_port(dep.url))

    return make


def make_hops(ok: bool) -> Any:
    """The factory of the per-hop probe (a ModeProbe's `make`)."""

    def make(dep: Deployment) -> Any:
        if not ok or not dep.mesh.proxies:
            return None
        from bench.probes.hops import HopProbe, targets_for

        targets = targets_for(dep)
        if not targets:  # a kube backend whose host cannot see the pods' processes
            raise NothingToProbe("no proxy process of the mesh is visible from this host, "
                                 "so there is no per-hop data")
        return HopProbe(targets)

    return make


def guarded(ctx: RunContext, cell: Cell, dep: Deployment, attempt: int = 1) -> CellOutcome:
    """run(), with any error of the harness or the OS recorded as the cell's failure (a
    full results disk still stops the run)."""
    try:
        return run(ctx, cell, dep, attempt=attempt)
    except StorageError:
        raise
    except (BenchError, OSError) as e:
        return CellOutcome(cell, "failed", one_line(e), attempt=attempt)


def _start_load(ctx: RunContext, cell: Cell, dep: Deployment, duration: float,
                hdr_out: Any, log_path: Any) -> LoadHandle:
    s = ctx.s
    if in_cluster(dep):
        pods = ctx.abilities.in_cluster_load
        if pods is None:
            raise CellFailed(f"the {ctx.backend.name} backend put the load generator in the "
                             "cluster but cannot start it there")
        return pods.start_load(  # type: ignore[no-any-return]
            cell=cell.id, target_rps=cell.level, duration_s=duration, hdr_out=hdr_out,
            log_path=log_path, timeout_s=duration + 60)
    load = run_locust(
        netns=dep.load_netns, url=dep.url + "/", target_rps=cell.level,
        users=s.load.connections, processes=s.load.processes, duration_s=duration,
        hdr_out=hdr_out, log_path=log_path, timeout_s=duration + 30,
        arrivals=s.load.arrivals, seed=s.seed)
    klat = ctx.kernel_latency.probe if ctx.kernel_latency else None
    if klat is not None:
        klat.watch(load.pid)  # Locust is still importing: no socket is open yet
    return load


def run(ctx: RunContext, cell: Cell, dep: Deployment, twin: bool = False,
        attempt: int = 1) -> CellOutcome:
    """One attempt at the cell (a contaminated cell is run again as attempt 2, ...: its
    rows carry the label "attempt", its HDR files their own name)."""
    s = ctx.s
    hdr_out = ctx.store.hdr_path(cell, attempt)
    if twin:
        hdr_out = hdr_out.with_name(f"{cell.id}-probes-off.jsonl")
    pods = in_cluster(dep)
    with_ref = s.load.reference and not pods and not twin
    # the reference runs before Locust in even repetitions, after it in odd ones, so that
    # drift within a cell does not always favour the same client
    ref_first = with_ref and cell.repetition % 2 == 0
    early_ref = reference(ctx, cell, dep, attempt) if ref_first else (None, None)
    # Locust in pods starts through `kubectl exec` and waits for workers: give it longer
    start_s = IN_CLUSTER_START_S if pods else LOCUST_START_S
    duration = start_s + s.timing.warmup_s + s.timing.window_s + 1.0
    log_path = ctx.store.dir / "logs" / f"locust-{hdr_out.stem}.log"
    load = _start_load(ctx, cell, dep, duration, hdr_out, log_path)
    ctx.phase(cell.repetition, cell.mode, "warm-up", cell=cell.id, loadgen_pid=load.pid)
    try:
        # in a cluster, load.pid is the local kubectl, not Locust: not a loadgen target
        extra = [] if pods else [Target(pid=load.pid, role="loadgen", entity="locust",
                                        mode=cell.mode)]
        ctx.watch(dep, cell.mode, extra)
        if pods:  # the pods' files are copied at the end: Locust's start is not visible
            ctx.sleep_checking(dep, start_s + s.timing.warmup_s, load)
        else:  # warm-up counts from Locust's test start, not from a guess of it
            local: Any = load
            ctx.wait_checking(dep, lambda: bool(local.started(s.load.processes)),
                              LOCUST_START_TIMEOUT_S, "Locust's test start", load)
            ctx.sleep_checking(dep, s.timing.warmup_s, load)
        if ctx.hops is not None:
            ctx.hops.reset()
        ctx.phase(cell.repetition, cell.mode, "window", cell=cell.id, loadgen_pid=load.pid)
        m0 = ctx.noise_mark()
        w0 = (time.time(), time.monotonic())
        ctx.sleep_checking(dep, s.timing.window_s, load)
        w1 = (time.time(), time.monotonic())
        m1 = ctx.noise_mark()
        ctx.phase(cell.repetition, cell.mode, "collect", cell=cell.id)
        hop_hists = ctx.hops.read(cell) if ctx.hops is not None else None
        # read while Locust writes its last interval (it ends at the next whole second)
        kernel_got = kernel_read(ctx, cell)
        if pods:
            load.wait()
        else:  # the window is recorded: Locust's last second and shutdown are not needed
            load.finish_after(w1[0], processes=s.load.processes)  # type: ignore[attr-defined]
    except CellFailed as e:
        return CellOutcome(cell, "failed", e.one_line(), loadgen_pid=load.pid,
                           attempt=attempt)
    finally:
        load.stop()
        ctx.watch(dep, cell.mode)
    window = {"start": w0[0], "end": w1[0], "start_mono": w0[1], "end_mono": w1[1]}
    # the machine's own speed, now that the load has stopped (bench/probes/noise.py)
    machine = noise.speed() if not twin else None
    paths = load.hdr_paths()
    summary = hdr.summarize(hdr.read_intervals(paths), w0[0], w1[0])
    cpu = load.cpu_percent_max(w0[0], w1[0])
    missing = "" if cpu is not None else load.cpu_missing
    if missing and not twin:
        ctx.book.failed("loadgen_cpu", f"{cell.id}: saturation not checked on CPU: {missing}")
    intended = hdr.read_intervals(paths, "hist_intended")
    lag = (hdr.summarize(hdr.read_intervals(paths, "hist_lag"), w0[0], w1[0])
           if intended else None)
    saturated = hdr.is_saturated(summary.achieved_rps, cell.level, cpu,
                                 lag.p50_us if lag is not None and lag.count else None,
                                 1e6 * s.load.connections / cell.level)
    rows = hdr.to_samples(cell, summary, cell.level, cpu, saturated=saturated,
                          cpu_missing=missing)
    if intended and lag is not None:
        rows += hdr.to_latency_samples(cell, hdr.summarize(intended, w0[0], w1[0]),
                                       source=hdr.SOURCE_INTENDED)
        rows += hdr.to_latency_samples(cell, lag, source=hdr.SOURCE_INTENDED,
                                       prefix="send_lag")
    kernel = kernel_rows(ctx, cell, kernel_got, w0[0], w1[0], summary.errors)
    if kernel is not None:
        rows += kernel[1]
    if twin:
        ctx.store.append([replace(r, source=r.source + "_probes_off") for r in rows]
                         + ctx.noise(cell, m0, "probes_off", m1)[0])
        return CellOutcome(cell, "ok" if summary.count else "failed", "", window, summary,
                           load.pid, kernel=kernel[0] if kernel else None)
    if hop_hists is not None:
        from bench.probes.hops import summarize as hop_rows

        rows += hop_rows(hop_hists, cell, ts=w1[0])
    res = ctx.resources.window(cell, w0[0], w1[0]) if ctx.resources is not None else None
    if res is not None:
        res_rows = with_label(res, phase="load")
        rows += res_rows + with_label(per_krps(res_rows, summary.achieved_rps), phase="load")
    api_rows = with_label(api_resources(ctx, cell), phase="load")
    rows += api_rows + with_label(per_krps(api_rows, summary.achieved_rps), phase="load")
    noise_rows, noise_rec = ctx.noise(cell, m0, "load", m1, attempt, speed=machine)
    rows += noise_rows
    ctx.store.append(with_label(rows, attempt=attempt) if attempt > 1 else rows)
    out = CellOutcome(cell, "ok", "", window, summary, load.pid,
                      kernel=kernel[0] if kernel else None, attempt=attempt,
                      hdr=str(hdr_out.relative_to(ctx.store.dir)), noise=noise_rec)
    if summary.count == 0:
        return replace(out, status="failed", reason="no request completed in the window",
                       summary=None, kernel=None)
    if with_ref and not ref_first:
        ctx.phase(cell.repetition, cell.mode, "reference", cell=cell.id)
    ref, ref_noise = early_ref if ref_first else reference(ctx, cell, dep, attempt) if (
        with_ref) else (None, None)
    return replace(out, reference=ref, noise_reference=ref_noise)


def api_resources(ctx: RunContext, cell: Cell) -> list[Sample]:
    """The metrics-API rows of a kube backend whose host cannot see the pods' processes
    ([] elsewhere: the host sampler has them)."""
    api = ctx.abilities.api_resources
    return list(api.window_resources(cell)) if api is not None else []


def kernel_read(ctx: RunContext, cell: Cell) -> tuple[Any, int] | None:
    """The kernel-timed requests seen since the last cell, and how many the ring buffer
    lost; the probe is emptied and stops watching the load generator. None (on record)
    when the probe has nothing for this cell."""
    if ctx.kernel_latency is None:
        return None
    got = ctx.kernel_latency.read(cell)  # None: this cell is on record as missing it
    probe = ctx.kernel_latency.probe
    if probe is not None:
        probe.unwatch_all()
        probe.clear()
    return got  # type: ignore[no-any-return]


def kernel_rows(ctx: RunContext, cell: Cell, got: tuple[Any, int] | None, t0: float,
                t1: float, errors: int) -> tuple[hdr.LatencySummary, list[Sample]] | None:
    """The window's kernel-timed requests (`got`, from kernel_read) as rows of source
    load_kernel. None (and on record) when there is nothing to say."""
    if got is None:
        return None
    req, lost = client_latency.window(got[0], t0, t1), got[1]
    if not len(req):
        ctx.book.missing("kernel_latency", cell.id,
                         "no request seen at the load generator's sockets")
        return None
    ksum = client_latency.summarize_requests(req, t0, t1, errors)
    spread = client_latency.schedule_spread(req.t_send, cell.level)
    return ksum, client_latency.to_samples(cell, ksum, spread, lost)


def reference(ctx: RunContext, cell: Cell, dep: Deployment, attempt: int = 1
              ) -> tuple[hdr.LatencySummary | None, dict[str, Any] | None]:
    """The independent reference client at the cell's rate and connections on the same
    deployment (source "reference"; timed by the kernel probe too: "reference_kernel"),
    and the noise of its window (it is a window of its own: a stolen one is flagged)."""
    s = ctx.s
    probe = ctx.kernel_latency.probe if ctx.kernel_latency else None

    suffix = f"-a{attempt}" if attempt > 1 else ""
    m0 = ctx.noise_mark()
    try:
        ref, rows, (t0, t1) = reference_cell(
            cell=cell, netns=dep.load_netns, url=dep.url + "/",
            connections=s.load.connections, warmup_s=s.timing.warmup_s,
            window_s=s.timing.window_s, arrivals=s.load.arrivals, seed=s.seed,
            out=ctx.store.dir / "logs" / f"reference-{cell.id}{suffix}.bin",
            on_start=probe.watch if probe is not None else None)
        if probe is not None:
            req = probe.requests(t0, t1)
            if len(req):
                ksum = client_latency.summarize_requests(req, t0, t1)
                rows += reference_to_samples(cell, ksum, cell.level, {},
                                             source=REFERENCE_KERNEL)
    except BenchError as e:
        ctx.book.failed("reference", f"{cell.id}: {e.one_line()}")
        return None, None
    finally:
        if probe is not None:
            probe.clear()
            probe.unwatch_all()
    # the reference client is the orchestrator's child: the run's own CPU, not foreign
    noise_rows, noise_rec = ctx.noise(cell, m0, "reference", attempt=attempt)
    rows += noise_rows
    ctx.store.append(with_label(rows, attempt=attempt) if attempt > 1 else rows)
    return ref, noise_rec


def probe_overhead_twin(ctx: RunContext, cell: Cell, dep: Deployment) -> None:
    """The same cell again right after, with the hop probe detached: its load rows go
    under source "load_probes_off", so the report can show what the probe costs."""
    hops = ctx.hops
    if hops is None:
        return
    hops.detach()
    try:
        outcome = run(ctx, cell, dep, twin=True)  # its noise rows: phase "probes_off"
        timed = outcome.kernel or outcome.summary
        ctx.progress(f"probe-off twin of {cell.id}: {outcome.status} "
                     + (f"p50 {timed.p50_us:.0f} us" if timed else outcome.reason))
    finally:
        hops.attach(dep)


def url_port(url: str) -> int:
    port = urlsplit(url).port
    if port is None:
        raise ValueError(f"deployment URL without a port: {url!r}")
    return port


def with_label(samples: Sequence[Sample], **labels: Any) -> list[Sample]:
    return [replace(s, labels={**(s.labels or {}), **labels}) for s in samples]
