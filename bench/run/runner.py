"""The run: every (repetition, mode, load level) cell, modes interleaved, teardown always.

Phases per mode: provision -> idle footprint -> for each level: warm-up -> measurement window
(load and probes together, boundaries recorded) -> collect -> config-push experiments;
teardown in `finally`, also on Ctrl-C and SIGTERM. The phase under way is in the manifest
(`current`) and on stderr; the time each phase took, per (repetition, mode), in `phases`.
One cell is bench/run/cell.py, a mode's experiments bench/run/pushes.py, the probes'
lifecycles bench/probes/lifecycle.py.

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
import time
from collections.abc import Callable, Sequence
from typing import Any

from bench.backends.base import Backend, Deployment
from bench.errors import BenchError, CellFailed, ModeBroken, StorageError
from bench.probes import client_latency, noise
from bench.probes.lifecycle import ExperimentProbe, ModeProbe, ProbeBook, RunProbe, one_line
from bench.run import cell as cells
from bench.run import pushes, signals
from bench.run.cell import CellOutcome
from bench.run.context import PhaseClock, RunContext, log
from bench.scenario import Scenario
from bench.store import Cell, RunStore

__all__ = ["Runner", "log", "mode_orders", "unit_done"]


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


def unit_done(s: Scenario, manifest: dict[str, Any], rep: int, mode: str) -> bool:
    """Whether a (repetition, mode) of the run is complete: every cell recorded (ok, failed
    or skipped) and every experiment of the mode recorded."""
    recorded = {c["cell"] for c in manifest.get("cells", [])}
    if any(Cell(rep, mode, lvl).id not in recorded for lvl in s.load.levels):
        return False
    if not s.experiments or not _has_proxies(s, mode):
        return True
    done = {e["experiment"] for e in manifest.get("experiments", [])
            if e["repetition"] == rep and e["mode"] == mode}
    return set(s.experiments) <= done


def _has_proxies(s: Scenario, mode: str) -> bool:
    from bench.mesh import build

    return bool(build(s, mode).proxies)


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
        book = ProbeBook(store, progress)
        self.ctx = RunContext(s=scenario, backend=backend, abilities=backend.abilities(),
                              store=store, book=book, progress=progress,
                              clock=PhaseClock(store))
        self.wire = ExperimentProbe(book, self._controlplane_pid)
        (store.dir / "logs").mkdir(exist_ok=True)

    @property
    def current(self) -> dict[str, Any]:
        return self.ctx.current

    # ---- the whole run --------------------------------------------------------------------
    def run(self) -> list[dict[str, Any]]:
        """Every cell not yet recorded (all of them, unless this resumes a run: see
        bench.run.resume), mode by mode, in the recorded mode order."""
        orders = self.store.manifest.get("mode_order") or mode_orders(
            self.s.modes, self.s.repetitions, self.s.seed)
        self.store.update(mode_order=orders)
        m = self.store.manifest
        self.cells = list(m.get("cells", []))
        self.deployments = list(m.get("deployments", []))
        self.experiments = list(m.get("experiments", []))
        self.faults = list(m.get("faults", []))
        self._start_probes()
        try:
            for rep, order in enumerate(orders, start=1):
                for mode in order:
                    if not unit_done(self.s, m, rep, mode):
                        self._run_mode(rep, mode)
        finally:
            for probe in self._mode_probes():
                probe.close()
            self.ctx.clock.close()
            if self.ctx.resources is not None:
                self.ctx.resources.stop()
        totals = self.ctx.clock.totals()
        if totals:
            self.progress("time by phase: " + ", ".join(
                f"{k} {v:.0f} s" for k, v in sorted(totals.items(), key=lambda kv: -kv[1])))
        return self.cells

    @property
    def total(self) -> int:
        return len(self.s.modes) * len(self.s.load.levels) * self.s.repetitions

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

    def noise_line(self) -> str:
        """The run's last word on the machine's noise ("" when no cell was contaminated)."""
        n = noise.summary(self.cells)
        if not n["contaminated"] and not n["rerun"]:
            return ""
        most = "MOST CELLS CONTAMINATED: " if 2 * n["contaminated"] > n["measured"] else ""
        return (f"{most}machine noise: {n['contaminated']} of {n['measured']} cells "
                f"contaminated (set aside by the analysis), {n['rerun']} re-run; worst window "
                f"lost {100 * (n['worst']['lost_share'] or 0):.0f} % of the CPU to steal or "
                "other processes (the report's \"The machine's noise\")")

    def _start_probes(self) -> None:
        """The run's probes, each on record in the manifest (probes.<name>)."""
        ctx, book, p = self.ctx, self.ctx.book, self.s.probes
        if not p.resources.enabled:
            book.set("resources", {"status": "skipped", "reason": "disabled in the scenario"})
        else:
            ctx.resources = RunProbe(book, self.store.dir / "targets.json",
                                     self.store.dir / "resources.jsonl",
                                     p.resources.interval_s, p.resources.pss_interval_s)
            ctx.resources.start()
        # the machine's noise per window (bench/probes/noise.py): needs no root
        book.set("noise", {"status": "ok", "reason": "",
                           "threshold": self.s.timing.noise_threshold,
                           "rerun_noisy": self.s.timing.rerun_noisy,
                           "per_second": "from the resource sampler" if ctx.resources
                           is not None else "no: the resource sampler is disabled"})
        if not p.hops.enabled:
            book.set("hops", {"status": "skipped", "reason": "disabled in the scenario"})
        else:
            from bench.probes.hops import probe_status

            book.set("hops", probe_status())
        # probes attached per mode (see ModeProbe): one more is one more line here
        ctx.hops = ModeProbe("hops", book, cells.make_hops(book.ok("hops")))
        if not p.kernel_latency.enabled:
            book.set("kernel_latency", {"status": "skipped", "reason": "disabled in the scenario"})
        else:
            book.set("kernel_latency", client_latency.probe_status())
        # end-to-end latency timed in the kernel at the load generator's sockets
        # (its program depends only on the service port: loaded once for every mode)
        ctx.kernel_latency = ModeProbe("kernel_latency", book,
                                       cells.make_kernel_latency(book.ok("kernel_latency")),
                                       reuse_key=lambda dep: cells.url_port(dep.url))

    def _mode_probes(self) -> list[ModeProbe]:
        return [p for p in (self.ctx.hops, self.ctx.kernel_latency) if p is not None]

    def _controlplane_pid(self) -> int | None:
        """The control plane's PID, for the kernel view of pushes (None: not visible)."""
        a = self.ctx.abilities
        if a.xds is not None:
            return a.xds.controlplane.pid if a.xds.controlplane is not None else None
        return a.istiod.controlplane_pid() if a.istiod is not None else None

    def _ensure_probes(self, dep: Deployment, before: str) -> None:
        """Between cells: a probe that died or failed a read is attached again, on record."""
        if self.ctx.resources is not None:
            self.ctx.resources.ensure(before)
        for probe in self._mode_probes():
            probe.ensure(dep, before)

    # ---- one mode -------------------------------------------------------------------------
    def _run_mode(self, rep: int, mode: str) -> None:
        ctx = self.ctx
        done = {c["cell"] for c in self.cells}
        todo = [c for c in (Cell(rep, mode, lvl) for lvl in self.s.load.levels)
                if c.id not in done]
        t = time.monotonic()
        ctx.phase(rep, mode, "provisioning")
        try:
            dep = self.backend.provision(mode)
        except BaseException as e:
            self._teardown(rep, mode)  # whatever provision got to, also on Ctrl-C
            if isinstance(e, StorageError) or not isinstance(e, (BenchError, OSError)):
                raise
            reason = f"provision: {one_line(e)}"
            for c in todo:
                self._record(CellOutcome(c, "failed", reason))
            self._broken(rep, mode, "provisioning", reason, [],
                         list(self.s.experiments) if _has_proxies(self.s, mode) else [])
            return
        try:
            self.progress(f"r{rep} {mode}: ready in {time.monotonic() - t:.1f} s "
                          f"({len(dep.mesh.proxies)} proxies)")
            ctx.watch(dep, mode)
            self._record_deployment(rep, mode, dep)
            experiments = list(self.s.experiments) if dep.mesh.proxies else []
            try:
                if ctx.resources is not None:
                    ctx.resources.ensure(f"r{rep}-{mode} idle")
                self._idle(rep, mode, dep)
            except ModeBroken as e:
                self._broken(rep, mode, "idle", e.message, todo, experiments)
                return
            before = self._path_counters(dep)
            for i, c in enumerate(todo):
                self._ensure_probes(dep, c.id)
                outcome = cells.guarded(ctx, c, dep)
                earlier: list[dict[str, Any]] = []
                while (outcome.status == "ok" and outcome.noisy
                       and len(earlier) < self.s.timing.rerun_noisy
                       and not self.backend.check(dep)):
                    earlier.append(_entry(outcome))
                    self.progress(f"{c.id}: contaminated ({outcome.noisy}); running it again "
                                  f"(attempt {outcome.attempt + 1} of "
                                  f"{self.s.timing.rerun_noisy + 1})")
                    self._ensure_probes(dep, c.id)
                    outcome = cells.guarded(ctx, c, dep, attempt=outcome.attempt + 1)
                self._record(outcome, earlier)
                dead = self.backend.check(dep)
                if dead:
                    self._broken(rep, mode, f"cell {c.id}", dead[0], todo[i + 1:], experiments)
                    return
                if (i == 0 and rep == 1 and ctx.hops is not None and ctx.hops.probe is not None
                        and outcome.status == "ok" and self.s.probes.hops.overhead_check):
                    cells.probe_overhead_twin(ctx, c, dep)
            self._path_check(rep, mode, dep, before)
            if ctx.resources is not None:
                ctx.resources.ensure(f"r{rep}-{mode} experiments")
            pushes.run_mode(ctx, self.wire, rep, mode, dep, self._experiment, self._broken)
        finally:
            for probe in self._mode_probes():
                probe.park(dep)
            ctx.watch(None, mode)
            self._teardown(rep, mode)

    def _record_deployment(self, rep: int, mode: str, dep: Deployment) -> None:
        self.deployments.append({"repetition": rep, "mode": mode, "processes": [
            {"pid": p.pid, "role": p.role, "entity": p.entity, "pod": p.pod, "node": p.node}
            for p in dep.processes]})
        self.store.update(deployments=self.deployments)
        facts = self.backend.deployment_facts(f"r{rep}-{mode}", dep.info,
                                              self.store.manifest) if dep.info else {}
        if facts:  # e.g. versions.istio, gateway_api, cni, kubernetes: compared by analysis
            self.store.update(**facts)

    def _path_counters(self, dep: Deployment) -> dict[str, float] | None:
        path = self.ctx.abilities.path
        if path is None or not dep.mesh.proxies:
            return None
        try:
            return path.path_counters(dep)
        except (BenchError, OSError) as e:
            self.progress(f"{dep.mesh.mode}: path counters not read: {one_line(e)}")
            return None

    def _path_check(self, rep: int, mode: str, dep: Deployment,
                    before: dict[str, float] | None) -> None:
        """The proxies' own counters over the mode's cells, summed by role: traffic the
        mode should send through every role of its data plane must show in each role's
        counters (a role at 0 means the load bypassed it: capture is broken). In the
        manifest under `path_checks`, and a progress line when a role saw nothing."""
        after = self._path_counters(dep) if before is not None else None
        if before is None or after is None:
            return
        roles: dict[str, float] = {}
        for key, v in after.items():
            role = key.split("/")[0].split(":")[0]
            roles[role] = roles.get(role, 0.0) + v - before.get(key, 0.0)
        ok = sum(1 for c in self.cells if c["mode"] == mode and c["repetition"] == rep
                 and c["status"] == "ok")
        bypassed = sorted(r for r, v in roles.items() if v <= 0) if ok else []
        checks = [*self.store.manifest.get("path_checks", []),
                  {"repetition": rep, "mode": mode, "counters": roles, "ok_cells": ok,
                   "bypassed": bypassed}]
        self.store.update(path_checks=checks)
        if bypassed:
            self.progress(f"r{rep} {mode}: WARNING: the load crossed no {', '.join(bypassed)} "
                          "(the proxies' own counters did not move): capture is broken")

    def _teardown(self, rep: int, mode: str) -> None:
        """backend.teardown with SIGINT and SIGTERM held until it is done: a second Ctrl-C
        must not leave half a mode behind (the signal is delivered right after)."""
        self.ctx.phase(rep, mode, "teardown")
        try:
            with signals.deferred():
                self.backend.teardown()
        finally:
            self.ctx.clock.close()

    def _broken(self, rep: int, mode: str, phase: str, reason: str, todo: Sequence[Cell],
                experiments: Sequence[str]) -> None:
        """The mode's deployment broke in `phase`: skip what is left of it, on record."""
        skip = f"the {mode} deployment broke in {phase}: {reason}"
        for c in todo:
            self._record(CellOutcome(c, "skipped", skip))
        done = {e["experiment"] for e in self.experiments
                if e["repetition"] == rep and e["mode"] == mode}
        left = [n for n in experiments if n not in done]
        for name in left:
            self._experiment(rep, mode, name, "skipped", skip)
        self.faults.append({"repetition": rep, "mode": mode, "phase": phase, "reason": reason,
                            "skipped_cells": [c.id for c in todo], "skipped_experiments": left})
        self.store.update(faults=self.faults)
        self.progress(f"r{rep} {mode}: BROKEN in {phase}: {reason}; skipped "
                      f"{len(todo)} cells and {len(left)} experiments of this mode")

    def _experiment(self, rep: int, mode: str, name: str, status: str, reason: str = "") -> None:
        self.experiments.append({"repetition": rep, "mode": mode, "experiment": name,
                                 "status": status, "reason": reason})
        self.store.update(experiments=self.experiments)

    def _idle(self, rep: int, mode: str, dep: Deployment) -> None:
        """Footprint with no load: resources over a quiet window after readiness, at least
        timing.idle_s long. The mode's probes are attached in it (compiling BPF takes
        seconds; attached probes fire only on traffic, and there is none), before any load
        starts, so that every connection the load opens is seen from its first packet."""
        ctx = self.ctx
        ctx.phase(rep, mode, "idle")
        t0 = time.time()
        m0 = ctx.noise_mark()
        for probe in self._mode_probes():
            probe.attach(dep)
        try:
            ctx.sleep_checking(dep, max(0.0, self.s.timing.idle_s - (time.time() - t0)))
        except CellFailed as e:
            raise ModeBroken(e.message) from None
        t1 = time.time()
        idle = Cell(rep, mode, 0)
        self.store.append(ctx.noise(idle, m0, "idle")[0])
        if ctx.resources is None:
            return
        rows = ctx.resources.window(idle, t0, t1)
        if rows is None:
            return
        self.store.append(cells.with_label(rows, phase="idle"))
        self.store.append(cells.with_label(cells.api_resources(ctx, idle), phase="idle"))

    def _record(self, outcome: CellOutcome, earlier: Sequence[dict[str, Any]] = ()) -> None:
        """The cell's entry in the manifest: its last attempt, the earlier (contaminated)
        ones under "attempts"; and the run's noise summary."""
        entry = _entry(outcome)
        if earlier:
            entry["attempts"] = list(earlier)
        self.cells.append(entry)
        self.store.update(cells=self.cells, noise=noise.summary(self.cells))
        n = len(self.cells)
        if outcome.summary is not None:
            sm = outcome.summary
            timed = (f"p50 {outcome.kernel.p50_us:.0f} us, p99 {outcome.kernel.p99_us:.0f} us (kernel-timed;"
                     f" Locust p50 {sm.p50_us:.0f} us)" if outcome.kernel is not None else
                     f"p50 {sm.p50_us:.0f} us, p99 {sm.p99_us:.0f} us (Locust-timed)")
            ref = (f", reference p50 {outcome.reference.p50_us:.0f} us"
                   if outcome.reference is not None else "")
            self.progress(f"[{n}/{self.total}] {outcome.cell.id}: {timed}{ref}, "
                          f"{sm.achieved_rps:.0f}/{outcome.cell.level} rps, {sm.errors} errors")
        else:
            self.progress(f"[{n}/{self.total}] {outcome.cell.id}: {outcome.status.upper()}: {outcome.reason}")
        if outcome.noisy:
            self.progress(f"{outcome.cell.id}: CONTAMINATED ({outcome.noisy}): the analysis "
                          "sets it aside (timing.rerun_noisy runs such cells again)")


def _entry(outcome: CellOutcome) -> dict[str, Any]:
    """One attempt at a cell, as the manifest keeps it ("noisy": why it is contaminated)."""
    c = outcome.cell
    entry: dict[str, Any] = {
        "cell": c.id, "mode": c.mode, "level": c.level, "repetition": c.repetition,
        "status": outcome.status, "reason": outcome.reason, "window": outcome.window,
        "loadgen_pid": outcome.loadgen_pid, "attempt": outcome.attempt}
    if outcome.hdr:
        entry["hdr"] = outcome.hdr
    if outcome.noise is not None or outcome.noise_reference is not None:
        entry["noise"] = outcome.noise
        if outcome.noise_reference is not None:
            entry["noise_reference"] = outcome.noise_reference
        entry["noisy"] = outcome.noisy
    return entry
