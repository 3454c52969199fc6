"""The run: every (repetition, mode, load level) cell, modes interleaved, teardown always.

Phases per mode: provision -> idle footprint -> for each level: warm-up -> measurement window
(load and probes together, boundaries recorded) -> collect; teardown in `finally`, also on
Ctrl-C and SIGTERM. A cell that fails is recorded with its reason and the run goes on.
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from bench.backends.base import Backend, Deployment
from bench.errors import BenchError, CellFailed
from bench.load import hdr
from bench.load.driver import run_locust
from bench.probes.processes import Target, write_targets
from bench.probes.resources import ResourceSampler, per_krps, summarize_window
from bench.scenario import Scenario
from bench.store import Cell, RunStore, Sample

LOCUST_START_S = 2.0  # Locust's own start-up, before its first request
IN_CLUSTER_START_S = 5.0


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def mode_orders(modes: tuple[str, ...], repetitions: int, seed: int) -> list[list[str]]:
    """Repetition 1 keeps the scenario's order; later ones are shuffled with a recorded
    seed, so that drift of a noisy machine hits every mode alike."""
    rng = random.Random(seed)
    orders = [list(modes)]
    for _ in range(1, repetitions):
        order = list(modes)
        rng.shuffle(order)
        orders.append(order)
    return orders


@dataclass
class CellOutcome:
    cell: Cell
    status: str
    reason: str = ""
    window: dict[str, float] | None = None
    summary: hdr.LatencySummary | None = None
    loadgen_pid: int | None = None


class Runner:
    def __init__(self, scenario: Scenario, backend: Backend, store: RunStore,
                 progress: Callable[[str], None] = log) -> None:
        self.s = scenario
        self.backend = backend
        self.store = store
        self.progress = progress
        self.cells: list[dict[str, Any]] = []
        self.deployments: list[dict[str, Any]] = []
        self.sampler: ResourceSampler | None = None
        self.hops: Any = None  # a started bench.probes.hops.HopProbe for the current mode
        self.hops_ok = False
        self.targets_path = store.dir / "targets.json"
        self.resources_path = store.dir / "resources.jsonl"
        (store.dir / "logs").mkdir(exist_ok=True)

    # ---- the whole run --------------------------------------------------------------------
    def run(self) -> list[dict[str, Any]]:
        orders = mode_orders(self.s.modes, self.s.repetitions, self.s.seed)
        self.store.update(mode_order=orders)
        total = len(orders) * len(self.s.modes) * len(self.s.load.levels)
        self._start_sampler()
        try:
            for rep, order in enumerate(orders, start=1):
                for mode in order:
                    self._run_mode(rep, mode, total)
        finally:
            self._stop_sampler()
        return self.cells

    def _start_sampler(self) -> None:
        probes = dict(self.store.manifest.get("probes", {}))
        if not self.s.probes.resources.enabled:
            probes["resources"] = {"status": "skipped", "reason": "disabled in the scenario"}
        else:
            write_targets(self.targets_path, [])
            r = self.s.probes.resources
            self.sampler = ResourceSampler(self.targets_path, self.resources_path,
                                           interval=r.interval_s, pss_interval=r.pss_interval_s)
            self.sampler.start()
            probes["resources"] = {"status": "ok", "reason": "",
                                   "interval_s": r.interval_s, "pss_interval_s": r.pss_interval_s}
        if not self.s.probes.hops.enabled:
            probes["hops"] = {"status": "skipped", "reason": "disabled in the scenario"}
        else:
            from bench.probes.hops import probe_status

            probes["hops"] = probe_status()
            self.hops_ok = probes["hops"]["status"] == "ok"
        self.store.update(probes=probes)

    def _attach_hops(self, dep: Deployment) -> None:
        """Attach the per-hop probe to this mode's proxies before any load starts, so that
        every connection the load opens is seen from its first packet."""
        if not self.hops_ok or not dep.mesh.proxies:
            return
        from bench.probes.hops import HopProbe, targets_for

        targets = targets_for(dep)
        if not targets:  # a kube backend whose host cannot see the pods' processes
            self._probe_failed("hops", f"{dep.mesh.mode}: no proxy process of the mesh is "
                               "visible from this host, so there is no per-hop data")
            return
        probe = HopProbe(targets)
        try:
            probe.start()
        except Exception as e:  # compile or attach failed: recorded, and the run goes on
            probe.stop()
            reason = e.one_line() if isinstance(e, BenchError) else f"{type(e).__name__}: {e}"
            self._probe_failed("hops", f"{dep.mesh.mode}: {reason}")
            return
        self.hops = probe

    def _read_hops(self, cell: Cell) -> Any:
        if self.hops is None:
            return None
        try:
            return self.hops.read()
        except Exception as e:  # a failed read leaves this cell without hop rows, on record
            self._probe_failed("hops", f"{cell.id}: read failed: {type(e).__name__}: {e}")
            return None

    def _detach_hops(self) -> None:
        if self.hops is not None:
            self.hops.stop()
            self.hops = None

    def _note_skipped(self, cell: Cell, skipped: tuple[str, ...]) -> None:
        """Processes the resource window could not measure, in the manifest: the report
        then says which have no data instead of showing a zero."""
        if not skipped:
            return
        probes = dict(self.store.manifest.get("probes", {}))
        entry = dict(probes.get("resources", {}))
        entry["skipped"] = [*entry.get("skipped", []), *(f"{cell.id}: {s}" for s in skipped)]
        probes["resources"] = entry
        self.store.update(probes=probes)

    def _probe_failed(self, name: str, reason: str) -> None:
        probes = dict(self.store.manifest.get("probes", {}))
        entry = dict(probes.get(name, {}))
        entry.setdefault("failures", []).append(reason)
        probes[name] = entry
        self.store.update(probes=probes)
        self.progress(f"probe {name} failed: {reason}")

    def _stop_sampler(self) -> None:
        if self.sampler is not None:
            self.sampler.stop()
            self.sampler = None

    def _set_targets(self, dep: Deployment | None, mode: str,
                     extra: Sequence[Target] = ()) -> None:
        if self.sampler is None:
            return
        targets = [] if dep is None else [
            Target(pid=p.pid, role=p.role, entity=p.entity, pod=p.pod, namespace=p.namespace,
                   node=p.node, mode=mode) for p in dep.processes]
        write_targets(self.targets_path, [*targets, *extra])

    # ---- one mode -------------------------------------------------------------------------
    def _run_mode(self, rep: int, mode: str, total: int) -> None:
        cells = [Cell(rep, mode, lvl) for lvl in self.s.load.levels]
        t = time.monotonic()
        self.progress(f"r{rep} {mode}: provisioning")
        try:
            dep = self.backend.provision(mode)
        except BenchError as e:
            self.backend.teardown()
            for c in cells:
                self._record(CellOutcome(c, "failed", f"provision: {e.one_line()}"), total)
            return
        try:
            self.progress(f"r{rep} {mode}: ready in {time.monotonic() - t:.1f} s "
                          f"({len(dep.mesh.proxies)} proxies)")
            self._set_targets(dep, mode)
            self.deployments.append({"repetition": rep, "mode": mode, "processes": [
                {"pid": p.pid, "role": p.role, "entity": p.entity, "pod": p.pod, "node": p.node}
                for p in dep.processes]})
            self.store.update(deployments=self.deployments)
            if dep.info and self.s.backend != "local":
                self.store.update(deployment_info={**self.store.manifest.get(
                    "deployment_info", {}), f"r{rep}-{mode}": dep.info})
            self._idle(rep, mode)
            self._attach_hops(dep)
            for i, c in enumerate(cells):
                outcome = self._run_cell(c, dep)
                self._record(outcome, total)
                if (i == 0 and rep == 1 and self.hops is not None and outcome.status == "ok"
                        and self.s.probes.hops.overhead_check):
                    self._probe_overhead_twin(c, dep)
            self._push_experiments(rep, mode, dep)
        finally:
            self._detach_hops()
            self._set_targets(None, mode)
            self.backend.teardown()

    def _idle(self, rep: int, mode: str) -> None:
        """Footprint with no load: resources over a short quiet window after readiness."""
        if self.sampler is None:
            return
        t0 = time.time()
        time.sleep(self.s.timing.idle_s)
        t1 = time.time()
        idle = Cell(rep, mode, 0)
        res = summarize_window(self.resources_path, t0, t1, idle)
        self._note_skipped(idle, res.skipped)
        self.store.append(_with_label(res.samples, phase="idle"))

    def _push_experiments(self, rep: int, mode: str, dep: Deployment) -> None:
        """Each config change of the scenario, once per mode, after its load cells (the
        deployment is discarded afterwards, so a change never leaks into another cell)."""
        if not dep.mesh.proxies:
            return
        from bench.experiments import changed_mesh, exposure_samples, run_push

        cell = Cell(rep, mode, 0)
        configs = getattr(self.backend, "configs", None)
        dump = getattr(self.backend, "config_dump_bytes", None)
        if configs:
            self.store.append(exposure_samples(dep.mesh, configs, cell, dump_bytes=dump,
                                               sizes=self._served_sizes()))
        mesh = dep.mesh
        wire = self._attach_wire() if self.s.experiments else None
        try:
            for name in self.s.experiments:
                try:
                    outcome = run_push(self.backend, mesh, name,
                                       timeout_s=self.s.timing.ready_timeout_s, wire=wire)
                except BenchError as e:
                    self._probe_failed("xds", f"r{rep} {mode} {name}: {e.one_line()}")
                    return  # what the proxies hold is no longer known: no "after" exposure
                self._push_recorded(rep, mode, name, outcome, cell)
                mesh = changed_mesh(mesh, name)  # the next change applies on top of this one
        finally:
            if wire is not None:
                wire.stop()
        configs = getattr(self.backend, "configs", None)
        if configs and self.s.experiments:
            self.store.append(exposure_samples(mesh, configs, cell, state="after_changes",
                                               dump_bytes=dump, sizes=self._served_sizes()))

    def _served_sizes(self) -> dict[str, dict[str, tuple[int, int]]] | None:
        """Per proxy and xDS type, (bytes, resources) of the snapshot the control plane
        serves it."""
        cp = getattr(self.backend, "controlplane", None)
        if cp is None:
            return None
        nodes = cp.status()["nodes"]
        return {n: {t: (s["config_bytes"], s["resources"]) for t, s in v["types"].items()}
                for n, v in nodes.items()}

    def _attach_wire(self) -> Any:
        """The kernel view of pushes: a BCC probe on the control plane's process. Its status
        goes to the manifest (probes.push_kernel); None when it cannot run."""
        from bench.probes.pushwire import PushWireProbe, check

        probes = dict(self.store.manifest.get("probes", {}))
        if "push_kernel" not in probes:
            missing = check()
            probes["push_kernel"] = ({"status": "skipped", "reason": missing[0],
                                      "hint": missing[1]} if missing else
                                     {"status": "ok", "reason": ""})
            self.store.update(probes=probes)
        cp = getattr(self.backend, "controlplane", None)
        pid = cp.pid if cp is not None else (
            self.backend.controlplane_pid() if hasattr(self.backend, "controlplane_pid")
            else None)
        if probes["push_kernel"]["status"] != "ok" or pid is None:
            return None
        probe = PushWireProbe(pid)
        try:
            return probe.start()
        except BenchError as e:
            probe.stop()
            self._probe_failed("push_kernel", e.one_line())
            return None

    def _push_recorded(self, rep: int, mode: str, name: str, outcome: Any, cell: Cell) -> None:
        from bench.experiments import to_samples

        self.store.append(to_samples(outcome, cell))
        conv = max(outcome.converge_ms.values(), default=0.0)
        reached = (f"{outcome.bytes_total} B, last ACK after {conv:.0f} ms"
                   if outcome.updated else "no proxy's config changed")
        changed = (f" ({len(outcome.changed)} changed)"
                   if len(outcome.changed) != len(outcome.updated) else "")
        kernel = (f"; kernel: {outcome.kernel.sockets} sockets, {outcome.kernel.bytes} B"
                  if outcome.kernel is not None else "")
        self.progress(f"r{rep} {mode}: {name}: {len(outcome.updated)}/"
                      f"{len(outcome.proxies)} proxies updated{changed}, {reached}{kernel}"
                      + (f", {len(outcome.nacks)} NACKs" if outcome.nacks else ""))

    def _probe_overhead_twin(self, cell: Cell, dep: Deployment) -> None:
        """The same cell again right after, with the hop probe detached: its load rows go
        under source "load_probes_off", so the report can show what the probe costs."""
        self._detach_hops()
        try:
            outcome = self._run_cell(cell, dep, twin=True)
            self.progress(f"probe-off twin of {cell.id}: {outcome.status} "
                          + (f"p50 {outcome.summary.p50_us:.0f} us" if outcome.summary else
                             outcome.reason))
        finally:
            self._attach_hops(dep)

    def _run_cell(self, cell: Cell, dep: Deployment, twin: bool = False) -> CellOutcome:
        s = self.s
        hdr_out = self.store.hdr_path(cell)
        if twin:
            hdr_out = hdr_out.with_name(f"{cell.id}-probes-off.jsonl")
        in_cluster = dep.info.get("load", {}).get("where") == "in-cluster"
        # Locust in pods starts through `kubectl exec` and waits for workers: give it longer
        start_s = IN_CLUSTER_START_S if in_cluster else LOCUST_START_S
        duration = start_s + s.timing.warmup_s + s.timing.window_s + 1.0
        log_path = self.store.dir / "logs" / f"locust-{hdr_out.stem}.log"
        if in_cluster:
            load = self.backend.start_load(  # type: ignore[attr-defined]
                cell=cell.id, target_rps=cell.level, duration_s=duration, hdr_out=hdr_out,
                log_path=log_path, timeout_s=duration + 60)
        else:
            load = run_locust(
                netns=dep.load_netns, url=dep.url + "/", target_rps=cell.level,
                users=s.load.connections, processes=s.load.processes, duration_s=duration,
                hdr_out=hdr_out, log_path=log_path, timeout_s=duration + 30)
        self.store.update(current={"cell": cell.id, "loadgen_pid": load.pid})
        try:
            # in a cluster, load.pid is the local kubectl, not Locust: not a loadgen target
            extra = [] if in_cluster else [Target(pid=load.pid, role="loadgen",
                                                  entity="locust", mode=cell.mode)]
            self._set_targets(dep, cell.mode, extra)
            self._sleep_checking(dep, start_s + s.timing.warmup_s)
            if self.hops is not None:
                self.hops.reset()
            w0 = (time.time(), time.monotonic())
            self._sleep_checking(dep, s.timing.window_s)
            w1 = (time.time(), time.monotonic())
            hop_hists = self._read_hops(cell)
            load.wait()
        except CellFailed as e:
            return CellOutcome(cell, "failed", e.one_line(), loadgen_pid=load.pid)
        finally:
            load.stop()
            self._set_targets(dep, cell.mode)
        window = {"start": w0[0], "end": w1[0], "start_mono": w0[1], "end_mono": w1[1]}
        summary = hdr.summarize(hdr.read_intervals(load.hdr_paths()), w0[0], w1[0])
        cpu = load.cpu_percent_max(w0[0], w1[0])
        rows = hdr.to_samples(cell, summary, cell.level, cpu)
        if twin:
            self.store.append([replace(r, source="load_probes_off") for r in rows])
            return CellOutcome(cell, "ok" if summary.count else "failed", "", window, summary,
                               load.pid)
        if hop_hists is not None:
            from bench.probes.hops import summarize as hop_rows

            rows += hop_rows(hop_hists, cell, ts=w1[0])
        if self.sampler is not None:
            res = summarize_window(self.resources_path, w0[0], w1[0], cell)
            self._note_skipped(cell, res.skipped)
            res_rows = _with_label(res.samples, phase="load")
            rows += res_rows + _with_label(per_krps(res_rows, summary.achieved_rps), phase="load")
        self.store.append(rows)
        if summary.count == 0:
            return CellOutcome(cell, "failed", "no request completed in the window", window,
                               loadgen_pid=load.pid)
        return CellOutcome(cell, "ok", "", window, summary, load.pid)

    def _sleep_checking(self, dep: Deployment, seconds: float) -> None:
        """Sleep, but notice within ~0.5 s when a proxy or app of the mode has died."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            time.sleep(min(0.5, left))
            broken = self.backend.check(dep)
            if broken:
                raise CellFailed(f"process died mid-cell: {broken[0]}")

    def _record(self, o: CellOutcome, total: int) -> None:
        entry = {"cell": o.cell.id, "mode": o.cell.mode, "level": o.cell.level,
                 "repetition": o.cell.repetition, "status": o.status, "reason": o.reason,
                 "window": o.window, "loadgen_pid": o.loadgen_pid}
        self.cells.append(entry)
        self.store.update(cells=self.cells)
        n = len(self.cells)
        if o.summary is not None:
            sm = o.summary
            self.progress(f"[{n}/{total}] {o.cell.id}: p50 {sm.p50_us:.0f} us, p99 "
                          f"{sm.p99_us:.0f} us, {sm.achieved_rps:.0f}/{o.cell.level} rps, "
                          f"{sm.errors} errors")
        else:
            self.progress(f"[{n}/{total}] {o.cell.id}: FAILED: {o.reason}")


def _with_label(samples: Sequence[Sample], **labels: Any) -> list[Sample]:
    return [replace(s, labels={**(s.labels or {}), **labels}) for s in samples]

