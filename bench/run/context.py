"""What the parts of a run share: the scenario, the backend and its declared abilities, the
results store, the probes' lifecycles, and the progress line."""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from bench.backends.base import Abilities, Backend, Deployment, LoadHandle
from bench.errors import CellFailed
from bench.probes import noise
from bench.probes.lifecycle import ModeProbe, ProbeBook, RunProbe
from bench.probes.processes import Target
from bench.scenario import Scenario
from bench.store import Cell, RunStore, Sample


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class PhaseClock:
    """Where a run's time goes: seconds per phase (provisioning, idle, warm-up, window,
    collect, reference, experiment, teardown) of each (repetition, mode), kept in the
    manifest under `phases` ({"r1-sidecar": {"provisioning": 3.1, ...}})."""

    def __init__(self, store: RunStore) -> None:
        self.store = store
        self.times: dict[str, dict[str, float]] = dict(store.manifest.get("phases", {}))
        self._open: tuple[str, str, float] | None = None  # (unit, phase, since)

    def enter(self, rep: int, mode: str, phase: str) -> None:
        """The phase under way ends and `phase` starts (the caller writes `times`)."""
        self._add()
        self._open = (f"r{rep}-{mode}", phase, time.monotonic())

    def close(self) -> None:
        """The phase under way ends now (its time is added and written)."""
        if self._add():
            self.store.update(phases=self.times)

    def _add(self) -> bool:
        if self._open is None:
            return False
        unit, phase, since = self._open
        self._open = None
        per = self.times.setdefault(unit, {})
        per[phase] = round(per.get(phase, 0.0) + time.monotonic() - since, 3)
        return True

    def totals(self) -> dict[str, float]:
        """Seconds per phase over the whole run."""
        out: dict[str, float] = {}
        for per in self.times.values():
            for phase, s in per.items():
                out[phase] = out.get(phase, 0.0) + s
        return out


@dataclass
class RunContext:
    s: Scenario
    backend: Backend
    abilities: Abilities
    store: RunStore
    book: ProbeBook
    progress: Callable[[str], None]
    clock: PhaseClock
    resources: RunProbe | None = None  # None: the sampler is disabled in the scenario
    hops: ModeProbe | None = None
    kernel_latency: ModeProbe | None = None
    current: dict[str, Any] = field(default_factory=dict)

    def phase(self, rep: int, mode: str, phase: str, **detail: Any) -> None:
        """The phase under way: in the manifest (`current`), its time in `phases`, and a
        progress line."""
        self.clock.enter(rep, mode, phase)
        self.current = {"repetition": rep, "mode": mode, "phase": phase, **detail}
        self.store.update(current=self.current, phases=self.clock.times)  # one write
        what = detail.get("cell") or detail.get("experiment") or ""
        self.progress(f"r{rep} {mode}: {phase}" + (f" {what}" if what else ""))

    def noise_mark(self) -> noise.Mark:
        """One end of a window (bench/probes/noise.py), with where the sampler's file
        stands, so that the window's rows are read from there."""
        return noise.mark(self.resources.out_path if self.resources is not None else None)

    def noise(self, cell: Cell, start: noise.Mark, phase: str, end: noise.Mark | None = None,
              attempt: int = 1, speed: dict[str, float] | None = None,
              **labels: Any) -> tuple[list[Sample], dict[str, Any] | None]:
        """The machine's noise from `start` to `end` (now if None), bench/probes/noise.py:
        its rows (source "noise", labelled with the phase and, past the first, the
        attempt) and its record for the manifest; ([], None), on record, when it cannot be
        read."""
        end = end if end is not None else self.noise_mark()
        own = {os.getpid()}
        if self.resources is not None:
            own |= self.resources.own_pids()
        cluster = self.abilities.cluster_on_host
        got = noise.summarize(start, end, own, self.resources.out_path
                              if self.resources is not None else None,
                              own_cgroups=cluster.cluster_cgroups() if cluster else ())
        if isinstance(got, str):
            self.book.missing("noise", f"{cell.id} {phase}", got)
            return [], None
        if speed:
            got = dataclasses.replace(got, cpu_mibps=speed["cpu_mibps"],
                                      mem_gibps=speed["mem_gibps"])
        threshold = self.s.timing.noise_threshold
        lab = {"phase": phase, **labels, **({"attempt": attempt} if attempt > 1 else {})}
        return got.samples(cell, threshold, end.ts, lab), got.record(threshold)

    def watch(self, dep: Deployment | None, mode: str, extra: Sequence[Target] = ()) -> None:
        """The processes the resource sampler watches: the deployment's, and `extra`."""
        if self.resources is None:
            return
        targets = [] if dep is None else [
            Target(pid=p.pid, role=p.role, entity=p.entity, pod=p.pod, namespace=p.namespace,
                   node=p.node, mode=mode) for p in dep.processes]
        self.resources.watch([*targets, *extra])

    def wait_checking(self, dep: Deployment, ready: Callable[[], bool], timeout_s: float,
                      what: str, load: LoadHandle | None = None) -> float:
        """Wait until `ready()` (polled every 50 ms), noticing a dead process or load
        generator as sleep_checking does; the seconds it took. CellFailed after timeout_s."""
        t0 = time.monotonic()
        next_check = t0
        while not ready():
            now = time.monotonic()
            if now - t0 > timeout_s:
                raise CellFailed(f"{what} did not happen within {timeout_s:.0f} s")
            if now >= next_check:
                self.sleep_checking(dep, 0.0, load)
                next_check = now + 0.5
            time.sleep(0.05)
        return time.monotonic() - t0

    def sleep_checking(self, dep: Deployment, seconds: float,
                       load: LoadHandle | None = None) -> None:
        """Sleep, but notice within ~0.5 s when a process of the mode has died, or the
        load generator (its leader or a worker)."""
        end = time.monotonic() + seconds
        while True:
            left = end - time.monotonic()
            if left > 0:
                time.sleep(min(0.5, left))
            broken = self.backend.check(dep)
            if broken:
                raise CellFailed(f"process died mid-cell: {broken[0]}")
            lost = load.check() if load is not None else ""
            if lost:
                raise CellFailed(f"load generator failed mid-cell: {lost}")
            if end - time.monotonic() <= 0:
                return
