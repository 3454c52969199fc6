"""summarize_window and per_krps on synthetic sampler output; the targets file round trip."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench.probes.processes import ProxyRole, Target, read_targets, write_targets
from bench.probes.resources import WindowSummary, per_krps, summarize_window
from bench.store import Cell, Sample

T = 1_700_000_000.0  # epoch of the synthetic run
MONO = 5_000.0  # monotonic clock at T
MIB = 1024 * 1024
CELL = Cell(repetition=1, mode="sidecar", level=1000)


def row(entity: str, seq: int, cpu_s: float, rss_mib: float = 10.0, *, pid: int = 0,
        role: str = "sidecar", mode: str = "", dt: float = 0.0, **extra: Any
        ) -> dict[str, Any]:
    """One sampler row at T + seq seconds (+ dt of jitter)."""
    return {
        "pid": pid or 1000 + sum(map(ord, entity)), "entity": entity, "role": role,
        "pod": f"pod-{entity}", "namespace": "ns", "node": "node-0", "mode": mode,
        "ts": T + seq + dt, "mono": MONO + seq + dt, "seq": seq,
        "cpu_ns": round(cpu_s * 1e9), "cpu_ticks_s": round(cpu_s, 2),
        "rss_bytes": int(rss_mib * MIB), "threads": 4, **extra,
    }


def write(path: Path, rows: list[dict[str, Any]], tail: str = "") -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + tail)
    return path


def value(summary: WindowSummary, entity: str, metric: str) -> float:
    hits = [s.value for s in summary.samples if s.entity == entity and s.metric == metric]
    assert len(hits) == 1, (entity, metric, hits)
    return hits[0]


def test_known_cpu_delta_gives_known_cores(tmp_path: Path) -> None:
    rows = [row("sidecar/a", i, 0.25 * i) for i in range(11)]
    s = summarize_window(write(tmp_path / "r.jsonl", rows), T + 2.5, T + 7.5, CELL)
    # bracket: last sample at/before t0 (seq 2) .. last at/before t1 (seq 7)
    assert value(s, "sidecar/a", "cpu_cores") == pytest.approx(0.25)
    assert value(s, "sidecar/a", "samples") == 6
    sample = next(x for x in s.samples if x.metric == "cpu_cores")
    assert (sample.source, sample.unit, sample.mode, sample.level, sample.repetition) == (
        "resources", "cores", "sidecar", 1000, 1)
    assert sample.labels == {"role": "sidecar", "pod": "pod-sidecar/a", "namespace": "ns",
                             "node": "node-0"}
    assert s.skipped == ()


def test_divides_by_time_between_samples_not_window(tmp_path: Path) -> None:
    # samples 1.1 s apart (a slow sweep): 0.55 s of CPU in 1.1 s is 0.5 cores
    rows = [row("z", 0, 0.0, role="ztunnel"), row("z", 1, 0.55, role="ztunnel", dt=0.1)]
    s = summarize_window(write(tmp_path / "r.jsonl", rows), T, T + 1.5, CELL)
    assert value(s, "z", "cpu_cores") == pytest.approx(0.5)


def test_window_boundaries_are_inclusive_and_exclusive_where_documented(tmp_path: Path) -> None:
    # 0.1 cores before t0, 0.5 inside, 2.0 after t1: only the bracket's rate may show
    cpu = [0.0, 0.1, 0.2, 0.7, 1.2, 1.7, 3.7, 5.7]
    rows = [row("e", i, c) for i, c in enumerate(cpu)]
    s = summarize_window(write(tmp_path / "r.jsonl", rows), T + 2, T + 5, CELL)
    assert value(s, "e", "cpu_cores") == pytest.approx(0.5)  # sample at t0 .. sample at t1
    assert value(s, "e", "samples") == 4
    s = summarize_window(write(tmp_path / "r.jsonl", rows), T + 2.01, T + 4.99, CELL)
    assert value(s, "e", "cpu_cores") == pytest.approx(0.5)  # seq 2 .. seq 4, 1.0 s in 2 s


def test_first_sample_inside_when_none_before(tmp_path: Path) -> None:
    rows = [row("late", i, 0.3 * (i - 4)) for i in range(4, 10)]
    s = summarize_window(write(tmp_path / "r.jsonl", rows), T + 2, T + 9, CELL)
    assert value(s, "late", "cpu_cores") == pytest.approx(0.3)
    assert value(s, "late", "samples") == 6


def test_gone_process_is_not_zeros(tmp_path: Path) -> None:
    rows: list[dict[str, Any]] = []
    for i in range(11):
        rows.append(row("keep", i, 0.2 * i, rss_mib=20))
        if i < 5:
            rows.append(row("dies", i, 0.4 * i, rss_mib=100))
    rows.insert(11, {**{k: rows[-2][k] for k in ("pid", "entity", "role")}, "ts": T + 5,
                     "mono": MONO + 5, "seq": 5, "gone": True})
    rows[11]["pid"], rows[11]["entity"] = rows[1]["pid"], "dies"
    s = summarize_window(write(tmp_path / "r.jsonl", rows), T, T + 10, CELL)
    assert value(s, "dies", "cpu_cores") == pytest.approx(0.4)  # its rate while alive
    assert value(s, "dies", "rss_mib") == pytest.approx(100)  # no zero after it exited
    assert value(s, "dies", "samples") == 5
    # the role total counts the dead process for the 4 s of 10 it was sampled alive
    assert value(s, "role:sidecar", "cpu_cores") == pytest.approx(0.2 + 0.4 * 0.4)
    # total memory per sweep: 120 MiB while both lived (seq 0-4), 20 after (seq 5-10)
    assert value(s, "role:sidecar", "rss_max_mib") == pytest.approx(120)
    assert value(s, "role:sidecar", "rss_mib") == pytest.approx((5 * 120 + 6 * 20) / 11)


def test_role_sums_dataplane_and_mode_filter(tmp_path: Path) -> None:
    specs = [("sidecar/a", "sidecar", "", 0.2), ("sidecar/b", "sidecar", "sidecar", 0.3),
             ("ztunnel/n0", "ztunnel", "ambient", 0.05), ("waypoint/w", "waypoint", "", 0.1),
             ("app/x", "app", "", 1.0), ("istiod", "control-plane", "", 0.01),
             ("sampler", "sampler", "", 0.02)]
    rows = [row(e, i, rate * i, rss_mib=10, role=r, mode=m)
            for i in range(6) for e, r, m, rate in specs]
    s = summarize_window(write(tmp_path / "r.jsonl", rows), T, T + 5, CELL)
    entities = {x.entity for x in s.samples}
    assert "ztunnel/n0" not in entities  # an ambient-mode target in a sidecar cell
    assert "role:sampler" not in entities and "sampler" in entities
    assert value(s, "role:sidecar", "cpu_cores") == pytest.approx(0.5)
    assert value(s, "role:sidecar", "rss_mib") == pytest.approx(20)
    assert value(s, "role:app", "cpu_cores") == pytest.approx(1.0)
    assert value(s, "dataplane", "cpu_cores") == pytest.approx(0.6)  # sidecars + waypoint
    assert value(s, "dataplane", "rss_max_mib") == pytest.approx(30)
    assert value(s, "dataplane", "samples") == 18
    dp = next(x for x in s.samples if x.entity == "dataplane" and x.metric == "cpu_cores")
    assert dp.labels == {"role": "dataplane", "entities": 3, "processes": 3}


def test_pss_and_uss_means_where_present(tmp_path: Path) -> None:
    pss: dict[int, dict[str, Any]] = {
        i: {"pss_bytes": (30 + i) * MIB, "uss_bytes": 25 * MIB} for i in (0, 5, 10)}
    rows = [{**row("e", i, 0.0, rss_mib=50), **pss.get(i, {})} for i in range(11)]
    s = summarize_window(write(tmp_path / "r.jsonl", rows), T, T + 10, CELL)
    assert value(s, "e", "pss_mib") == pytest.approx((30 + 35 + 40) / 3)
    assert value(s, "e", "uss_mib") == pytest.approx(25)
    assert value(s, "e", "rss_mib") == pytest.approx(50)
    unit = {x.metric: x.unit for x in s.samples if x.entity == "e"}
    assert unit == {"cpu_cores": "cores", "samples": "count", "rss_mib": "MiB",
                    "rss_max_mib": "MiB", "pss_mib": "MiB", "uss_mib": "MiB"}


def test_memory_mean_uses_samples_inside_window_only(tmp_path: Path) -> None:
    rows = [row("e", 0, 0.0, rss_mib=500), row("e", 1, 0.1, rss_mib=10),
            row("e", 2, 0.2, rss_mib=20)]
    s = summarize_window(write(tmp_path / "r.jsonl", rows), T + 0.5, T + 2, CELL)
    assert value(s, "e", "rss_mib") == pytest.approx(15)  # the 500 MiB is before t0
    assert value(s, "e", "cpu_cores") == pytest.approx(0.1)  # but CPU starts from it


def test_skips_with_reasons(tmp_path: Path) -> None:
    rows = [row("one", 3, 0.0), row("after", 20, 0.0), row("after", 21, 0.0),
            row("restart", 1, 5.0, pid=11), row("restart", 2, 5.1, pid=11),
            row("restart", 3, 0.1, pid=12), row("ok", 1, 0.0), row("ok", 4, 0.3),
            {**row("denied", 1, 0.0), "error": "Permission denied"},
            row("early", -3, 0.0, pid=21), row("early", -2, 0.1, pid=21),
            {"pid": 21, "entity": "early", "ts": T - 1, "gone": True},
            # same name, new process after the old one exited before the window: kept
            row("again", -3, 9.0, pid=31), {"pid": 31, "entity": "again", "ts": T - 2,
                                            "gone": True},
            row("again", 1, 0.0, pid=32), row("again", 3, 0.2, pid=32)]
    s = summarize_window(write(tmp_path / "r.jsonl", rows), T, T + 5, CELL)
    assert sorted(s.skipped) == [
        "denied: 0 sample(s) in window; last error: Permission denied",
        "one: 1 sample(s) in window",
        "restart: pid changed within window (restarted?)"]
    assert {x.entity for x in s.samples} == {"ok", "again", "role:sidecar", "dataplane"}
    assert value(s, "again", "cpu_cores") == pytest.approx(0.1)


def test_ticks_fallback_meta_gap_and_torn_last_line(tmp_path: Path) -> None:
    rows: list[dict[str, Any]] = [{"ts": T - 1, "mono": MONO - 1, "meta": {"interval": 1.0}}]
    rows += [{**row("e", i, 0.5 * i), "cpu_ns": None} for i in range(4)]
    rows.insert(3, {"ts": T + 2, "mono": MONO + 2, "seq": 2, "gap_s": 2.5})
    path = write(tmp_path / "r.jsonl", rows, tail='{"pid": 1, "entity": "e", "ts": ')
    s = summarize_window(path, T, T + 3, CELL)
    assert value(s, "e", "cpu_cores") == pytest.approx(0.5)


def test_empty_window_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        summarize_window(write(tmp_path / "r.jsonl", []), T + 1, T + 1, CELL)


def test_per_krps_for_proxies_only(tmp_path: Path) -> None:
    rows = [row(e, i, rate * i, role=r) for i in range(3)
            for e, r, rate in [("sidecar/a", "sidecar", 0.4), ("app/x", "app", 1.0)]]
    s = summarize_window(write(tmp_path / "r.jsonl", rows), T, T + 2, CELL)
    extra = per_krps(s.samples, achieved_rps=2000)
    got = {x.entity: x.value for x in extra}
    assert got == pytest.approx({"sidecar/a": 0.2, "role:sidecar": 0.2, "dataplane": 0.2})
    assert {(x.metric, x.unit) for x in extra} == {("cpu_cores_per_krps", "cores/krps")}
    assert all(x.labels and x.labels["achieved_rps"] == 2000 for x in extra)
    assert per_krps(s.samples, achieved_rps=0) == []
    assert isinstance(extra[0], Sample) and extra[0].mode == "sidecar"


def test_targets_round_trip(tmp_path: Path) -> None:
    targets = [Target(10, ProxyRole.SIDECAR, "sidecar/a", pod="a", namespace="ns", mode="sidecar"),
               Target(11, "ztunnel", "ztunnel/n0", node="n0")]
    path = tmp_path / "targets.json"
    write_targets(path, targets)
    assert read_targets(path) == targets
    assert [p.name for p in tmp_path.iterdir()] == ["targets.json"]  # no temp file left
    with pytest.raises(ValueError, match="sidecar/a"):
        write_targets(path, [targets[0], targets[0]])
    assert read_targets(path) == targets  # a failed write leaves the old file


def test_sampler_restart_does_not_mix_sweeps(tmp_path: Path) -> None:
    # a second sampler appends to the same file and counts seq from 0 again
    rows: list[dict[str, Any]] = [{"ts": T - 1, "meta": {}}]
    rows += [row("a", i, 0.0, rss_mib=10) for i in range(3)]
    rows += [{"ts": T + 2.5, "meta": {}}]
    rows += [{**row("b", i + 3, 0.0, rss_mib=30), "seq": i} for i in range(3)]
    s = summarize_window(write(tmp_path / "r.jsonl", rows), T, T + 5, CELL)
    assert value(s, "role:sidecar", "rss_max_mib") == pytest.approx(30)  # never 10 + 30


def test_same_entity_name_from_an_earlier_repetition_is_not_a_restart(tmp_path: Path) -> None:
    """Repetition 2 reuses entity names with new PIDs; its idle window starts right after
    the new process appears, with the old one's last sample just before t0."""
    path = tmp_path / "res.jsonl"
    rows = [
        {"ts": 10.0, "mono": 10.0, "pid": 100, "entity": "sidecar-a", "role": "sidecar",
         "cpu_ns": 5_000_000_000, "rss_bytes": 50 * 2**20, "threads": 4},
        {"ts": 10.5, "pid": 100, "entity": "sidecar-a", "gone": True},
    ] + [
        {"ts": 11.0 + i, "mono": 11.0 + i, "pid": 200, "entity": "sidecar-a", "role": "sidecar",
         "cpu_ns": 100_000_000 * (i + 1), "rss_bytes": 60 * 2**20, "threads": 4}
        for i in range(4)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = summarize_window(path, 10.8, 14.0, Cell(2, "sidecar", 0))
    cores = [s for s in out.samples if s.entity == "sidecar-a" and s.metric == "cpu_cores"]
    assert len(cores) == 1, out.skipped
    assert abs(cores[0].value - 0.1) < 1e-6
