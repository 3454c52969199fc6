"""The fault matrix: components killed (by the PIDs the run records) or failed (the in-process
BPF probes, through MB_INJECT) mid-cell and mid-experiment, during whole CLI runs.

Every case asserts: exit code 3 ("completed with failures"), each fault's failed or skipped
cells and experiments with their reasons in the manifest, the cells after the fault done,
the report written, the JSONL readable, and nothing of ours left (namespaces, processes,
iptables rules, runtime files). To keep CI's time small, one run carries several faults (one
per mode and phase; the smoke scenario with short windows); MB_FAULT_MATRIX=full adds one
run per (component, phase) pair as well.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml

from bench.backends.local import netns
from bench.store import read_jsonl_table

pytestmark = [pytest.mark.root]
REPO = Path(__file__).resolve().parents[2]
RUNTIME = Path("/run/meshbench")
RUN_TIMEOUT_S = 420
# processes of a deployment, by the role the manifest records them under
DEPLOYMENT_ROLES = {"sidecar", "ztunnel", "waypoint", "control-plane", "app"}


@dataclass(frozen=True)
class Fault:
    component: str  # a deployment role, "locust-master", "locust-worker", "sampler", or an
    #                 injected probe fault: "hops.attach", "hops.read", "push_kernel.read"
    mode: str
    phase: str  # "window" (mid-cell) or an experiment's name (mid-experiment)

    @property
    def breaks_mode(self) -> bool:
        return self.component in DEPLOYMENT_ROLES

    def __str__(self) -> str:
        return f"{self.component}@{self.mode}:{self.phase}"


@dataclass(frozen=True)
class Case:
    name: str
    modes: tuple[str, ...]
    faults: tuple[Fault, ...]
    levels: tuple[int, ...] = (100,)
    processes: int = 1
    hops: bool = False


# Each component at each phase where it runs (Locust and the hop probe: cells; the push-wire
# probe: experiments), each proxy role killed; after a fault, later modes run and complete.
CASES = [
    Case("proxies", ("sidecar", "baseline", "ambient", "waypoint"), (
        Fault("sidecar", "sidecar", "window"),
        Fault("app", "baseline", "window"),
        Fault("ztunnel", "ambient", "l7_route"),
        Fault("sampler", "ambient", "window"),
        Fault("waypoint", "waypoint", "new_service"),
    )),
    Case("services-and-load", ("ambient", "sidecar", "waypoint"), (
        Fault("control-plane", "ambient", "window"),
        Fault("locust-worker", "sidecar", "window"),
        Fault("app", "sidecar", "new_service"),
        Fault("locust-master", "waypoint", "window"),
    ), processes=2),
    Case("probes", ("sidecar", "waypoint"), (
        Fault("hops.read", "sidecar", "window"),
        Fault("sampler", "sidecar", "l4_authz"),
        Fault("push_kernel.read", "sidecar", "l7_route"),
        Fault("hops.attach", "waypoint", "window"),
        Fault("control-plane", "waypoint", "l4_authz"),
    ), levels=(100, 150), hops=True),
]
FULL = [Case(f"{c}-{p}", (m, "baseline"), (Fault(c, m, p),),
             processes=2 if c == "locust-worker" else 1, hops=c.startswith("hops"))
        for c, m in (("sidecar", "sidecar"), ("ztunnel", "ambient"), ("waypoint", "waypoint"),
                     ("control-plane", "sidecar"), ("app", "ambient"),
                     ("locust-master", "sidecar"), ("locust-worker", "sidecar"),
                     ("sampler", "sidecar"), ("hops.read", "sidecar"),
                     ("hops.attach", "sidecar"), ("push_kernel.read", "sidecar"))
        for p in ("window", "l7_route")
        if not (p != "window" and (c.startswith("locust") or c.startswith("hops")))
        and not (p == "window" and c.startswith("push_kernel"))]
if os.environ.get("MB_FAULT_MATRIX") == "full":
    CASES += FULL


def _scenario_file(case: Case, tmp: Path) -> Path:
    raw = yaml.safe_load((REPO / "workloads" / "scenarios" / "smoke.yaml").read_text())
    raw.update(name=f"faults-{case.name}", modes=list(case.modes))
    raw["load"].update(levels=list(case.levels), processes=case.processes,
                       connections=max(2, case.processes))
    # short, and bounded: a proxy that died never ACKs, the wait for it is checked anyway
    raw["timing"] = {"warmup_s": 0.5, "window_s": 2, "idle_s": 1, "ready_timeout_s": 20}
    raw["probes"] = {"hops": {"enabled": case.hops, "overhead_check": False}}
    path = tmp / f"{case.name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Driver:
    """Runs the CLI, reads its progress lines, and fires each fault when its phase starts."""

    def __init__(self, case: Case, results: Path, scenario: Path) -> None:
        self.case = case
        self.results = results
        inject = ",".join(f"{f.component}@{_inject_key(f, case)}" for f in case.faults
                          if "." in f.component)
        env = {**os.environ, "MB_INJECT": inject}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench", "run", "-s", str(scenario), "--results",
             str(results)], cwd=REPO, env=env, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, preexec_fn=_default_sigint)
        self.lines: list[str] = []
        self.fired: dict[Fault, str] = {}
        self.errors: list[str] = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        pending = [f for f in self.case.faults if "." not in f.component]
        for line in self.proc.stderr:
            self.lines.append(line)
            m = re.search(r"\] r(\d+) (\w+): (window|experiment) (\S+)", line)
            if not m:
                continue
            mode, phase, what = m.group(2), m.group(3), m.group(4)
            for f in list(pending):
                if f.mode == mode and (f.phase == "window" and phase == "window"
                                       or f.phase == what and phase == "experiment"):
                    pending.remove(f)
                    try:
                        self.fired[f] = self._kill(f)
                    except Exception as e:  # noqa: BLE001 - reported by the test
                        self.errors.append(f"{f}: {type(e).__name__}: {e}")

    def _manifest(self) -> dict[str, Any]:
        [path] = self.results.glob("*/manifest.json")
        return json.loads(path.read_text())

    def _kill(self, f: Fault) -> str:
        """Kill the fault's process by the PID the run recorded; returns its entity."""
        m = self._manifest()
        if f.component == "sampler":
            pid, entity = int(m["probes"]["resources"]["pid"]), "resource sampler"
        elif f.component.startswith("locust"):
            leader = int(m["current"]["loadgen_pid"])
            pid, entity = leader, "Locust"
            if f.component == "locust-worker":
                deadline = time.monotonic() + 10
                while not (kids := psutil.Process(leader).children()):
                    assert time.monotonic() < deadline, "Locust started no worker"
                    time.sleep(0.1)
                pid, entity = kids[0].pid, "Locust worker"
        else:
            dep = [d for d in m["deployments"] if d["mode"] == f.mode][-1]
            procs = [p for p in dep["processes"] if p["role"] == f.component]
            # a sidecar: the server's (the case); otherwise the first of the role
            proc = next((p for p in procs if "svc" in p["entity"]), procs[0])
            pid, entity = proc["pid"], proc["entity"]
        os.kill(pid, signal.SIGKILL)
        return entity

    def wait(self) -> tuple[int, str]:
        assert self.proc.stdout is not None
        out = self.proc.stdout.read()
        self.proc.wait(timeout=RUN_TIMEOUT_S)
        self.thread.join(timeout=30)
        return self.proc.returncode, out


