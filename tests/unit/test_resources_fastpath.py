"""The sampler's direct /proc reads against psutil's, for live processes of this test."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from bench.probes.processes import Target, write_targets
from bench.probes.resources import PAGE_SIZE, _Rotation, _SamplerLoop, _Watched

MIB = 1024 * 1024

# holds 64 MiB of touched private memory and a second thread, then waits
HOLDER = """
import sys, threading
buf = bytearray(64 * 1024 * 1024)
for i in range(0, len(buf), 4096):
    buf[i] = 1
threading.Thread(target=sys.stdin.readline, daemon=True).start()
print("ready", flush=True)
sys.stdin.readline()
"""


@pytest.fixture
def holder() -> subprocess.Popen[str]:
    p = subprocess.Popen([sys.executable, "-c", HOLDER], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    yield p
    p.kill()
    p.wait()


def row(w: _Watched, with_pss: bool, with_stat: bool) -> dict:
    line, gone = w.sample('"ts":0,"mono":0,"seq":0', with_pss, with_stat)
    assert not gone
    return json.loads(line)


def test_rows_agree_with_psutil_for_the_same_process(holder: subprocess.Popen[str]) -> None:
    w = _Watched(Target(holder.pid, "app", "holder"))
    p = psutil.Process(holder.pid)
    try:
        # the process is idle: memory does not move between the two readings
        mine = row(w, with_pss=True, with_stat=True)
        full = p.memory_full_info()
        times = p.cpu_times()
        threads = p.num_threads()
    finally:
        w.close()
    assert mine["rss_bytes"] == full.rss  # both are statm's resident pages
    assert mine["rss_bytes"] > 64 * MIB
    assert mine["pss_bytes"] == full.pss
    assert mine["uss_bytes"] == full.uss
    assert mine["threads"] == threads == 2
    # utime+stime in ticks; psutil reads the same fields, rounded here to 10 ms
    assert mine["cpu_ticks_s"] == pytest.approx(times.user + times.system, abs=0.011)
    # the ns clock counts the same CPU time as the ticks (which lag it by up to 2 ticks)
    assert mine["cpu_ns"] / 1e9 == pytest.approx(times.user + times.system, abs=0.03)


def test_own_cpu_clock_matches_this_process(tmp_path: Path) -> None:
    w = _Watched(Target(os.getpid(), "app", "me"))
    try:
        t0 = time.process_time_ns()
        mine = row(w, with_pss=False, with_stat=False)
        t1 = time.process_time_ns()
    finally:
        w.close()
    # our own process CPU clock, read by PID from outside and from inside
    assert t0 <= mine["cpu_ns"] <= t1
    assert "cpu_ticks_s" not in mine and "pss_bytes" not in mine


def test_sweep_fast_path_rows_match_psutil(tmp_path: Path, holder: subprocess.Popen[str]
                                           ) -> None:
    write_targets(tmp_path / "t.json", [Target(holder.pid, "app", "holder"),
                                        Target(os.getpid(), "app", "me")])
    loop = _SamplerLoop(tmp_path / "t.json", tmp_path / "out.jsonl", interval=0.1,
                        pss_interval=0, parent_pid=os.getppid(), stat_interval=1.0)
    loop.reload_targets()
    for seq in range(3):  # the first sweep opens the files; later ones take the inline path
        loop.sweep(seq, False, 0.0)
    rss = psutil.Process(holder.pid).memory_info().rss
    loop.out.close()
    rows = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    held = [r for r in rows if r.get("entity") == "holder"]
    assert [r["seq"] for r in held] == [0, 1, 2]
    assert held[-1]["rss_bytes"] == rss and rss % PAGE_SIZE == 0
    assert held[0]["cpu_ns"] <= held[-1]["cpu_ns"]
    own = [r for r in rows if r.get("entity") == "me"]
    assert own[0]["cpu_ns"] < own[-1]["cpu_ns"]  # this test burns CPU between sweeps
    for w in loop.watched.values():
        w.close()


def test_gone_after_exit_on_held_files(tmp_path: Path) -> None:
    p = subprocess.Popen(["/bin/sleep", "30"])
    w = _Watched(Target(p.pid, "app", "sleep"))
    try:
        assert "rss_bytes" in row(w, with_pss=False, with_stat=False)
        p.kill()
        p.wait()  # reaped: the held statm file now fails with ESRCH
        line, gone = w.sample('"ts":0', False, False)
        assert gone and json.loads(line)["gone"] is True
    finally:
        w.close()


def test_zombie_is_gone() -> None:
    p = subprocess.Popen(["/bin/sleep", "30"])
    w = _Watched(Target(p.pid, "app", "sleep"))
    try:
        row(w, with_pss=False, with_stat=False)
        p.kill()
        deadline = time.monotonic() + 5
        while psutil.Process(p.pid).status() != psutil.STATUS_ZOMBIE:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        line, gone = w.sample('"ts":0', False, False)  # not reaped yet: statm is all zeros
        assert gone
    finally:
        w.close()
        p.wait()


@pytest.mark.parametrize("n", [1, 7, 200])
def test_rotation_reads_each_target_once_per_interval_spread_out(n: int) -> None:
    rot = _Rotation(every=1.0, interval=0.1)  # 10 sweeps per round
    picked = [0] * n
    per_sweep = []
    for _ in range(100):  # 10 rounds
        start, count = rot.pick(n)
        per_sweep.append(count)
        for i in range(n):
            picked[i] += (i - start) % n < count
    assert picked == [10] * n
    assert max(per_sweep) <= -(-n // 10)  # no burst: at most a tenth (rounded up) per sweep


def test_rotation_off_and_every_sweep() -> None:
    assert _Rotation(0, 0.1).pick(50) == (0, 0)
    assert _Rotation(0.05, 0.1).pick(50) == (0, 50)


def test_report_shows_the_sampler_beside_the_roles() -> None:
    from types import SimpleNamespace

    import pandas as pd

    from analysis.resources import role_table

    rows = pd.DataFrame([
        {"entity": e, "metric": m, "value": v, "mode": "sidecar", "level": 100,
         "repetition": rep}
        for rep in (0, 1)
        for e, m, v in (("role:sidecar", "cpu_cores", 0.4), ("role:sidecar", "rss_mib", 50.0),
                        ("sampler", "cpu_cores", 0.013 + rep / 1000),
                        ("sampler", "rss_mib", 20.0))])
    lines = role_table(SimpleNamespace(modes=["sidecar"], levels=[100]), rows, idle=False)
    text = "\n".join(lines)
    sidecar = next(x for x in lines if "| sidecar |" in x.replace("  ", " "))
    sampler = next(x for x in lines if "resource sampler" in x)
    assert lines.index(sidecar) < lines.index(sampler)  # after the roles
    assert "0.013" in sampler or "0.0135" in sampler, text
