"""The runner's fault handling with a fake backend and a fake load (no root, no Envoy):
a broken deployment costs only its mode's rest in that repetition, everything on record."""

from __future__ import annotations

import errno
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from bench import scenario as scen
from bench import store as store_mod
from bench.backends.base import Abilities, Deployment
from bench.errors import StorageError
from bench.load import hdr
from bench.mesh import build
from bench.outcomes import PushOutcome
from bench.run import cell as cell_mod
from bench.run.runner import Runner
from bench.store import RunStore, read_jsonl_table


def _scenario(**over: Any) -> scen.Scenario:
    raw = scen.read("smoke").to_dict()
    raw["modes"] = over.pop("modes", ["sidecar", "ambient"])
    raw["load"]["levels"] = over.pop("levels", [100])
    raw["timing"].update(warmup_s=0, window_s=1, idle_s=1)
    raw["probes"]["resources"]["enabled"] = False
    raw["probes"]["hops"]["enabled"] = False
    raw["probes"]["kernel_latency"]["enabled"] = False  # a fake load has no sockets to time
    raw["repetitions"] = over.pop("repetitions", 1)
    return scen.from_dict(raw, source="test")


@dataclass
class FakeLoad:
    pid: int = 4242
    lost: str = ""

    def check(self) -> str:
        return self.lost

    def started(self, processes: int = 1) -> bool:
        return True

    def wait(self) -> int:
        return 0

    def finish_after(self, t: float, processes: int = 1) -> None:
        pass

    def stop(self) -> None:
        pass

    def hdr_paths(self) -> list[Path]:
        return []

    def cpu_percent_max(self, t0: float, t1: float) -> float:
        return 1.0

    cpu_missing = ""


@dataclass
class FakeBackend:
    """Faults by mode: `die_in_cell` a process dies once that mode's window runs;
    `die_in_experiment` the named experiment finds its proxy gone (ConnectionRefusedError);
    `fail_experiment` it fails while every process lives."""

    s: scen.Scenario
    die_in_cell: set[str] = field(default_factory=set)
    die_in_experiment: dict[str, str] = field(default_factory=dict)
    fail_experiment: dict[str, str] = field(default_factory=dict)
    name: str = "fake"
    dead: list[str] = field(default_factory=list)
    torn_down: int = 0
    mode: str = ""
    pushed: list[tuple[str, str]] = field(default_factory=list)

    def provision(self, mode: str) -> Deployment:
        self.mode, self.dead = mode, []
        return Deployment(mesh=build(self.s, mode), load_netns=None, url="http://127.0.0.1:9")

    def check(self, dep: Deployment) -> list[str]:
        return list(self.dead)

    def abilities(self) -> Abilities:
        return Abilities(istiod=self)

    def controlplane_pid(self) -> int | None:
        return None

    def teardown(self) -> None:
        self.torn_down += 1
        self.dead = []

    def manifest_facts(self) -> dict[str, Any]:
        return {"envoy": "fake", "simplifications": []}

    def deployment_facts(self, key: str, info: dict[str, Any],
                         manifest: dict[str, Any]) -> dict[str, Any]:
        return {}

    def push_experiment(self, mesh: Any, experiment: str, timeout_s: float,
                        wire: Any) -> PushOutcome:
        if self.die_in_experiment.get(self.mode) == experiment:
            self.dead = ["sidecar-svc-0-0 (pid 1) exited with -9"]
            raise ConnectionRefusedError(111, "Connection refused")
        if self.fail_experiment.get(self.mode) == experiment:
            raise OSError(errno.EIO, "admin answered garbage")
        self.pushed.append((self.mode, experiment))
        return PushOutcome(experiment=experiment, mode=mesh.mode,
                           proxies=tuple(p.name for p in mesh.proxies), updated=())


