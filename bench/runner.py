"""The run: every (repetition, mode, load level) cell, modes interleaved, teardown always.

Phases per mode: provision -> idle footprint -> for each level: warm-up -> measurement window
(load and probes together, boundaries recorded) -> collect -> config-push experiments;
teardown in `finally`, also on Ctrl-C and SIGTERM. The phase under way is in the manifest
(`current`) and on stderr.

Faults: a cell that fails is recorded with its reason and the run goes on. When a process of
the mode's deployment dies (a proxy, the control plane, an app), that mode's remaining cells
and experiments of this repetition are recorded as skipped with the reason (manifest
`faults`), the mode is torn down, and the run goes on with the next mode. A dead probe
(the resource sampler, a BPF probe) leaves its source missing for the cells it touched
(manifest probes.<name>.missing) and is restarted before the next cell, on record
(probes.<name>.restarts); nothing is retried silently.
"""

from __future__ import annotations

import random
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from bench.backends.base import Backend, Deployment
from bench.errors import BenchError, CellFailed, ModeBroken, StorageError
from bench.faults import inject
from bench.load import hdr
from bench.load.driver import run_locust
from bench.load.reference import SOURCE_KERNEL as REFERENCE_KERNEL
from bench.load.reference import reference_cell
from bench.load.reference import to_samples as reference_to_samples
from bench.probes import client_latency
from bench.probes.lifecycle import ModeProbe, NothingToProbe, ProbeBook, one_line
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
    kernel: hdr.LatencySummary | None = None
    reference: hdr.LatencySummary | None = None


def unit_done(s: Scenario, manifest: dict[str, Any], rep: int, mode: str) -> bool:
    """Whether a (repetition, mode) of the run is complete: every cell recorded (ok, failed
    or skipped) and every experiment of the mode recorded."""
    cells = {c["cell"] for c in manifest.get("cells", [])}
    if any(Cell(rep, mode, lvl).id not in cells for lvl in s.load.levels):
        return False
    from bench.mesh import build

    if not s.experiments or not build(s, mode).proxies:
        return True
    done = {e["experiment"] for e in manifest.get("experiments", [])
            if e["repetition"] == rep and e["mode"] == mode}
    return set(s.experiments) <= done


