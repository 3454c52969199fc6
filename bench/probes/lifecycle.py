"""Probe lifecycles of a run, and the one place that writes their status to the manifest.

ProbeBook holds the manifest's `probes` section. Three lifecycles, every failure on record
and nothing retried silently:
- RunProbe: the resource sampler, one process for the whole run, restarted between cells
  when it died;
- ModeProbe: a probe attached per mode (the per-hop BPF probe, the kernel-timed latency at
  the load generator's sockets): attach before the load, reset at a window's start, read at
  its end, detach at teardown;
- ExperimentProbe: the kernel view of config pushes, attached at a mode's first experiment.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.errors import BenchError, StorageError
from bench.faults import inject
from bench.probes.processes import Target, read_targets, write_targets
from bench.probes.resources import ResourceSampler, summarize_window
from bench.store import Cell, RunStore, Sample


def one_line(e: BaseException) -> str:
    from bench.errors import BenchError

    return e.one_line() if isinstance(e, BenchError) else f"{type(e).__name__}: {e}"


class NothingToProbe(Exception):
    """Raised by a ModeProbe's factory when the mode cannot be probed from here (the reason
    is recorded as a failure; every cell of the mode is then missing that source)."""


class ProbeBook:
    """The manifest's `probes` section, and the one place that writes it. Per probe:
    {"status": "ok"|"skipped", "reason", ...what the probe adds at start,
     "failures": [why it failed, ...], "missing": {cell or experiment: why no data},
     "restarts": [what was restarted, when, why], "skipped": [entities left without data]}.
    A probe of the runner (a sampler, a BPF probe) records here and nowhere else."""

    def __init__(self, store: RunStore, progress: Callable[[str], None]) -> None:
        self.store = store
        self.progress = progress

    def get(self, name: str) -> dict[str, Any]:
        return dict(self.store.manifest.get("probes", {}).get(name, {}))

    def ok(self, name: str) -> bool:
        return self.get(name).get("status") == "ok"

    def _put(self, name: str, entry: dict[str, Any]) -> None:
        probes = dict(self.store.manifest.get("probes", {}))
        probes[name] = entry
        self.store.update(probes=probes)

    def set(self, name: str, entry: dict[str, Any]) -> None:
        """The probe's status at start; what an earlier attempt of a resumed run recorded
        (failures, missing, restarts, skipped) is kept."""
        old = self.get(name)
        history: dict[str, Any] = {k: old[k] for k in ("failures", "missing", "restarts", "skipped")
                                   if k in old}
        self._put(name, {**entry, **history})

    def failed(self, name: str, reason: str) -> None:
        entry = self.get(name)
        entry["failures"] = [*entry.get("failures", []), reason]
        self._put(name, entry)
        self.progress(f"probe {name} failed: {reason}")

    def missing(self, name: str, where: str, reason: str) -> None:
        """No data from this probe for `where` (a cell id, or "r1-sidecar l7_route")."""
        entry = self.get(name)
        entry["missing"] = {**entry.get("missing", {}), where: reason}
        self._put(name, entry)
        self.progress(f"probe {name}: no data for {where}: {reason}")

    def restarted(self, name: str, what: str, **fields: Any) -> None:
        """Restarted between cells (`fields`: e.g. the new pid, replacing the old)."""
        entry = {**self.get(name), **fields}
        entry["restarts"] = [*entry.get("restarts", []), what]
        self._put(name, entry)
        self.progress(f"probe {name} restarted: {what}")

    def skipped_entities(self, name: str, where: str, items: Sequence[str]) -> None:
        if not items:
            return
        entry = self.get(name)
        entry["skipped"] = [*entry.get("skipped", []), *(f"{where}: {s}" for s in items)]
        self._put(name, entry)


class ModeProbe:
    """One probe attached per mode. `make(deployment)` returns the probe (an object with
    start/reset/read/stop), None when the mode has nothing for it (no failure), or raises
    NothingToProbe. An attach that fails leaves every cell of the mode without this source;
    a read that fails leaves that cell without it, and the probe is attached again before
    the next cell (ensure); each on record in the book under `name`. MB_INJECT points:
    `<name>.attach` (key: the mode) and `<name>.read` (key: the cell id)."""

    def __init__(self, name: str, book: ProbeBook, make: Callable[[Any], Any],
                 reuse_key: Callable[[Any], object] | None = None) -> None:
        self.name = name
        self.book = book
        self.make = make
        # a probe whose program does not depend on the mode (the same key for the next
        # deployment) stays loaded from one mode to the next instead of compiling again
        self.reuse_key = reuse_key
        self.probe: Any = None
        self.parked: tuple[Any, object] | None = None  # (probe, key) kept for the next mode
        self.down = ""  # why the mode has no running probe: attach or read failed

    def attach(self, dep: Any) -> None:
        mode = dep.mesh.mode
        self.down = ""
        if self.parked is not None:
            probe, key = self.parked
            self.parked = None
            if self.reuse_key is not None and self.reuse_key(dep) == key:
                self.probe = probe
                return
            probe.stop()
        try:
            probe = self.make(dep)
        except NothingToProbe as e:
            self.down = f"{mode}: {e}"
            self.book.failed(self.name, self.down)
            return
        if probe is None:
            return
        try:
            inject(f"{self.name}.attach", mode)
            probe.start()
        except StorageError:
            raise
        except Exception as e:  # compile or attach failed: recorded, and the run goes on
            probe.stop()
            self.down = f"{mode}: attach failed: {one_line(e)}"
            self.book.failed(self.name, self.down)
            return
        self.probe = probe

    def ensure(self, dep: Any, before: str) -> None:
        """Between cells: a probe whose read failed is attached again, on record."""
        if self.probe is None and self.down.startswith("read failed"):
            why = self.down
            self.attach(dep)
            if self.probe is not None:
                self.book.restarted(self.name, f"before {before}: after {why}")

    def reset(self) -> None:
        """A window starts: later reads count from here."""
        if self.probe is not None:
            self.probe.reset()

    def read(self, cell: Cell) -> Any:
        """The window's data, or None (the cell is then on record as missing this source)."""
        if self.probe is None:
            if self.down:
                self.book.missing(self.name, cell.id, self.down)
            return None
        try:
            inject(f"{self.name}.read", cell.id)
            return self.probe.read()
        except StorageError:
            raise
        except Exception as e:  # a failed read leaves this cell without rows, on record
            self.down = f"read failed in {cell.id}: {one_line(e)}"
            self.book.missing(self.name, cell.id, self.down)
            self.detach()  # attached again before the next cell (ensure)
            return None

    def detach(self) -> None:
        if self.probe is not None:
            self.probe.stop()
            self.probe = None

    def park(self, dep: Any) -> None:
        """The mode ends: a reusable probe is kept loaded for the next mode (close() stops
        it at the run's end); any other is detached."""
        if self.probe is not None and self.reuse_key is not None:
            self.parked, self.probe = (self.probe, self.reuse_key(dep)), None
        else:
            self.detach()

    def close(self) -> None:
        """The run ends: nothing stays loaded."""
        self.detach()
        if self.parked is not None:
            self.parked[0].stop()
            self.parked = None