@pytest.fixture
def fake_load(monkeypatch: pytest.MonkeyPatch) -> dict[str, FakeLoad]:
    loads: dict[str, FakeLoad] = {}

    def run_locust(**kw: Any) -> FakeLoad:
        load = FakeLoad()
        loads[kw["hdr_out"].stem] = load
        return load

    def summarize(intervals: Any, t0: float, t1: float) -> hdr.LatencySummary:
        return hdr.LatencySummary(1000.0, 2000.0, 3000.0, 4000.0, 5000.0, 1200.0, 100, 0,
                                  100.0, t0, t1, t1 - t0)

    monkeypatch.setattr(cell_mod, "run_locust", run_locust)
    monkeypatch.setattr(cell_mod, "LOCUST_START_S", 0.0)
    monkeypatch.setattr(cell_mod.hdr, "summarize", summarize)
    monkeypatch.setattr(cell_mod.hdr, "read_intervals", lambda paths, field="hist": [])
    return loads


def _store(tmp_path: Path) -> RunStore:
    return RunStore.create(tmp_path, "run", {"probes": {}})


class DyingBackend(FakeBackend):
    def check(self, dep: Deployment) -> list[str]:
        runner = self._runner
        if (self.mode in self.die_in_cell and runner.current.get("phase") == "window"
                and not self.dead):
            self.dead = ["sidecar-svc-0-0 (pid 1) exited with -9: killed"]
        return list(self.dead)


def _run(tmp_path: Path, backend: FakeBackend) -> tuple[Runner, dict[str, Any]]:
    store = _store(tmp_path)
    r = Runner(backend.s, backend, store, progress=lambda m: None)
    backend._runner = r  # type: ignore[attr-defined]
    r.run()
    return r, json.loads((store.dir / "manifest.json").read_text())


def _by_cell(manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["cell"]: c for c in manifest["cells"]}


def test_a_process_dying_mid_cell_skips_the_rest_of_that_mode_only(
        tmp_path: Path, fake_load: dict[str, FakeLoad]) -> None:
    s = _scenario(levels=[100, 200])
    backend = DyingBackend(s, die_in_cell={"sidecar"})
    r, m = _run(tmp_path, backend)
    cells = _by_cell(m)
    assert cells["r1-sidecar-100rps"]["status"] == "failed"
    assert "process died mid-cell: sidecar-svc-0-0" in cells["r1-sidecar-100rps"]["reason"]
    assert cells["r1-sidecar-200rps"]["status"] == "skipped"
    assert "sidecar deployment broke in cell r1-sidecar-100rps" in \
        cells["r1-sidecar-200rps"]["reason"]
    assert cells["r1-ambient-100rps"]["status"] == "ok"
    assert cells["r1-ambient-200rps"]["status"] == "ok"
    skipped = [e for e in m["experiments"] if e["mode"] == "sidecar"]
    assert [e["status"] for e in skipped] == ["skipped"] * len(s.experiments)
    assert [e["status"] for e in m["experiments"] if e["mode"] == "ambient"] == \
        ["ok"] * len(s.experiments)
    assert backend.pushed == [("ambient", n) for n in s.experiments]
    [fault] = m["faults"]
    assert fault["mode"] == "sidecar" and fault["phase"] == "cell r1-sidecar-100rps"
    assert fault["skipped_cells"] == ["r1-sidecar-200rps"]
    assert fault["skipped_experiments"] == list(s.experiments)
    assert backend.torn_down == 2  # each mode torn down
    assert r.problems() == ["1 of 4 cells failed", "1 of 4 cells skipped",
                            f"{len(s.experiments)} experiments skipped"]


def test_a_proxy_gone_during_an_experiment_ends_that_modes_experiments(
        tmp_path: Path, fake_load: dict[str, FakeLoad]) -> None:
    s = _scenario(repetitions=2)
    backend = FakeBackend(s, die_in_experiment={"sidecar": "l7_route"})
    r, m = _run(tmp_path, backend)
    assert all(c["status"] == "ok" for c in m["cells"])  # cells ran before the fault
    sidecar = [(e["repetition"], e["experiment"], e["status"]) for e in m["experiments"]
               if e["mode"] == "sidecar"]
    assert sidecar == [(1, "new_service", "ok"), (1, "l7_route", "failed"),
                       (1, "l4_authz", "skipped"),
                       (2, "new_service", "ok"), (2, "l7_route", "failed"),
                       (2, "l4_authz", "skipped")]
    failed = next(e for e in m["experiments"] if e["status"] == "failed")
    assert failed["reason"].startswith("sidecar-svc-0-0 (pid 1) exited with -9")
    assert [f["phase"] for f in m["faults"]] == ["experiment l7_route"] * 2
    assert ("ambient", "l4_authz") in backend.pushed  # the next mode ran its experiments