class Runner:
    def __init__(self, scenario: Scenario, backend: Backend, store: RunStore,
                 progress: Callable[[str], None] = log) -> None:
        self.s = scenario
        self.backend = backend
        self.store = store
        self.progress = progress
        self.cells: list[dict[str, Any]] = []
        self.deployments: list[dict[str, Any]] = []
        self.experiments: list[dict[str, Any]] = []
        self.faults: list[dict[str, Any]] = []
        self.book = ProbeBook(store, progress)
        self.current: dict[str, Any] = {}
        self.sampler: ResourceSampler | None = None
        self.sampler_down = ""  # why the sampler is gone for good (a restart failed)
        self.hops_ok = False
        # probes attached per mode (see ModeProbe): one more is one more line here, and its
        # attach/ensure/reset/read/detach beside the hop probe's
        self.hop_probe = ModeProbe("hops", self.book, self._make_hops)
        # end-to-end latency timed in the kernel at the load generator's sockets
        self.klat_probe = ModeProbe("kernel_latency", self.book, self._make_klat)
        self.klat_ok = False
        self._wire_down: dict[tuple[int, str], str] = {}  # push-wire probe failed to attach
        self._wire_restart = ""  # why the push-wire probe is being attached again
        self._wire_failed = ""  # why the last attach of the push-wire probe failed
        self.targets_path = store.dir / "targets.json"
        self.resources_path = store.dir / "resources.jsonl"
        (store.dir / "logs").mkdir(exist_ok=True)

    # ---- the whole run --------------------------------------------------------------------
    def run(self) -> list[dict[str, Any]]:
        """Every cell not yet recorded (all of them, unless this resumes a run: see
        bench.resume), mode by mode, in the recorded mode order."""
        orders = self.store.manifest.get("mode_order") or mode_orders(
            self.s.modes, self.s.repetitions, self.s.seed)
        self.store.update(mode_order=orders)
        m = self.store.manifest
        self.cells = list(m.get("cells", []))
        self.deployments = list(m.get("deployments", []))
        self.experiments = list(m.get("experiments", []))
        self.faults = list(m.get("faults", []))
        total = len(orders) * len(self.s.modes) * len(self.s.load.levels)
        self._start_sampler()
        try:
            for rep, order in enumerate(orders, start=1):
                for mode in order:
                    if not unit_done(self.s, m, rep, mode):
                        self._run_mode(rep, mode, total)
        finally:
            self._stop_sampler()
        return self.cells

    def problems(self) -> list[str]:
        """What did not complete, one phrase each; empty when everything did."""
        out = []
        for status in ("failed", "skipped"):
            n = sum(1 for c in self.cells if c["status"] == status)
            if n:
                out.append(f"{n} of {len(self.cells)} cells {status}")
        for status in ("failed", "skipped"):
            n = sum(1 for e in self.experiments if e["status"] == status)
            if n:
                out.append(f"{n} experiments {status}")
        for name, p in self.store.manifest.get("probes", {}).items():
            if isinstance(p, dict) and p.get("missing"):
                out.append(f"probe {name}: no data for {len(p['missing'])} cells or experiments")
        return out

    def _phase(self, rep: int, mode: str, phase: str, **detail: Any) -> None:
        """The phase under way, in the manifest (`current`) and as a progress line."""
        self.current = {"repetition": rep, "mode": mode, "phase": phase, **detail}
        self.store.update(current=self.current)
        what = detail.get("cell") or detail.get("experiment") or ""
        self.progress(f"r{rep} {mode}: {phase}" + (f" {what}" if what else ""))

    def _start_sampler(self) -> None:
        if not self.s.probes.resources.enabled:
            self.book.set("resources", {"status": "skipped", "reason": "disabled in the scenario"})
        else:
            write_targets(self.targets_path, [])
            r = self.s.probes.resources
            self.sampler = ResourceSampler(self.targets_path, self.resources_path,
                                           interval=r.interval_s, pss_interval=r.pss_interval_s)
            self.sampler.start()
            self.book.set("resources", {"status": "ok", "reason": "", "interval_s": r.interval_s,
                                        "pss_interval_s": r.pss_interval_s,
                                        "pid": self.sampler.pid})
        if not self.s.probes.hops.enabled:
            self.book.set("hops", {"status": "skipped", "reason": "disabled in the scenario"})
        else:
            from bench.probes.hops import probe_status

            self.book.set("hops", probe_status())
            self.hops_ok = self.book.ok("hops")
        if not self.s.probes.kernel_latency.enabled:
            self.book.set("kernel_latency", {"status": "skipped",
                                             "reason": "disabled in the scenario"})
        else:
            self.book.set("kernel_latency", client_latency.probe_status())
            self.klat_ok = self.book.ok("kernel_latency")

    def _sampler_dead(self) -> str:
        """Why the resource sampler is not running ("" while it is, or when disabled)."""
        if self.sampler is None or self.sampler.proc is None:
            return ""
        code = self.sampler.proc.poll()
        return "" if code is None else f"resource sampler (pid {self.sampler.pid}) exited with {code}"

    def _ensure_sampler(self, before: str) -> None:
        """Between cells: a sampler that died is started again, on record."""
        dead = self._sampler_dead()
        if not dead or self.sampler is None:
            return
        self.book.failed("resources", dead)
        self.sampler.stop()
        try:
            self.sampler.start()
        except BenchError as e:  # no sampler from here on: every later cell says so
            self.sampler = None
            self.sampler_down = f"restart before {before} failed: {e.one_line()}"
            self.book.failed("resources", self.sampler_down)
            return
        self.book.restarted("resources", f"before {before}: {dead}; new pid {self.sampler.pid}",
                            pid=self.sampler.pid)

    def _sampler_covered(self, cell: Cell) -> bool:
        """Whether the sampler ran through this cell's window (rows to summarize); if it
        died, the cell's resources are missing, on record."""
        if self.sampler is None:
            if self.sampler_down:
                self.book.missing("resources", cell.id, self.sampler_down)
            return False
        dead = self._sampler_dead()
        if dead:
            self.book.missing("resources", cell.id, dead)
            return False
        return True

    @property
    def hops(self) -> Any:
        """The started bench.probes.hops.HopProbe of the current mode, or None."""
        return self.hop_probe.probe

    @property
    def klat(self) -> client_latency.ClientLatencyProbe | None:
        """The started kernel-timed latency probe of the current mode, or None."""
        return self.klat_probe.probe  # type: ignore[no-any-return]

    def _make_klat(self, dep: Deployment) -> Any:
        if not self.klat_ok:
            return None
        if dep.info.get("load", {}).get("where") == "in-cluster":
            raise NothingToProbe("the load generator runs in the cluster: latency is "
                                 "Locust's own timing there")
        return client_latency.ClientLatencyProbe(_url_port(dep.url))

    def _make_hops(self, dep: Deployment) -> Any:
        if not self.hops_ok or not dep.mesh.proxies:
            return None
        from bench.probes.hops import HopProbe, targets_for

        targets = targets_for(dep)
        if not targets:  # a kube backend whose host cannot see the pods' processes
            raise NothingToProbe("no proxy process of the mesh is visible from this host, "
                                 "so there is no per-hop data")
        return HopProbe(targets)

    def _attach_hops(self, dep: Deployment) -> None:
        """Attach the per-hop probe to this mode's proxies before any load starts, so that
        every connection the load opens is seen from its first packet."""
        self.hop_probe.attach(dep)

    def _read_hops(self, cell: Cell) -> Any:
        return self.hop_probe.read(cell)

    def _detach_hops(self) -> None:
        self.hop_probe.detach()

    def _note_skipped(self, cell: Cell, skipped: tuple[str, ...]) -> None:
        """Processes the resource window could not measure, in the manifest: the report
        then says which have no data instead of showing a zero."""
        self.book.skipped_entities("resources", cell.id, skipped)

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
        done = {c["cell"] for c in self.cells}
        cells = [c for c in (Cell(rep, mode, lvl) for lvl in self.s.load.levels)
                 if c.id not in done]
        t = time.monotonic()
        self._phase(rep, mode, "provisioning")
        try:
            dep = self.backend.provision(mode)
        except BaseException as e:
            self._teardown()  # whatever provision got to, also on Ctrl-C
            if isinstance(e, StorageError) or not isinstance(e, (BenchError, OSError)):
                raise
            reason = f"provision: {one_line(e)}"
            for c in cells:
                self._record(CellOutcome(c, "failed", reason), total)
            self._broken(rep, mode, "provisioning", reason, [],
                         self._experiment_names(None, mode))
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
                found = dep.info.get("manifest_versions")
                if found:  # versions.istio, gateway_api, cni, kubernetes: compared by analysis
                    from bench.backends.kube.orchestrator import merge_versions

                    self.store.update(versions=merge_versions(
                        self.store.manifest.get("versions", {}), found))
            try:
                self._ensure_sampler(f"r{rep}-{mode} idle")
                self._idle(rep, mode, dep)
                self._attach_hops(dep)
                self.klat_probe.attach(dep)
            except ModeBroken as e:
                self._broken(rep, mode, "idle", e.message, cells,
                             self._experiment_names(dep))
                return
            for i, c in enumerate(cells):
                self._ensure_sampler(c.id)
                self.hop_probe.ensure(dep, c.id)
                self.klat_probe.ensure(dep, c.id)
                outcome = self._guarded_cell(c, dep)
                self._record(outcome, total)
                dead = self.backend.check(dep)
                if dead:
                    self._broken(rep, mode, f"cell {c.id}", dead[0], cells[i + 1:],
                                 self._experiment_names(dep))
                    return
                if (i == 0 and rep == 1 and self.hops is not None and outcome.status == "ok"
                        and self.s.probes.hops.overhead_check):
                    self._probe_overhead_twin(c, dep)
            self._ensure_sampler(f"r{rep}-{mode} experiments")
            self._push_experiments(rep, mode, dep)
        finally:
            self._detach_hops()
            self.klat_probe.detach()
            self._set_targets(None, mode)
            self._teardown()

    def _teardown(self) -> None:
        """backend.teardown with SIGINT and SIGTERM held until it is done: a second Ctrl-C
        must not leave half a mode behind (the signal is delivered right after)."""
        held = {signal.SIGINT, signal.SIGTERM}
        old = signal.pthread_sigmask(signal.SIG_BLOCK, held)
        try:
            self.backend.teardown()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)

    def _guarded_cell(self, cell: Cell, dep: Deployment) -> CellOutcome:
        """_run_cell, with any error of the harness or the OS recorded as the cell's
        failure (a full results disk still stops the run)."""
        try:
            return self._run_cell(cell, dep)
        except StorageError:
            raise
        except (BenchError, OSError) as e:
            return CellOutcome(cell, "failed", one_line(e))

    def _experiment_names(self, dep: Deployment | None, mode: str = "") -> list[str]:
        """The experiments this mode would run (none without proxies)."""
        if dep is not None:
            return list(self.s.experiments) if dep.mesh.proxies else []
        from bench.mesh import build

        return list(self.s.experiments) if build(self.s, mode).proxies else []

    def _broken(self, rep: int, mode: str, phase: str, reason: str, cells: Sequence[Cell],
                experiments: Sequence[str]) -> None:
        """The mode's deployment broke in `phase`: skip what is left of it, on record."""
        skip = f"the {mode} deployment broke in {phase}: {reason}"
        total = len(self.s.modes) * len(self.s.load.levels) * self.s.repetitions
        for c in cells:
            self._record(CellOutcome(c, "skipped", skip), total)
        done = {e["experiment"] for e in self.experiments
                if e["repetition"] == rep and e["mode"] == mode}
        left = [n for n in experiments if n not in done]
        for name in left:
            self._experiment(rep, mode, name, "skipped", skip)
        self.faults.append({"repetition": rep, "mode": mode, "phase": phase, "reason": reason,
                            "skipped_cells": [c.id for c in cells], "skipped_experiments": left})
        self.store.update(faults=self.faults)
        self.progress(f"r{rep} {mode}: BROKEN in {phase}: {reason}; skipped "
                      f"{len(cells)} cells and {len(left)} experiments of this mode")

    def _experiment(self, rep: int, mode: str, name: str, status: str, reason: str = "") -> None:
        self.experiments.append({"repetition": rep, "mode": mode, "experiment": name,
                                 "status": status, "reason": reason})
        self.store.update(experiments=self.experiments)

    def _idle(self, rep: int, mode: str, dep: Deployment) -> None:
        """Footprint with no load: resources over a short quiet window after readiness."""
        if self.sampler is None:
            return
        self._phase(rep, mode, "idle")
        t0 = time.time()
        try:
            self._sleep_checking(dep, self.s.timing.idle_s)
        except CellFailed as e:
            raise ModeBroken(e.message) from None
        t1 = time.time()
        idle = Cell(rep, mode, 0)
        if not self._sampler_covered(idle):
            return
        res = summarize_window(self.resources_path, t0, t1, idle)
        self._note_skipped(idle, res.skipped)
        self.store.append(_with_label(res.samples, phase="idle"))
        self.store.append(_with_label(self._cluster_resources(idle), phase="idle"))

    def _cluster_resources(self, cell: Cell) -> list[Sample]:
        """The metrics-API rows of a kube backend whose host cannot see the pods' processes
        ([] elsewhere: the host sampler has them)."""
        read = getattr(self.backend, "window_resources", None)
        return list(read(cell)) if read is not None else []

    def _push_experiments(self, rep: int, mode: str, dep: Deployment) -> None:
        """Each config change of the scenario, once per mode, after its load cells (the
        deployment is discarded afterwards, so a change never leaks into another cell).
        A failure ends this mode's experiments: the failed one and the rest are recorded,
        and if a process died, the mode is recorded broken."""
        if not dep.mesh.proxies:
            return
        from bench.experiments import changed_mesh, exposure_samples, run_push

        cell = Cell(rep, mode, 0)
        configs = getattr(self.backend, "configs", None)
        dump = getattr(self.backend, "config_dump_bytes", None)
        names = list(self.s.experiments)
        step = "exposure"
        wire = None
        try:
            self._phase(rep, mode, "experiment", experiment="exposure")
            if configs:
                self.store.append(exposure_samples(dep.mesh, configs, cell, dump_bytes=dump,
                                                   sizes=self._served_sizes()))
            mesh = dep.mesh
            for name in names:
                step = name
                self._phase(rep, mode, "experiment", experiment=name)
                wire = self._wire(rep, mode, name, wire)
                outcome = run_push(self.backend, mesh, name,
                                   timeout_s=self.s.timing.ready_timeout_s, wire=wire,
                                   broken=lambda: self.backend.check(dep))
                dead = self.backend.check(dep)
                if dead:  # died during the push: what was measured is not trusted
                    raise ModeBroken(dead[0])
                if outcome.kernel_skip and wire is not None:
                    # the kernel view failed for this experiment: on record, attached anew
                    self.book.missing("push_kernel", f"r{rep}-{mode} {name}",
                                      outcome.kernel_skip)
                    wire.stop()
                    wire = None
                    self._wire_restart = f"after {outcome.kernel_skip}"
                self._push_recorded(rep, mode, name, outcome, cell)
                self._experiment(rep, mode, name, "ok")
                mesh = changed_mesh(mesh, name)  # the next change applies on top of this one
            step = "exposure after the changes"
            configs = getattr(self.backend, "configs", None)
            if configs and names:
                self.store.append(exposure_samples(mesh, configs, cell, state="after_changes",
                                                   dump_bytes=dump, sizes=self._served_sizes()))
        except StorageError:
            raise
        except (BenchError, OSError) as e:
            dead = self.backend.check(dep)
            reason = dead[0] if dead else one_line(e)
            if step in names:
                self._experiment(rep, mode, step, "failed", reason)
            left = names[names.index(step) + 1:] if step in names else (
                names if step == "exposure" else [])
            if dead:
                self._broken(rep, mode, f"experiment {step}", reason, [], left)
            else:
                # what the proxies hold is no longer known: no later change, no "after"
                for name in left:
                    self._experiment(rep, mode, name, "skipped",
                                     f"experiment {step} failed: {reason}")
                self.progress(f"r{rep} {mode}: experiment {step} failed: {reason}")
        finally:
            if wire is not None:
                wire.stop()

    def _served_sizes(self) -> dict[str, dict[str, tuple[int, int]]] | None:
        """Per proxy and xDS type, (bytes, resources) of the snapshot the control plane
        serves it."""
        cp = getattr(self.backend, "controlplane", None)
        if cp is None:
            return None
        nodes = cp.status()["nodes"]
        return {n: {t: (s["config_bytes"], s["resources"]) for t, s in v["types"].items()}
                for n, v in nodes.items()}

    def _wire(self, rep: int, mode: str, name: str, wire: Any) -> Any:
        """The kernel view of pushes for the next experiment: the probe attached for the
        mode, attached at the first experiment or again after a failed read (on record)."""
        if wire is not None:
            return wire
        restart, self._wire_restart = self._wire_restart, ""
        down = self._wire_down.get((rep, mode))
        if down is None:
            wire = self._attach_wire(mode)
            if wire is None and self._wire_failed:
                down = self._wire_down[(rep, mode)] = self._wire_failed
            elif wire is not None and restart:
                self.book.restarted("push_kernel", f"before r{rep}-{mode} {name}: {restart}")
        if down:
            self.book.missing("push_kernel", f"r{rep}-{mode} {name}", down)
        return wire

    def _attach_wire(self, mode: str = "") -> Any:
        """The kernel view of pushes: a BCC probe on the control plane's process. Its status
        goes to the manifest (probes.push_kernel); None when it cannot run."""
        from bench.probes.pushwire import PushWireProbe, check

        if not self.book.get("push_kernel"):
            missing = check()
            self.book.set("push_kernel", {"status": "skipped", "reason": missing[0],
                                          "hint": missing[1]} if missing else
                          {"status": "ok", "reason": ""})
        cp = getattr(self.backend, "controlplane", None)
        pid = cp.pid if cp is not None else (
            self.backend.controlplane_pid() if hasattr(self.backend, "controlplane_pid")
            else None)
        if not self.book.ok("push_kernel") or pid is None:
            return None
        probe = PushWireProbe(pid)
        self._wire_failed = ""
        try:
            inject("push_kernel.attach", mode)
            return probe.start()
        except StorageError:
            raise
        except Exception as e:  # compile or attach failed: recorded, experiments go on
            probe.stop()
            self._wire_failed = f"{mode}: attach failed: {one_line(e)}"
            self.book.failed("push_kernel", self._wire_failed)
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
            timed = outcome.kernel or outcome.summary
            self.progress(f"probe-off twin of {cell.id}: {outcome.status} "
                          + (f"p50 {timed.p50_us:.0f} us" if timed else outcome.reason))
        finally:
            self._attach_hops(dep)

    def _run_cell(self, cell: Cell, dep: Deployment, twin: bool = False) -> CellOutcome:
        s = self.s
        hdr_out = self.store.hdr_path(cell)
        if twin:
            hdr_out = hdr_out.with_name(f"{cell.id}-probes-off.jsonl")
        in_cluster = dep.info.get("load", {}).get("where") == "in-cluster"
        with_ref = s.load.reference and not in_cluster and not twin
        # the reference runs before Locust in even repetitions, after it in odd ones, so that
        # drift within a cell does not always favour the same client
        ref_first = with_ref and cell.repetition % 2 == 0
        early_ref = self._reference(cell, dep) if ref_first else None
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
                hdr_out=hdr_out, log_path=log_path, timeout_s=duration + 30,
                arrivals=s.load.arrivals, seed=s.seed)
            if self.klat is not None:
                self.klat.watch(load.pid)  # Locust is still importing: no socket is open yet
        self._phase(cell.repetition, cell.mode, "warm-up", cell=cell.id, loadgen_pid=load.pid)
        try:
            # in a cluster, load.pid is the local kubectl, not Locust: not a loadgen target
            extra = [] if in_cluster else [Target(pid=load.pid, role="loadgen",
                                                  entity="locust", mode=cell.mode)]
            self._set_targets(dep, cell.mode, extra)
            self._sleep_checking(dep, start_s + s.timing.warmup_s, load)
            if self.hops is not None:
                self.hops.reset()
            self._phase(cell.repetition, cell.mode, "window", cell=cell.id, loadgen_pid=load.pid)
            w0 = (time.time(), time.monotonic())
            self._sleep_checking(dep, s.timing.window_s, load)
            w1 = (time.time(), time.monotonic())
            hop_hists = self._read_hops(cell)
            if in_cluster:
                load.wait()
            else:  # the window is recorded: Locust's last second and shutdown are not needed
                load.finish_after(w1[0], processes=s.load.processes)
        except CellFailed as e:
            return CellOutcome(cell, "failed", e.one_line(), loadgen_pid=load.pid)
        finally:
            load.stop()
            self._set_targets(dep, cell.mode)
        window = {"start": w0[0], "end": w1[0], "start_mono": w0[1], "end_mono": w1[1]}
        paths = load.hdr_paths()
        summary = hdr.summarize(hdr.read_intervals(paths), w0[0], w1[0])
        cpu = load.cpu_percent_max(w0[0], w1[0])
        missing = "" if cpu is not None else str(getattr(load, "cpu_missing", "not measured"))
        if missing and not twin:
            self.book.failed("loadgen_cpu", f"{cell.id}: saturation not checked on CPU: "
                             f"{missing}")
        rows = hdr.to_samples(cell, summary, cell.level, cpu, cpu_missing=missing)
        intended = hdr.read_intervals(paths, "hist_intended")
        if intended:
            rows += hdr.to_latency_samples(cell, hdr.summarize(intended, w0[0], w1[0]),
                                           source=hdr.SOURCE_INTENDED)
            rows += hdr.to_latency_samples(
                cell, hdr.summarize(hdr.read_intervals(paths, "hist_lag"), w0[0], w1[0]),
                source=hdr.SOURCE_INTENDED, prefix="send_lag")
        kernel = self._kernel_rows(cell, w0[0], w1[0], summary.errors)
        if kernel is not None:
            rows += kernel[1]
        if twin:
            self.store.append([replace(r, source=r.source + "_probes_off") for r in rows])
            return CellOutcome(cell, "ok" if summary.count else "failed", "", window, summary,
                               load.pid, kernel=kernel[0] if kernel else None)
        if hop_hists is not None:
            from bench.probes.hops import summarize as hop_rows

            rows += hop_rows(hop_hists, cell, ts=w1[0])
        if self._sampler_covered(cell):
            res = summarize_window(self.resources_path, w0[0], w1[0], cell)
            self._note_skipped(cell, res.skipped)
            res_rows = _with_label(res.samples, phase="load")
            rows += res_rows + _with_label(per_krps(res_rows, summary.achieved_rps), phase="load")
        api_rows = _with_label(self._cluster_resources(cell), phase="load")
        rows += api_rows + _with_label(per_krps(api_rows, summary.achieved_rps), phase="load")
        self.store.append(rows)
        if summary.count == 0:
            return CellOutcome(cell, "failed", "no request completed in the window", window,
                               loadgen_pid=load.pid)
        ref = early_ref if ref_first else self._reference(cell, dep) if with_ref else None
        return CellOutcome(cell, "ok", "", window, summary, load.pid,
                           kernel=kernel[0] if kernel else None, reference=ref)

    def _kernel_rows(self, cell: Cell, t0: float, t1: float,
                     errors: int) -> tuple[hdr.LatencySummary, list[Sample]] | None:
        """The window's kernel-timed requests as rows of source load_kernel; the probe is
        emptied for the next cell. None (and on record) when it has nothing to say."""
        got = self.klat_probe.read(cell)  # None: this cell is on record as missing it
        probe = self.klat
        if probe is not None:
            probe.clear()
            probe.unwatch_all()
        if got is None:
            return None
        req, lost = client_latency.window(got[0], t0, t1), got[1]
        if not len(req):
            self.book.missing("kernel_latency", cell.id,
                              "no request seen at the load generator's sockets")
            return None
        ksum = client_latency.summarize_requests(req, t0, t1, errors)
        spread = client_latency.schedule_spread(req.t_send, cell.level)
        return ksum, client_latency.to_samples(cell, ksum, spread, lost)

    def _reference(self, cell: Cell, dep: Deployment) -> hdr.LatencySummary | None:
        """The independent reference client at the cell's rate and connections, right after
        the cell on the same deployment (source "reference")."""
        s = self.s
        probe = self.klat
        try:
            ref, rows, (t0, t1) = reference_cell(
                cell=cell, netns=dep.load_netns, url=dep.url + "/",
                connections=s.load.connections, warmup_s=s.timing.warmup_s,
                window_s=s.timing.window_s, arrivals=s.load.arrivals, seed=s.seed,
                out=self.store.dir / "logs" / f"reference-{cell.id}.bin",
                on_start=probe.watch if probe is not None else None)
            if probe is not None:
                req = probe.requests(t0, t1)
                if len(req):
                    ksum = client_latency.summarize_requests(req, t0, t1)
                    rows += reference_to_samples(cell, ksum, cell.level, {},
                                                 source=REFERENCE_KERNEL)
        except BenchError as e:
            self.book.failed("reference", f"{cell.id}: {e.one_line()}")
            return None
        finally:
            if probe is not None:
                probe.clear()
                probe.unwatch_all()
        self.store.append(rows)
        return ref

    def _sleep_checking(self, dep: Deployment, seconds: float, load: Any = None) -> None:
        """Sleep, but notice within ~0.5 s when a process of the mode has died, or the
        load generator (its leader or a worker; `load` has check() when it can tell)."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            time.sleep(min(0.5, left))
            broken = self.backend.check(dep)
            if broken:
                raise CellFailed(f"process died mid-cell: {broken[0]}")
            lost = load.check() if hasattr(load, "check") else ""
            if lost:
                raise CellFailed(f"load generator failed mid-cell: {lost}")

    def _record(self, o: CellOutcome, total: int) -> None:
        entry = {"cell": o.cell.id, "mode": o.cell.mode, "level": o.cell.level,
                 "repetition": o.cell.repetition, "status": o.status, "reason": o.reason,
                 "window": o.window, "loadgen_pid": o.loadgen_pid}
        self.cells.append(entry)
        self.store.update(cells=self.cells)
        n = len(self.cells)
        if o.summary is not None:
            sm = o.summary
            timed = (f"p50 {o.kernel.p50_us:.0f} us, p99 {o.kernel.p99_us:.0f} us (kernel-timed;"
                     f" Locust p50 {sm.p50_us:.0f} us)" if o.kernel is not None else
                     f"p50 {sm.p50_us:.0f} us, p99 {sm.p99_us:.0f} us (Locust-timed)")
            ref = (f", reference p50 {o.reference.p50_us:.0f} us"
                   if o.reference is not None else "")
            self.progress(f"[{n}/{total}] {o.cell.id}: {timed}{ref}, "
                          f"{sm.achieved_rps:.0f}/{o.cell.level} rps, {sm.errors} errors")
        else:
            self.progress(f"[{n}/{total}] {o.cell.id}: {o.status.upper()}: {o.reason}")


def _url_port(url: str) -> int:
    from urllib.parse import urlsplit

    port = urlsplit(url).port
    if port is None:
        raise ValueError(f"deployment URL without a port: {url!r}")
    return port


def _with_label(samples: Sequence[Sample], **labels: Any) -> list[Sample]:
    return [replace(s, labels={**(s.labels or {}), **labels}) for s in samples]