def _inject_key(f: Fault, case: Case) -> str:
    if f.component == "hops.read":  # the mode's first cell
        return f"r1-{f.mode}-{case.levels[0]}rps"
    if f.component == "push_kernel.read":
        return f.phase
    return f.mode


def _our_pids(m: dict[str, Any]) -> list[int]:
    pids = [p["pid"] for d in m.get("deployments", []) for p in d["processes"]]
    pids += [c["loadgen_pid"] for c in m.get("cells", []) if c.get("loadgen_pid")]
    res = m.get("probes", {}).get("resources", {})
    pids += [int(x) for x in re.findall(r"new pid (\d+)", " ".join(res.get("restarts", [])))]
    return pids + ([int(res["pid"])] if res.get("pid") else [])


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _assert_nothing_left(m: dict[str, Any]) -> None:
    assert netns.list_ours() == []
    deadline = time.monotonic() + 10
    while (alive := [p for p in _our_pids(m) if _alive(p)]) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert alive == []
    rules = subprocess.run(["iptables-save"], capture_output=True, text=True).stdout
    assert "mb-" not in rules
    left = sorted(p.name for p in RUNTIME.iterdir()) if RUNTIME.exists() else []
    assert set(left) <= {"lock", "bin"}


def _assert_fault(f: Fault, case: Case, m: dict[str, Any], entity: str, df: Any) -> None:
    levels = case.levels
    # another fault of the case failing this mode's cell (e.g. Locust killed mid-window)
    cell_faulted = any(g.mode == f.mode and g.phase == "window" and g != f
                       and not g.component.startswith(("sampler", "hops"))
                       for g in case.faults)
    cells = {c["cell"]: c for c in m["cells"]}
    ids = [f"r1-{f.mode}-{lvl}rps" for lvl in levels]
    exps = [e for e in m["experiments"] if e["mode"] == f.mode]
    faults = [x for x in m.get("faults", []) if x["mode"] == f.mode]
    if f.breaks_mode and f.phase == "window":
        first = cells[ids[0]]
        assert first["status"] == "failed", first
        assert "process died mid-cell" in first["reason"] and entity in first["reason"]
        assert all(cells[c]["status"] == "skipped" for c in ids[1:])
        assert all(e["status"] == "skipped" for e in exps), exps
        assert exps or f.mode == "baseline", "a mode with proxies has experiments to skip"
        assert faults and faults[0]["phase"] == f"cell {ids[0]}" and entity in faults[0]["reason"]
    elif f.breaks_mode:
        # the cells ran before the fault
        assert all(cells[c]["status"] == ("failed" if cell_faulted else "ok") for c in ids)
        failed = [e for e in exps if e["status"] == "failed"]
        assert len(failed) == 1 and entity in failed[0]["reason"], exps
        after = exps[exps.index(failed[0]) + 1:]
        assert all(e["status"] == "skipped" for e in after)
        assert faults and faults[0]["phase"].startswith("experiment ")
    elif f.component.startswith("locust"):
        first = cells[ids[0]]
        assert first["status"] == "failed", first
        assert "load generator failed mid-cell" in first["reason"], first
        if f.component == "locust-worker":
            assert "worker" in first["reason"], first
        # the load generator is the cell's, not the deployment's: the mode went on
        assert not [x for x in faults if x["phase"].startswith("cell")], faults
        assert exps and exps[0]["status"] in ("ok", "failed"), exps
    elif f.component == "sampler":
        res = m["probes"]["resources"]
        assert any("resource sampler" in r for r in res["restarts"]), res
        if f.phase == "window":
            assert ids[0] in res["missing"], res
            rows = df[(df.source == "resources") & (df["mode"] == f.mode) & (df.level > 0)]
            assert set(rows["level"]) <= set(levels[1:])  # no rows from the dead window
    elif f.component == "hops.read":
        hops = m["probes"]["hops"]
        assert "injected fault at hops.read" in hops["missing"][ids[0]]
        if len(ids) > 1:
            assert any(ids[1] in r for r in hops["restarts"]), hops
            rows = df[(df.source == "hops") & (df["mode"] == f.mode)]
            assert set(rows["level"]) == set(levels[1:]), "the restarted probe measured"
    elif f.component == "hops.attach":
        hops = m["probes"]["hops"]
        assert all("attach failed" in hops["missing"][c] for c in ids), hops
        assert df[(df.source == "hops") & (df["mode"] == f.mode)].empty
    elif f.component == "push_kernel.read":
        pk = m["probes"]["push_kernel"]
        if pk.get("status") == "ok":
            assert f"r1-{f.mode} {f.phase}" in pk["missing"], pk
            assert all(e["status"] == "ok" for e in exps), exps  # experiments went on
    else:
        raise AssertionError(f"no expectation for {f}")


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_fault_costs_only_what_it_touched(case: Case, tmp_path: Path) -> None:
    t0 = time.monotonic()
    if any(f.component.startswith("hops") for f in case.faults):
        pytest.importorskip("bcc", reason="the hop probe needs BCC")
    drv = Driver(case, tmp_path / "results", _scenario_file(case, tmp_path))
    code, out = drv.wait()
    err = "".join(drv.lines)
    assert not drv.errors, drv.errors
    assert code == 3, err[-3000:]
    run_dir = Path(out.strip().splitlines()[-1])
    m = json.loads((run_dir / "manifest.json").read_text())
    assert m["exit_status"].startswith("completed with failures"), m["exit_status"]
    assert (run_dir / "report.md").exists()
    df = read_jsonl_table(run_dir)
    for line in (run_dir / "samples.jsonl").read_text().splitlines():
        json.loads(line)  # every line whole
    killed = {f: drv.fired.get(f, "") for f in case.faults}
    missed = [str(f) for f, e in killed.items() if "." not in f.component and not e]
    assert not missed, f"faults never fired: {missed}\n{err[-3000:]}"
    for f, entity in killed.items():
        _assert_fault(f, case, m, entity, df)
    # the modes without a fault of their own completed
    faulted = {f.mode for f in case.faults}
    for c in m["cells"]:
        if c["mode"] not in faulted:
            assert c["status"] == "ok", c
    _assert_nothing_left(m)
    print(f"fault case {case.name}: {time.monotonic() - t0:.0f} s")