def test_a_failed_experiment_without_a_dead_process_is_not_a_broken_mode(
        tmp_path: Path, fake_load: dict[str, FakeLoad]) -> None:
    s = _scenario(modes=["ambient"])
    backend = FakeBackend(s, fail_experiment={"ambient": "new_service"})
    r, m = _run(tmp_path, backend)
    assert [e["status"] for e in m["experiments"]] == ["failed", "skipped", "skipped"]
    assert "admin answered garbage" in m["experiments"][0]["reason"]
    assert "experiment new_service failed" in m["experiments"][1]["reason"]
    assert m.get("faults", []) == []


def test_a_lost_load_generator_worker_fails_its_cell_but_not_the_mode(
        tmp_path: Path, fake_load: dict[str, FakeLoad], monkeypatch: pytest.MonkeyPatch) -> None:
    s = _scenario(modes=["sidecar"], levels=[100, 200])
    made: list[FakeLoad] = []

    def run_locust(**kw: Any) -> FakeLoad:
        load = FakeLoad(lost="Locust worker pid 77 is gone (1 of 2 workers)" if not made else "")
        made.append(load)
        return load

    monkeypatch.setattr(cell_mod, "run_locust", run_locust)
    backend = FakeBackend(s)
    r, m = _run(tmp_path, backend)
    cells = _by_cell(m)
    assert cells["r1-sidecar-100rps"]["status"] == "failed"
    assert "Locust worker pid 77 is gone" in cells["r1-sidecar-100rps"]["reason"]
    assert cells["r1-sidecar-200rps"]["status"] == "ok"
    assert [e["status"] for e in m["experiments"]] == ["ok"] * 3