class RunProbe:
    """The resource sampler: one process for the whole run, told per mode and cell which
    PIDs to watch (a targets file). A sampler that died is started again before the next
    cell, on record; a cell it did not cover is on record as missing resources."""

    name = "resources"

    def __init__(self, book: ProbeBook, targets_path: Path, out_path: Path,
                 interval_s: float, pss_interval_s: float) -> None:
        self.book = book
        self.targets_path = targets_path
        self.out_path = out_path
        self.interval_s = interval_s
        self.pss_interval_s = pss_interval_s
        self.sampler: ResourceSampler | None = None
        self.down = ""  # why the sampler is gone for good (a restart failed)

    def start(self) -> None:
        write_targets(self.targets_path, [])
        self.sampler = ResourceSampler(self.targets_path, self.out_path,
                                       interval=self.interval_s,
                                       pss_interval=self.pss_interval_s)
        self.sampler.start()
        self.book.set(self.name, {"status": "ok", "reason": "", "interval_s": self.interval_s,
                                  "pss_interval_s": self.pss_interval_s,
                                  "pid": self.sampler.pid})

    def dead(self) -> str:
        """Why the sampler is not running ("" while it is)."""
        if self.sampler is None or self.sampler.proc is None:
            return ""
        code = self.sampler.proc.poll()
        return "" if code is None else f"resource sampler (pid {self.sampler.pid}) exited with {code}"

    def ensure(self, before: str) -> None:
        """Between cells: a sampler that died is started again, on record."""
        dead = self.dead()
        if not dead or self.sampler is None:
            return
        self.book.failed(self.name, dead)
        self.sampler.stop()
        try:
            self.sampler.start()
        except BenchError as e:  # no sampler from here on: every later cell says so
            self.sampler = None
            self.down = f"restart before {before} failed: {e.one_line()}"
            self.book.failed(self.name, self.down)
            return
        self.book.restarted(self.name, f"before {before}: {dead}; new pid {self.sampler.pid}",
                            pid=self.sampler.pid)

    def watch(self, targets: Sequence[Target]) -> None:
        """The processes to sample from now on (replacing the last set)."""
        if self.sampler is not None:
            write_targets(self.targets_path, targets)

    def own_pids(self) -> set[int]:
        """The run's own processes now: the sampler's targets, the sampler, this process."""
        pids = {os.getpid()}
        if self.sampler is not None and self.sampler.pid is not None:
            pids.add(self.sampler.pid)
        try:
            pids |= {t.pid for t in read_targets(self.targets_path)}
        except (OSError, ValueError, KeyError, TypeError) as e:
            self.book.failed("noise", f"cannot read {self.targets_path}: {e}")
        return pids

    def window(self, cell: Cell, t0: float, t1: float) -> list[Sample] | None:
        """The window's rows, or None when the sampler did not run through it (on record:
        the cell is missing resources). Processes it could not measure are on record too,
        so that the report says which have no data instead of showing a zero."""
        if self.sampler is None:
            if self.down:
                self.book.missing(self.name, cell.id, self.down)
            return None
        dead = self.dead()
        if dead:
            self.book.missing(self.name, cell.id, dead)
            return None
        res = summarize_window(self.out_path, t0, t1, cell)
        self.book.skipped_entities(self.name, cell.id, res.skipped)
        return list(res.samples)

    def stop(self) -> None:
        if self.sampler is not None:
            self.sampler.stop()
            self.sampler = None