def _sh(*cmd: str) -> str:
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def test_teardown_all_after_a_fault_leaves_what_is_not_ours(tmp_path: Path) -> None:
    """A namespace and iptables rules the harness did not create (no `mb-` prefix, though
    close to it) survive a faulty run and `teardown --all`."""
    tag = f"foreign{os.getpid()}"
    ns = f"mbx-{tag}"  # not the harness's prefix, though it starts alike
    root_rule = ["INPUT", "-s", "192.0.2.77/32", "-m", "comment", "--comment", tag,
                 "-j", "ACCEPT"]
    ns_rule = ["INPUT", "-s", "192.0.2.78/32", "-j", "DROP"]
    _sh("ip", "netns", "add", ns)
    try:
        _sh("iptables", "-w", "-A", *root_rule)
        _sh("ip", "netns", "exec", ns, "iptables", "-w", "-A", *ns_rule)
        case = Case("foreign", ("sidecar",), (Fault("sidecar", "sidecar", "window"),))
        drv = Driver(case, tmp_path / "results", _scenario_file(case, tmp_path))
        code, _ = drv.wait()
        assert code == 3, "".join(drv.lines)[-3000:]
        assert drv.fired, "".join(drv.lines)[-3000:]
        out = subprocess.run([sys.executable, "-m", "bench", "teardown", "--all"], cwd=REPO,
                             capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        assert tag not in out.stdout
        assert ns in _sh("ip", "netns", "list")
        _sh("iptables", "-w", "-C", *root_rule)  # -C exits non-zero if the rule is gone
        _sh("ip", "netns", "exec", ns, "iptables", "-w", "-C", *ns_rule)
    finally:
        subprocess.run(["iptables", "-w", "-D", *root_rule], capture_output=True)
        subprocess.run(["ip", "netns", "delete", ns], capture_output=True)
    assert ns not in _sh("ip", "netns", "list")


HOLDER = """
import sys
from bench import scenario as scen
from bench.backends.local.backend import LocalBackend
b = LocalBackend(scen.read("smoke"))
b.hold_lock(sys.argv[1])
print("held", flush=True)
sys.stdin.read()
"""


def test_a_second_run_gets_one_line_naming_the_running_one(tmp_path: Path) -> None:
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, "20260101T000000Z-smoke-1"],
                              cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        out = subprocess.run([sys.executable, "-m", "bench", "run", "-s", "smoke", "--results",
                              str(tmp_path)], cwd=REPO, capture_output=True, text=True,
                             timeout=60)
        assert out.returncode == 2
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1, out.stderr
        assert f"run 20260101T000000Z-smoke-1, pid {holder.pid}" in lines[0]
        assert list(tmp_path.iterdir()) == []  # nothing half-built
    finally:
        holder.kill()
        holder.wait()