def test_a_full_results_disk_stops_the_run_torn_down_with_rows_kept(
        tmp_path: Path, fake_load: dict[str, FakeLoad], monkeypatch: pytest.MonkeyPatch) -> None:
    s = _scenario(levels=[100, 200])
    store = _store(tmp_path)
    backend = FakeBackend(s)
    writes: list[bytes] = []

    def write(fd: int, data: bytes) -> int:
        if b'"level":0,' in data:  # the machine's noise when idle: not the cells' rows
            return real_write(fd, data)
        if writes:  # the second cell's rows: half of them get out, then the disk is full
            if len(data) > 1:
                writes.append(data[: len(data) // 2])
                return real_write(fd, data[: len(data) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        writes.append(data)
        return real_write(fd, data)

    real_write = os.write
    monkeypatch.setattr(store_mod, "_os_write", write)
    r = Runner(s, backend, store, progress=lambda m: None)
    with pytest.raises(StorageError) as e:
        r.run()
    assert "the results disk is full" in e.value.one_line()
    assert "\n" not in e.value.one_line()
    assert backend.torn_down == 1  # the mode in progress was torn down
    # the rows before stay, whole (the cut write was taken back)
    df = read_jsonl_table(store.dir)
    assert set(df["level"]) - {0} == {100}
    assert len(df[df["level"] > 0]) == writes[0].count(b"\n")
    assert (store.dir / "samples.jsonl").read_bytes().endswith(writes[0])


def test_manifest_write_on_a_full_disk_keeps_the_previous_manifest(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = _store(tmp_path)
    store.update(cells=[{"cell": "a"}])

    def fail(*a: Any, **k: Any) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", fail)
    with pytest.raises(StorageError, match="the results disk is full"):
        store.update(cells=[{"cell": "a"}, {"cell": "b"}])
    monkeypatch.undo()
    assert json.loads((store.dir / "manifest.json").read_text())["cells"] == [{"cell": "a"}]
    assert [p.name for p in store.dir.iterdir() if p.name.startswith(".tmp")] == []


class InterruptingBackend(FakeBackend):
    """Ctrl-C (KeyboardInterrupt) once, at `interrupt` = (mode, experiment)."""

    interrupt: tuple[str, str] | None = None

    def preflight(self) -> None:
        pass

    def push_experiment(self, mesh: Any, experiment: str, timeout_s: float,
                        wire: Any) -> PushOutcome:
        if (self.mode, experiment) == self.interrupt:
            raise KeyboardInterrupt
        return super().push_experiment(mesh, experiment, timeout_s, wire)


def test_resume_runs_what_was_not_finished_and_counts_no_row_twice(
        tmp_path: Path, fake_load: dict[str, FakeLoad]) -> None:
    from bench.errors import UserError
    from bench.run import resume as rs
    from bench.run.execute import EXIT_INTERRUPTED, EXIT_OK, _execute

    s = _scenario(levels=[100, 200])
    first = InterruptingBackend(s)
    first.interrupt = ("ambient", "l7_route")
    run_dir, code = _execute(s, first, lambda: RunStore.create(tmp_path, "run", {
        "scenario": s.to_dict(), "scenario_hash": s.hash, "probes": {}}), report=False)
    assert code == EXIT_INTERRUPTED
    m = rs.load_manifest(run_dir)
    assert m["exit_status"] == "interrupted"
    assert len(m["cells"]) == 4  # the ambient cells ran; its experiments did not finish
    assert rs.unfinished(s, m) == [(1, "ambient")]
    before = read_jsonl_table(run_dir)
    ambient_xds = before[(before["mode"] == "ambient") & (before.source == "xds")]
    assert len(ambient_xds) > 0  # new_service's rows, from the interrupted attempt

    # a different scenario is refused, in one line
    other = _scenario(levels=[100])
    with pytest.raises(UserError) as e:
        rs.scenario_of(run_dir, m, other)
    assert "refusing to resume" in e.value.one_line() and "\n" not in e.value.one_line()

    second = InterruptingBackend(s)
    s2 = rs.scenario_of(run_dir, m, None)
    _, code = _execute(s2, second, lambda: rs.prepare(run_dir, s2, m), report=False)
    assert code == EXIT_OK
    m = rs.load_manifest(run_dir)
    assert m["exit_status"] == "ok" and m["finalized"]
    assert sorted(c["cell"] for c in m["cells"]) == sorted(
        f"r1-{mode}-{lvl}rps" for mode in ("sidecar", "ambient") for lvl in (100, 200))
    assert second.pushed == [("ambient", n) for n in s.experiments]  # only what was left
    assert [(e["mode"], e["experiment"]) for e in m["experiments"]] == [
        (mode, n) for mode in ("sidecar", "ambient") for n in s.experiments]
    [resumed] = m["resumed"]
    assert resumed["units"] == ["r1-ambient"] and resumed["cells"] == []
    # the unit's run-wide rows: its experiments', and the machine's noise of its idle
    # period and experiments (all run again)
    unit_rows = before[(before["mode"] == "ambient") & (before["level"] == 0)]
    assert len(unit_rows) == len(ambient_xds) + len(unit_rows[unit_rows.source == "noise"])
    assert resumed["rows_set_aside"] == len(unit_rows)
    after = read_jsonl_table(run_dir)
    key = ["mode", "level", "repetition", "source", "metric", "entity", "labels"]
    assert not after.duplicated(key).any()
    assert len(after[after.source == "load"]) == len(before[before.source == "load"])
    aside = (run_dir / "samples.discarded.jsonl").read_text().splitlines()
    assert len(aside) == len(unit_rows)  # set aside, not lost


def test_execute_on_a_full_disk_stops_with_one_line_and_keeps_the_run(
        tmp_path: Path, fake_load: dict[str, FakeLoad], monkeypatch: pytest.MonkeyPatch) -> None:
    from bench.run.execute import _execute

    s = _scenario(levels=[100, 200])
    backend = InterruptingBackend(s)
    calls = []

    def write(fd: int, data: bytes) -> int:
        if b'"level":0,' in data:  # the machine's noise when idle: not the cells' rows
            return real_write(fd, data)
        calls.append(len(data))
        if len(calls) > 1:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    real_write = os.write
    monkeypatch.setattr(store_mod, "_os_write", write)
    with pytest.raises(StorageError) as e:
        _execute(s, backend, lambda: RunStore.create(tmp_path, "run", {
            "scenario": s.to_dict(), "scenario_hash": s.hash, "probes": {}}), report=False)
    assert "\n" not in e.value.one_line() and "disk is full" in e.value.one_line()
    assert e.value.exit_code == 1
    assert backend.torn_down == 1
    m = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert m["exit_status"].startswith("error: cannot write") and m["exit_code"] == 1
    df = read_jsonl_table(tmp_path / "run")  # the first cell's rows, whole
    assert set(df["level"]) - {0} == {100} and len(df[df["level"] > 0]) > 0
    assert (tmp_path / "run" / "samples.parquet").exists()  # the kept rows, as a table


class CountingBackend(FakeBackend):
    """Proxies' own connection counters: each cell's load moves them by 10 for every role
    except those in `bypass` (traffic that skipped them)."""

    bypass: frozenset[str] = frozenset()

    def abilities(self) -> Abilities:
        return Abilities(istiod=self, path=self)

    def path_counters(self, dep: Deployment) -> dict[str, float]:
        n = sum(1 for s in fake_starts if s.startswith(f"r1-{self.mode}"))
        return {f"{p.role}/{p.name}:cx": 0.0 if p.role in self.bypass else 10.0 * n
                for p in dep.mesh.proxies}


fake_starts: list[str] = []


def test_the_path_check_names_a_role_the_load_bypassed(
        tmp_path: Path, fake_load: dict[str, FakeLoad], monkeypatch: pytest.MonkeyPatch) -> None:
    fake_starts.clear()
    run_locust = cell_mod.run_locust

    def counted(**kw: Any) -> FakeLoad:
        fake_starts.append(kw["hdr_out"].stem)
        return run_locust(**kw)  # type: ignore[return-value]

    monkeypatch.setattr(cell_mod, "run_locust", counted)
    s = _scenario(modes=["sidecar", "ambient"], levels=[100, 200])
    backend = CountingBackend(s)
    backend.bypass = frozenset({"ztunnel"})
    _, m = _run(tmp_path, backend)
    checks = {c["mode"]: c for c in m["path_checks"]}
    assert checks["sidecar"]["counters"]["sidecar"] > 0
    assert checks["sidecar"]["bypassed"] == []
    assert checks["ambient"]["bypassed"] == ["ztunnel"]
    assert checks["ambient"]["ok_cells"] == 2
    from analysis.metadata import path_lines

    text = "\n".join(path_lines(m))
    assert "| r1 | ambient |" in text and "ztunnel 0" in text


def test_every_phase_of_every_mode_has_its_time_in_the_manifest(
        tmp_path: Path, fake_load: dict[str, FakeLoad]) -> None:
    s = _scenario(modes=["sidecar", "ambient"], repetitions=2)
    t0 = time.monotonic()
    _, m = _run(tmp_path, FakeBackend(s))
    wall = time.monotonic() - t0
    assert set(m["phases"]) == {"r1-sidecar", "r1-ambient", "r2-sidecar", "r2-ambient"}
    # the phases follow one another: together no longer than the run took
    assert 0 < sum(v for per in m["phases"].values() for v in per.values()) <= wall
    for unit, per in m["phases"].items():
        assert {"provisioning", "warm-up", "window", "collect", "experiment",
                "teardown"} <= set(per), unit
        assert per["window"] >= s.timing.window_s * 0.9  # the window's own sleep
        assert min(per.values()) >= 0
    from analysis.metadata import phases_lines

    assert "window" in phases_lines(m)[0]


def test_waiting_for_an_event_notices_a_dead_process_and_times_out(tmp_path: Path) -> None:
    from bench.errors import CellFailed
    from bench.probes.lifecycle import ProbeBook
    from bench.run.context import PhaseClock, RunContext

    s = _scenario()
    backend = FakeBackend(s)
    store = _store(tmp_path)
    ctx = RunContext(s=s, backend=backend, abilities=backend.abilities(), store=store,  # type: ignore[arg-type]
                     book=ProbeBook(store, lambda m: None), progress=lambda m: None,
                     clock=PhaseClock(store))
    dep = backend.provision("sidecar")
    calls: list[int] = []
    waited = ctx.wait_checking(dep, lambda: len(calls) > 2 or bool(calls.append(1)), 10,
                               "three polls")
    assert len(calls) == 3 and 0 <= waited < 10  # polled until true, well before the limit
    with pytest.raises(CellFailed, match="never did not happen within 0 s"):
        ctx.wait_checking(dep, lambda: False, 0.2, "never")
    backend.dead = ["sidecar-client-0 (pid 7) exited with 1"]
    with pytest.raises(CellFailed, match="process died mid-cell: sidecar-client-0"):
        ctx.wait_checking(dep, lambda: False, 10, "never")


def test_a_contaminated_cell_is_run_again_and_every_attempt_is_kept(
        tmp_path: Path, fake_load: dict[str, FakeLoad], monkeypatch: pytest.MonkeyPatch) -> None:
    from bench.probes import noise

    s = _scenario(modes=["sidecar"])
    raw = s.to_dict()
    raw["timing"]["rerun_noisy"] = 2
    s = scen.from_dict(raw, source="test")
    backend = FakeBackend(s)
    lost = {"collect": [0.5, 0.4, 0.01]}  # the cell's windows: two stolen, then a quiet one

    def summarize(a: Any, b: Any, own: Any, sampler_out: Any = None,
                  own_cgroups: Any = ()) -> noise.Noise:
        phase = backend._runner.current.get("phase")  # type: ignore[attr-defined]
        share = lost[phase].pop(0) if phase in lost else 0.0
        return noise.Noise(span_s=1.0, ncpu=2, steal_share=share, steal_max_cpu_share=share,
                           steal_peak_share=None, foreign_share=0.0, foreign_cores=0.0,
                           foreign_kernel_cores=0.0, psi_some_share=None,
                           psi_full_share=None, runq_mean=None, runq_max=None, sweeps=0)

    monkeypatch.setattr(noise, "summarize", summarize)
    r, m = _run(tmp_path, backend)
    [cell] = m["cells"]
    assert cell["status"] == "ok" and cell["attempt"] == 3 and cell["noisy"] == ""
    assert [a["attempt"] for a in cell["attempts"]] == [1, 2]
    assert all(a["noisy"].startswith("window: ") for a in cell["attempts"])
    assert [a["noise"]["steal_share"] for a in cell["attempts"]] == [0.5, 0.4]
    assert sorted(fake_load) == ["r1-sidecar-100rps", "r1-sidecar-100rps-a2",
                                 "r1-sidecar-100rps-a3"]  # each attempt its own HDR files
    assert m["noise"]["rerun"] == 1 and m["noise"]["attempts_set_aside"] == 2
    rows = read_jsonl_table(tmp_path / "run")
    attempts = rows[(rows["source"] == "noise") & (rows["metric"] == "contaminated")]
    labels = [json.loads(x) if isinstance(x, str) else x for x in attempts["labels"]]
    assert sorted((lab.get("phase"), lab.get("attempt", 1)) for lab in labels) == [
        ("experiment", 1), ("idle", 1), ("load", 1), ("load", 2), ("load", 3)]


def test_a_cell_still_contaminated_after_its_reruns_is_recorded_so(
        tmp_path: Path, fake_load: dict[str, FakeLoad], monkeypatch: pytest.MonkeyPatch) -> None:
    from bench.probes import noise

    s = _scenario(modes=["sidecar"])
    backend = FakeBackend(s)  # rerun_noisy 0: flagged, not run again

    def summarize(a: Any, b: Any, own: Any, sampler_out: Any = None,
                  own_cgroups: Any = ()) -> noise.Noise:
        return noise.Noise(span_s=1.0, ncpu=2, steal_share=0.0, steal_max_cpu_share=0.0,
                           steal_peak_share=None, foreign_share=0.3, foreign_cores=0.6,
                           foreign_kernel_cores=0.0, psi_some_share=0.2,
                           psi_full_share=0.0, runq_mean=1.0, runq_max=2, sweeps=1,
                           foreign_top=({"comm": "stress-ng", "cores": 0.6},))

    monkeypatch.setattr(noise, "summarize", summarize)
    said: list[str] = []
    store = _store(tmp_path)
    r = Runner(backend.s, backend, store, progress=said.append)
    backend._runner = r  # type: ignore[attr-defined]
    r.run()
    m = json.loads((store.dir / "manifest.json").read_text())
    [cell] = m["cells"]
    assert cell["attempt"] == 1 and "attempts" not in cell
    assert "stress-ng 0.60 cores" in cell["noisy"] and "30.0 %" in cell["noisy"]
    assert m["noise"]["contaminated"] == 1
    assert any("CONTAMINATED" in line for line in said)
