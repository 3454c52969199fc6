"""ModeProbe and ProbeBook: a probe's failures are on record, per cell, never retried silently."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from bench.probes.lifecycle import ModeProbe, NothingToProbe, ProbeBook
from bench.store import Cell, RunStore


@dataclass
class FakeProbe:
    fail_start: bool = False
    fail_reads: int = 0
    calls: list[str] = field(default_factory=list)

    def start(self) -> None:
        self.calls.append("start")
        if self.fail_start:
            raise RuntimeError("verifier said no")

    def reset(self) -> None:
        self.calls.append("reset")

    def read(self) -> list[int]:
        self.calls.append("read")
        if self.fail_reads:
            self.fail_reads -= 1
            raise OSError(9, "Bad file descriptor")
        return [1, 2, 3]

    def stop(self) -> None:
        self.calls.append("stop")


@dataclass
class Dep:
    mesh: Any


@dataclass
class Mesh:
    mode: str


@pytest.fixture
def book(tmp_path: Path) -> ProbeBook:
    store = RunStore.create(tmp_path, "run", {"probes": {}})
    b = ProbeBook(store, progress=lambda m: None)
    b.set("p", {"status": "ok", "reason": ""})
    return b


def test_a_failed_read_misses_that_cell_and_the_probe_is_attached_again(book: ProbeBook) -> None:
    probes = [FakeProbe(fail_reads=1), FakeProbe()]
    slot = ModeProbe("p", book, lambda dep: probes.pop(0))
    dep = Dep(Mesh("sidecar"))
    slot.attach(dep)
    slot.reset()
    assert slot.read(Cell(1, "sidecar", 100)) is None
    entry = book.get("p")
    assert "read failed in r1-sidecar-100rps: OSError" in entry["missing"]["r1-sidecar-100rps"]
    assert slot.probe is None
    slot.ensure(dep, "r1-sidecar-200rps")
    assert slot.read(Cell(1, "sidecar", 200)) == [1, 2, 3]
    [restart] = book.get("p")["restarts"]
    assert restart.startswith("before r1-sidecar-200rps: after read failed")
    assert "r1-sidecar-200rps" not in book.get("p")["missing"]


def test_a_failed_attach_leaves_every_cell_of_the_mode_missing(book: ProbeBook) -> None:
    probe = FakeProbe(fail_start=True)
    slot = ModeProbe("p", book, lambda dep: probe)
    slot.attach(Dep(Mesh("ambient")))
    assert probe.calls == ["start", "stop"]
    slot.ensure(Dep(Mesh("ambient")), "r1-ambient-200rps")  # an attach failure is not retried
    assert probe.calls == ["start", "stop"]
    for lvl in (100, 200):
        assert slot.read(Cell(1, "ambient", lvl)) is None
    entry = book.get("p")
    assert entry["failures"] == ["ambient: attach failed: RuntimeError: verifier said no"]
    assert set(entry["missing"]) == {"r1-ambient-100rps", "r1-ambient-200rps"}
    assert "restarts" not in entry


def test_nothing_to_probe_is_a_failure_but_no_probe_at_all_is_not(book: ProbeBook) -> None:
    def make(dep: Dep) -> Any:
        if dep.mesh.mode == "baseline":
            return None
        raise NothingToProbe("no proxy process is visible from this host")

    slot = ModeProbe("p", book, make)
    slot.attach(Dep(Mesh("baseline")))
    assert slot.read(Cell(1, "baseline", 100)) is None
    assert "missing" not in book.get("p")
    slot.attach(Dep(Mesh("sidecar")))
    assert slot.read(Cell(1, "sidecar", 100)) is None
    assert book.get("p")["missing"] == {
        "r1-sidecar-100rps": "sidecar: no proxy process is visible from this host"}


def test_the_status_set_again_keeps_what_was_recorded(book: ProbeBook) -> None:
    book.missing("p", "r1-sidecar-100rps", "gone")
    book.set("p", {"status": "ok", "reason": "", "pid": 7})  # a resumed run starts it again
    assert book.get("p") == {"status": "ok", "reason": "", "pid": 7,
                             "missing": {"r1-sidecar-100rps": "gone"}}


@dataclass
class PortDep:
    mesh: Any
    port: int


def test_a_reusable_probe_stays_loaded_across_modes_until_its_key_changes(
        book: ProbeBook) -> None:
    made: list[FakeProbe] = []

    def make(dep: Any) -> FakeProbe:
        made.append(FakeProbe())
        return made[-1]

    slot = ModeProbe("p", book, make, reuse_key=lambda dep: dep.port)
    for mode in ("baseline", "sidecar"):  # same key: one program for both modes
        dep = PortDep(Mesh(mode), 8080)
        slot.attach(dep)
        assert slot.read(Cell(1, mode, 100)) == [1, 2, 3]
        slot.park(dep)
    assert len(made) == 1 and made[0].calls.count("start") == 1
    assert "stop" not in made[0].calls
    slot.attach(PortDep(Mesh("ambient"), 9090))  # another key: the parked one is stopped
    assert len(made) == 2 and made[0].calls[-1] == "stop"
    slot.park(PortDep(Mesh("ambient"), 9090))
    slot.close()
    assert made[1].calls[-1] == "stop" and slot.parked is None and slot.probe is None


def test_a_probe_that_failed_a_read_is_not_parked_for_the_next_mode(book: ProbeBook) -> None:
    made: list[FakeProbe] = []

    def make(dep: Any) -> FakeProbe:
        made.append(FakeProbe(fail_reads=1 if not made else 0))
        return made[-1]

    slot = ModeProbe("p", book, make, reuse_key=lambda dep: dep.port)
    dep = PortDep(Mesh("sidecar"), 8080)
    slot.attach(dep)
    assert slot.read(Cell(1, "sidecar", 100)) is None  # failed: detached, stopped
    slot.park(dep)
    slot.attach(PortDep(Mesh("ambient"), 8080))
    assert len(made) == 2 and made[0].calls[-1] == "stop"