# ---- stop and resume ----------------------------------------------------------------------------

STOPS = [("provisioning", signal.SIGTERM, False), ("warm-up", signal.SIGINT, False),
         ("window", signal.SIGINT, True), ("experiment", signal.SIGTERM, False),
         ("report", signal.SIGINT, True)]


@pytest.mark.parametrize("phase,sig,then_resume", STOPS, ids=[p for p, _, _ in STOPS])
def test_stop_at_each_phase_leaves_nothing_and_resume_completes(
        phase: str, sig: signal.Signals, then_resume: bool, tmp_path: Path) -> None:
    case = Case(f"stop-{phase}", ("sidecar",), ())
    scenario = _scenario_file(case, tmp_path)
    results = tmp_path / "results"
    proc = subprocess.Popen([sys.executable, "-m", "bench", "run", "-s", str(scenario),
                             "--results", str(results)], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=_default_sigint)
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if re.search(rf"\] (r1 sidecar: )?{phase}\b", line):
            proc.send_signal(sig)
            break
    rest = proc.communicate(timeout=120)[1]
    err = "".join(seen) + rest
    assert proc.returncode == 130, err[-3000:]
    [run_dir] = results.iterdir()
    m = json.loads((run_dir / "manifest.json").read_text())
    assert m["exit_status"] == ("ok" if phase == "report" else "interrupted"), err[-3000:]
    for line in (run_dir / "samples.jsonl").read_text().splitlines():
        json.loads(line)
    _assert_nothing_left(m)
    if not then_resume:
        return
    out = subprocess.run([sys.executable, "-m", "bench", "run", "--resume", str(run_dir)],
                         cwd=REPO, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    assert out.returncode == 0, out.stderr[-3000:]
    m = json.loads((run_dir / "manifest.json").read_text())
    assert m["exit_status"] == "ok"
    assert [(c["cell"], c["status"]) for c in m["cells"]] == [("r1-sidecar-100rps", "ok")]
    assert [e["status"] for e in m["experiments"]] == ["ok"] * 3
    assert (run_dir / "report.md").exists() and (run_dir / "samples.parquet").exists()
    df = read_jsonl_table(run_dir)
    key = ["mode", "level", "repetition", "source", "metric", "entity", "labels"]
    assert not df.duplicated(key).any()
    assert len(df[(df.source == "load") & (df.metric == "latency_p50")]) == 1
    _assert_nothing_left(m)


def test_resume_refuses_another_scenario_in_one_line(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    raw = yaml.safe_load((REPO / "workloads" / "scenarios" / "smoke.yaml").read_text())
    from bench import scenario as scen

    s = scen.from_dict(raw, source="smoke")
    (run_dir / "manifest.json").write_text(json.dumps({
        "schema_version": 1, "run_id": "r", "scenario": s.to_dict(), "scenario_hash": s.hash,
        "mode_order": [list(s.modes)], "cells": []}))
    out = subprocess.run([sys.executable, "-m", "bench", "run", "--resume", str(run_dir),
                          "-s", "quick"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert len(out.stderr.strip().splitlines()) == 1 and "refusing to resume" in out.stderr