class ExperimentProbe:
    """The kernel view of config pushes (bench/probes/pushwire.py): a BCC probe on the
    control plane's process, attached at a mode's first experiment and kept for the next;
    a failed read is on record and the probe is attached anew for the next experiment; a
    failed attach leaves the rest of that (repetition, mode) without it, on record.
    `pid()` is the control plane's PID now (None: not visible from this host)."""

    name = "push_kernel"

    def __init__(self, book: ProbeBook, pid: Callable[[], int | None]) -> None:
        self.book = book
        self.pid = pid
        self.probe: Any = None
        self._down: dict[tuple[int, str], str] = {}  # (repetition, mode): attach failed
        self._restart = ""  # why the probe is being attached again

    def for_experiment(self, rep: int, mode: str, experiment: str) -> Any:
        """The attached probe for this experiment, or None (then on record as missing)."""
        where = f"r{rep}-{mode} {experiment}"
        if self.probe is None and (rep, mode) not in self._down:
            restart, self._restart = self._restart, ""
            self.probe, failed = self._attach(mode)
            if failed:
                self._down[(rep, mode)] = failed
            elif self.probe is not None and restart:
                self.book.restarted(self.name, f"before {where}: {restart}")
        down = self._down.get((rep, mode))
        if down:
            self.book.missing(self.name, where, down)
        return self.probe

    def lost(self, rep: int, mode: str, experiment: str, why: str) -> None:
        """The read for this experiment failed: on record, and attached anew for the next."""
        self.book.missing(self.name, f"r{rep}-{mode} {experiment}", why)
        self.stop()
        self._restart = f"after {why}"

    def _attach(self, mode: str) -> tuple[Any, str]:
        from bench.probes.pushwire import PushWireProbe, check

        if not self.book.get(self.name):
            missing = check()
            self.book.set(self.name, {"status": "skipped", "reason": missing[0],
                                      "hint": missing[1]} if missing else
                          {"status": "ok", "reason": ""})
        pid = self.pid()
        if not self.book.ok(self.name) or pid is None:
            return None, ""
        probe = PushWireProbe(pid)
        try:
            inject(f"{self.name}.attach", mode)
            return probe.start(), ""
        except StorageError:
            raise
        except Exception as e:  # compile or attach failed: recorded, experiments go on
            probe.stop()
            failed = f"{mode}: attach failed: {one_line(e)}"
            self.book.failed(self.name, failed)
            return None, failed

    def stop(self) -> None:
        if self.probe is not None:
            self.probe.stop()
            self.probe = None
