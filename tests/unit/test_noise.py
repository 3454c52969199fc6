"""The machine's noise (bench/probes/noise.py): parsing, a window's shares from known
counters, other processes' CPU through exits and reapers, contamination, the runner's
re-runs, and the analysis leaving contaminated cells and earlier attempts out."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import make_fixture as fx  # tests/fixtures, on sys.path via tests/conftest.py
import pytest

from analysis import noise as noise_report
from analysis.rundata import Run, load_run
from bench import scenario as scen
from bench.probes import noise
from bench.probes.noise import CLK_TCK, Mark, Proc
from bench.store import Cell

STAT = b"""cpu  300 0 100 1000 5 0 10 40 0 0
cpu0 100 0 50 500 2 0 5 20 0 0
cpu1 200 0 50 500 3 0 5 20 0 0
intr 1 2 3
ctxt 99
procs_running 3
procs_blocked 1
"""
PSI = b"""some avg10=1.00 avg60=2.50 avg300=0.10 total=123456
full avg10=0.00 avg60=0.00 avg300=0.00 total=0
"""


def test_parse_stat_and_psi() -> None:
    cpus, running, blocked = noise.parse_stat(STAT)
    assert cpus == [[100, 0, 50, 500, 2, 0, 5, 20], [200, 0, 50, 500, 3, 0, 5, 20]]
    assert (running, blocked) == (3, 1)
    assert noise.parse_psi(PSI) == [123456, 0]


def _mark(mono: float, cpus: list[list[int]], procs: dict[int, Proc],
          psi: list[int] | None = None) -> Mark:
    return Mark(ts=1000.0 + mono, mono=mono, cpus=cpus, psi=psi, procs=procs)


def _cpu(busy: int, idle: int, steal: int) -> list[int]:
    return [busy, 0, 0, idle, 0, 0, 0, steal]


T = CLK_TCK  # ticks per second


def test_foreign_counts_others_not_the_runs_own_processes() -> None:
    a = {1: Proc("init", 0, 0, 1), 2: Proc("kthreadd", 0, 0, 1),
         100: Proc("python", 1, 10 * T, 50),           # the orchestrator
         101: Proc("envoy", 100, 5 * T, 60),           # the run's: below the orchestrator
         200: Proc("hog", 1, 0, 70),                   # someone else's
         300: Proc("cronjob", 1, 2 * T, 80),           # someone else's, exits in between
         400: Proc("kworker/0:1-events", 2, 0, 5),     # a kernel thread
         500: Proc("old", 1, 100 * T, 10)}             # its PID is reused in between
    # init reaped the cron job (3 s in all) and the old process (101 s in all)
    b = {1: Proc("init", 0, 0, 1, children=3 * T + 101 * T),
         2: Proc("kthreadd", 0, 0, 1),
         100: Proc("python", 1, 12 * T, 50),
         101: Proc("envoy", 100, 9 * T, 60),
         102: Proc("ip", 100, 1 * T, 90),              # the run's, started in between
         200: Proc("hog", 1, 2 * T, 70),
         400: Proc("kworker/0:1-flush", 2, T // 2, 5),
         500: Proc("new", 1, T, 95)}                   # a new process on an old PID
    f = noise.foreign(_mark(0.0, [], a), _mark(2.0, [], b), own={100})
    # hog 2 s + cron job 1 s (3 s reaped, less the 2 s it had) + old 1 s + kworker 0.5 s
    # + new 1 s (from 0: another process than the old one)
    assert f.cores == pytest.approx((2 + 1 + 1 + 0.5 + 1) / 2)
    assert f.kernel_cores == pytest.approx(0.25)
    assert {"comm": "hog", "cores": 1.0} in f.top
    # the cron job and the old process are seen through init, their reaper
    assert {t["comm"] for t in f.top} == {"hog", "new", "init: exited children"}
    assert next(t["cores"] for t in f.top if t["comm"] == "init: exited children") == 1.0


def test_summarize_shares_from_known_counters(tmp_path: Path) -> None:
    # 2 CPUs over 2 s: 400 ticks; 40 stolen (10 %); the hog used 1 core of 2 (50 %)
    a = _mark(0.0, [_cpu(0, 0, 0), _cpu(0, 0, 0)],
              {1: Proc("init", 0, 0, 1), 7: Proc("hog", 1, 0, 3)}, psi=[0, 0])
    b = _mark(2.0, [_cpu(100, 80, 20), _cpu(120, 60, 20)],
              {1: Proc("init", 0, 0, 1), 7: Proc("hog", 1, 2 * T, 3)}, psi=[500_000, 0])
    out = tmp_path / "resources.jsonl"
    rows = [{"ts": 1000.5, "mono": 0.5, "seq": 1, "host": {
                "cpus": [_cpu(10, 10, 0), _cpu(10, 10, 0)], "psi": None, "running": 4}},
            {"ts": 1001.5, "mono": 1.5, "seq": 2, "host": {
                "cpus": [_cpu(20, 10, 10), _cpu(20, 10, 10)], "psi": None, "running": 2}},
            {"ts": 1001.5, "mono": 1.5, "seq": 2, "pid": 9, "entity": "x", "cpu_ns": 1}]
    out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    n = noise.summarize(a, b, own=set(), sampler_out=out)
    assert not isinstance(n, str)
    assert n.steal_share == pytest.approx(0.10)
    assert n.foreign_cores == pytest.approx(1.0)
    assert n.foreign_share == pytest.approx(0.5)
    assert n.lost_share == pytest.approx(0.6)
    assert n.psi_some_share == pytest.approx(0.25)
    assert n.steal_peak_share == pytest.approx(0.5)  # 20 of 40 ticks between the sweeps
    assert (n.runq_mean, n.runq_max, n.sweeps) == (2.0, 3, 2)
    assert n.contaminated(0.5) and not n.contaminated(0.7)
    assert "60.0 % of the CPU taken by others" in n.reason(0.5) and "hog 1.00" in n.reason(0.5)
    rec = n.record(0.5)
    assert rec["contaminated"] is True and rec["foreign_top"][0]["comm"] == "hog"
    samples = {s.metric: s for s in n.samples(Cell(1, "sidecar", 500), 0.5, 1.0,
                                              {"phase": "load"})}
    assert samples["contaminated"].value == 1.0 and samples["lost_share"].unit == "share"
    assert samples["steal_share"].labels["phase"] == "load"


def test_summarize_says_why_not() -> None:
    m = _mark(1.0, [_cpu(1, 1, 0)], {})
    assert "no time" in noise.summarize(m, m, set())
    assert "CPU count" in noise.summarize(m, _mark(2.0, [_cpu(1, 1, 0)] * 2, {}), set())


def test_mark_reads_this_machine() -> None:
    a = noise.mark()
    assert a.cpus and len(a.cpus[0]) == 8 and a.procs
    got = noise.summarize(a, noise.mark(), own=set())
    assert isinstance(got, str) or 0 <= got.steal_share <= 1  # the two marks may share a tick


def test_scenario_noise_settings_are_checked_and_not_hashed() -> None:
    raw = scen.read("smoke").to_dict()
    base = scen.from_dict(raw, source="t").hash
    raw["timing"].update(noise_threshold=0.25, rerun_noisy=2)
    s = scen.from_dict(raw, source="t")
    assert (s.timing.noise_threshold, s.timing.rerun_noisy) == (0.25, 2)
    assert s.hash == base  # which windows count, not what a window measures
    for key, bad in (("noise_threshold", 0), ("noise_threshold", 1.5), ("rerun_noisy", 9)):
        raw2 = scen.read("smoke").to_dict()
        raw2["timing"][key] = bad
        with pytest.raises(scen.ScenarioError, match=f"timing.{key}"):
            scen.from_dict(raw2, source="t")


def _noise(lost: float, reason: str = "") -> dict[str, Any]:
    return {"steal_share": lost, "foreign_share": 0.0, "lost_share": lost,
            "psi_some_share": 0.01, "runq_mean": 0.5, "contaminated": bool(reason),
            "reason": reason, "foreign_top": []}


def test_noise_summary_counts_cells_attempts_and_the_worst_window() -> None:
    entries = [
        {"cell": "a", "noisy": "", "noise": _noise(0.01)},
        {"cell": "b", "noisy": "window: 40 %", "noise": _noise(0.4, "40 %")},
        {"cell": "c", "noisy": "", "noise": _noise(0.02),
         "attempts": [{"noise": _noise(0.6, "60 %"), "noisy": "window: 60 %"}]},
        {"cell": "d", "status": "failed"}]
    s = noise.summary(entries)
    assert (s["cells"], s["measured"], s["contaminated"], s["rerun"],
            s["attempts_set_aside"]) == (4, 3, 1, 1, 1)
    assert s["worst"]["lost_share"] == 0.6


def _noisy_run(tmp_path: Path) -> Path:
    """The fixture run (still unfinalized: read from its JSONL) with r1-sidecar-100rps
    contaminated and r0-ambient-100rps re-run: the fixture's rows stand for its second,
    final attempt; its first attempt's rows and a stray third's hold absurd values."""
    run_dir = fx.make_run(tmp_path, finalize=False)
    man = json.loads((run_dir / "manifest.json").read_text())
    for c in man["cells"]:
        c.update(noise=_noise(0.01), noisy="", attempt=1)
        if c["cell"] == "r1-sidecar-100rps":
            c.update(noise=_noise(0.5, "50 %"), noisy="window: 50 % of the CPU")
        if c["cell"] == "r0-ambient-100rps":
            c["attempts"] = [{**c, "noise": _noise(0.7, "70 %"), "noisy": "window: 70 %"}]
            c["attempt"] = 2
    man["probes"]["noise"] = {"status": "ok", "threshold": 0.1}
    (run_dir / "manifest.json").write_text(json.dumps(man))
    lines = []
    for line in (run_dir / "samples.jsonl").read_text().splitlines():
        row = json.loads(line)
        if (row["mode"], row["level"], row["repetition"]) == ("ambient", 100, 0):
            row["labels"] = {**row["labels"], "attempt": 2}
        lines.append(json.dumps(row))
    base = {"run_id": fx.RUN_ID, "mode": "ambient", "level": 100, "repetition": 0,
            "source": "load", "metric": "latency_p50", "unit": "us", "ts": 1.0,
            "entity": "client"}
    lines += [json.dumps({**base, "value": fx.FAILED_VALUE, "labels": {}}),
              json.dumps({**base, "value": 1.0, "labels": {"attempt": 3}})]
    (run_dir / "samples.jsonl").write_text("\n".join(lines) + "\n")
    return run_dir


def test_analysis_sets_aside_contaminated_cells_and_earlier_attempts(tmp_path: Path) -> None:
    run_dir = _noisy_run(tmp_path)
    run = load_run(run_dir)
    assert run.set_aside == {("sidecar", 100, 1): "window: 50 % of the CPU"}
    lat = run.latency[run.latency["metric"] == "latency_p50"]
    keys = set(zip(lat["mode"], lat["level"], lat["repetition"]))
    assert ("sidecar", 100, 1) not in keys and ("sidecar", 100, 0) in keys
    amb = lat[(lat["mode"] == "ambient") & (lat["level"] == 100) & (lat["repetition"] == 0)]
    assert amb["value"].tolist() == [fx.p50("ambient", 100, 0)]  # attempt 2 only
    assert "r1-sidecar-100rps" not in {c["cell"] for c in run.counted_cells()}
    both = load_run(run_dir, include_noisy=True)
    assert both.set_aside == {}
    lat2 = both.latency[both.latency["metric"] == "latency_p50"]
    assert ("sidecar", 100, 1) in set(zip(lat2["mode"], lat2["level"], lat2["repetition"]))
    amb2 = lat2[(lat2["mode"] == "ambient") & (lat2["level"] == 100)
                & (lat2["repetition"] == 0)]
    assert amb2["value"].tolist() == [fx.p50("ambient", 100, 0)]  # never the earlier one


def test_report_shows_noise_and_warns_when_most_cells_are_contaminated(
        tmp_path: Path) -> None:
    run = load_run(_noisy_run(tmp_path))
    section = "\n".join(noise_report.noise_section(run))
    assert "## The machine's noise" in section
    assert "| r1-sidecar-100rps | 1 |" in section and "**contaminated, set aside**" in section
    assert "contaminated, run again" in section  # r0-ambient's first attempt
    [line] = noise_report.first_screen(run)
    assert "1 of 24 cells" in line and "set aside" in line
    man = dict(run.manifest)
    man["cells"] = [{**c, "noisy": "window: 50 %"} for c in man["cells"]]
    busy = Run(run_dir=run.run_dir, manifest=man, table=run.table)
    assert busy.set_aside
    assert "Most cells were contaminated" in noise_report.first_screen(busy)[0]


def test_a_kind_clusters_processes_are_the_runs_own_by_their_cgroup() -> None:
    a = {1: Proc("init", 0, 0, 1), 50: Proc("containerd-shim", 1, 0, 2),
         60: Proc("kubelet", 50, 0, 3), 70: Proc("stress-ng", 1, 0, 4)}
    b = {1: Proc("init", 0, 0, 1), 50: Proc("containerd-shim", 1, 0, 2),
         60: Proc("kubelet", 50, 3 * T, 3), 70: Proc("stress-ng", 1, 2 * T, 4)}
    cgroups = {60: "0::/system.slice/docker-abc.scope/kubelet.slice", 70: "0::/user.slice"}
    f = noise.foreign(_mark(0.0, [], a), _mark(2.0, [], b), own={999},
                      own_cgroups=("kubelet", "docker"), cgroup_of=lambda pid: cgroups[pid])
    assert f.cores == pytest.approx(1.0) and f.top == [{"comm": "stress-ng", "cores": 1.0}]
    plain = noise.foreign(_mark(0.0, [], a), _mark(2.0, [], b), own={999})
    assert plain.cores == pytest.approx(2.5)  # the local backend: a cluster is someone else
