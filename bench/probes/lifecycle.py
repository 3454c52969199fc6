"""Probe lifecycles of a run, and the one place that writes their status to the manifest.

ProbeBook holds the manifest's `probes` section. ModeProbe runs one probe that is attached
per mode (the per-hop BPF probe; a new one of the same shape is one more ModeProbe): attach
before the load, reset at a window's start, read at its end, detach at teardown, every
failure on record and nothing retried silently.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from bench.errors import StorageError
from bench.faults import inject
from bench.store import Cell, RunStore


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

    def __init__(self, name: str, book: ProbeBook, make: Callable[[Any], Any]) -> None:
        self.name = name
        self.book = book
        self.make = make
        self.probe: Any = None
        self.down = ""  # why the mode has no running probe: attach or read failed

    def attach(self, dep: Any) -> None:
        mode = dep.mesh.mode
        self.down = ""
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
