"""bench.load.hdr on synthetic recorder output: window selection, merging, summaries, rows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hdrh.histogram import HdrHistogram

from bench.load import hdr
from bench.store import Cell
from tests.support.hdr_windows import steady_window

T = 1_700_000_000.0  # whole-second epoch, like the recorder's interval ends


def _line(ts_start: float, ts_end: float, pid: int, values_us: list[int], errors: int = 0) -> str:
    """One JSONL line exactly as workloads/locustfiles/hdr_recorder.py writes it."""
    h = HdrHistogram(1, 60_000_000, 3)
    for v in values_us:
        h.record_value(v)
    return json.dumps({
        "ts_start": ts_start, "ts_end": ts_end, "pid": pid, "count": h.get_total_count(),
        "errors": errors, "hist": h.encode().decode("ascii"),
    })


@pytest.fixture
def two_processes(tmp_path: Path) -> list[Path]:
    """Two processes, 4 s each: second k holds 100 values of (k+1)*1000 + pid-specific
    microsecond offsets; process 2 starts late, so its first interval is partial."""
    paths = []
    for pid, first_start in ((11, T - 0.3), (22, T - 0.9)):
        lines = []
        for k in range(4):
            start = first_start if k == 0 else T + k - 1
            values = [(k + 1) * 1000 + pid + i for i in range(100)]
            lines.append(_line(start, T + k, pid, values, errors=k))
        path = tmp_path / f"cell.jsonl.{pid}"
        path.write_text("\n".join(lines) + "\n")
        paths.append(path)
    return paths


def test_hdr_files_finds_one_file_per_pid(tmp_path: Path, two_processes: list[Path]) -> None:
    (tmp_path / "cell.jsonl.tmp").write_text("")
    assert hdr.hdr_files(tmp_path / "cell.jsonl") == sorted(two_processes)


def test_read_intervals_sorted_and_skips_truncated_line(two_processes: list[Path]) -> None:
    with open(two_processes[0], "a") as f:
        f.write('{"ts_start": 1, "ts_end"')  # killed mid-write
    intervals = hdr.read_intervals(two_processes)
    assert len(intervals) == 8
    assert [i.ts_start for i in intervals] == sorted(i.ts_start for i in intervals)
    assert {i.pid for i in intervals} == {11, 22}


def test_merge_keeps_intervals_by_midpoint(two_processes: list[Path]) -> None:
    intervals = hdr.read_intervals(two_processes)
    # [T, T+2] holds the midpoints of seconds 1 and 2 (T+0.5, T+1.5) of both processes;
    # the partial first intervals have midpoints before T; second 3 (T+2.5) is outside.
    hist, count, errors, covered = hdr.merge(intervals, T, T + 2)
    assert count == hist.get_total_count() == 2 * 2 * 100
    assert errors == 2 * (1 + 2)
    assert covered == pytest.approx(2.0)
    # A window edge cutting an interval before its midpoint drops it.
    _, count, _, _ = hdr.merge(intervals, T + 0.6, T + 2)
    assert count == 2 * 100


def test_summarize_percentiles_within_hdr_precision(two_processes: list[Path]) -> None:
    intervals = hdr.read_intervals(two_processes)
    s = hdr.summarize(intervals, T + 1, T + 3)  # seconds 2 and 3: values 3011..4121 us
    exact = sorted(
        (k + 1) * 1000 + pid + i for k in (2, 3) for pid in (11, 22) for i in range(100)
    )

    def exact_pct(p: float) -> float:
        return exact[max(0, round(p / 100 * len(exact)) - 1)]

    for got, p in ((s.p50_us, 50), (s.p90_us, 90), (s.p99_us, 99), (s.p999_us, 99.9)):
        assert got == pytest.approx(exact_pct(p), rel=1e-3, abs=2)
    assert s.max_us == pytest.approx(max(exact), rel=1e-3)
    assert s.mean_us == pytest.approx(sum(exact) / len(exact), rel=1e-3)
    assert s.count == 400 and s.errors == 2 * (2 + 3)
    assert s.achieved_rps == pytest.approx(200.0)
    # Microsecond resolution survives encoding: not rounded to whole milliseconds.
    assert s.p50_us % 1000 != 0


def test_summarize_empty_window_reports_zero() -> None:
    s = hdr.summarize([], T, T + 5)
    assert (s.count, s.errors, s.achieved_rps, s.p99_us, s.seconds_covered) == (0, 0, 0.0, 0.0, 0.0)
    with pytest.raises(ValueError):
        hdr.summarize([], T, T)


def test_steady_window_trims_and_rounds_inwards(two_processes: list[Path]) -> None:
    intervals = hdr.read_intervals(two_processes)
    assert steady_window(intervals, trim_s=0.5) == (T, T + 2)
    assert steady_window(intervals, trim_s=1.0) == (T + 1, T + 2)
    with pytest.raises(ValueError):
        steady_window(intervals, trim_s=2.0)


@pytest.mark.parametrize(
    ("achieved", "cpu", "expected"),
    [(96.0, 50.0, False), (94.0, 50.0, True), (100.0, 81.0, True), (95.0, 80.0, False)],
)
def test_is_saturated(achieved: float, cpu: float, expected: bool) -> None:
    assert hdr.is_saturated(achieved, 100.0, cpu) is expected


@pytest.mark.parametrize(
    ("achieved", "lag_us", "period_us", "expected"),
    [(500.0, 300.0, 8000.0, False),   # on schedule: a lag well under a quarter period
     (500.0, 2500.0, 8000.0, True),   # 4 users at 500 rps, 2.5 ms behind: catching up
     (500.0, 900.0, 2000.0, False),   # 1 user at 500 rps: under the 1 ms floor
     (500.0, 1500.0, 2000.0, True),
     (530.0, None, None, True),       # above 105 % of target: bursts of catch-up
     (520.0, None, None, False)],
)
def test_a_user_behind_its_schedule_is_saturated(achieved: float, lag_us: float | None,
                                                 period_us: float | None,
                                                 expected: bool) -> None:
    assert hdr.is_saturated(achieved, 500.0, 20.0, lag_us, period_us) is expected


def test_to_samples_rows(two_processes: list[Path]) -> None:
    s = hdr.summarize(hdr.read_intervals(two_processes), T + 1, T + 3)
    cell = Cell(repetition=1, mode="sidecar", level=250)
    rows = {r.metric: r for r in hdr.to_samples(cell, s, target_rps=250, loadgen_cpu_percent=42.0)}
    assert set(rows) == {
        "latency_p50", "latency_p90", "latency_p99", "latency_p999", "latency_max",
        "latency_mean", "requests", "errors", "achieved_rps", "target_rps", "loadgen_cpu",
        "saturated",
    }
    assert all(r.source == "load" and r.entity == "client" for r in rows.values())
    assert all((r.mode, r.level, r.repetition) == ("sidecar", 250, 1) for r in rows.values())
    assert rows["latency_p99"].unit == "us" and rows["latency_p99"].value == s.p99_us
    assert (rows["requests"].unit, rows["requests"].value) == ("count", 400.0)
    assert (rows["achieved_rps"].unit, rows["target_rps"].value) == ("rps", 250.0)
    assert (rows["loadgen_cpu"].unit, rows["loadgen_cpu"].value) == ("percent", 42.0)
    # 200 of 250 rps is below 95 %: saturated, unless the caller says otherwise.
    assert (rows["saturated"].unit, rows["saturated"].value) == ("bool", 1.0)
    forced = hdr.to_samples(cell, s, 250, 42.0, saturated=False)
    assert [r.value for r in forced if r.metric == "saturated"] == [0.0]


def test_to_samples_without_requests_has_no_latency_rows() -> None:
    s = hdr.summarize([], T, T + 1)
    metrics = {r.metric for r in hdr.to_samples(Cell(0, "baseline", 10), s, 10, 1.0)}
    assert not any(m.startswith("latency_") for m in metrics)
    assert {"requests", "errors", "saturated"} <= metrics


def test_unmeasured_loadgen_cpu_is_no_row_and_the_saturation_check_says_so(
        two_processes: list[Path]) -> None:
    """Never a 0.0 standing in for a measurement: without the load generator's CPU there
    is no loadgen_cpu row, and "saturated" says CPU could not be checked, and why."""
    s = hdr.summarize(hdr.read_intervals(two_processes), T + 1, T + 3)
    rows = {r.metric: r for r in hdr.to_samples(Cell(1, "ambient", 200), s, 200, None,
                                                 cpu_missing="no cpu_s in the files")}
    assert "loadgen_cpu" not in rows
    assert rows["saturated"].labels == {"cpu_checked": False,
                                        "cpu_missing": "no cpu_s in the files"}
    assert rows["saturated"].value == 0.0  # 200 of 200 rps: only the rate half can say
    assert hdr.is_saturated(100.0, 100.0, None) is False
    assert hdr.is_saturated(50.0, 100.0, None) is True


def test_cpu_from_the_recorders_intervals(tmp_path: Path) -> None:
    """hdr_recorder.py writes its process CPU time per interval (cpu_s); files without it
    (written before) give None, not 0."""
    f = tmp_path / "hdr.7"
    f.write_text('{"ts_start": 10, "ts_end": 11, "pid": 7, "count": 0, "errors": 0, "hist": "",'
                 ' "cpu_s": 0.3}\n{"ts_start": 11, "ts_end": 12, "pid": 7, "count": 0, '
                 '"errors": 0, "hist": "", "cpu_s": 0.9}\n')
    old = tmp_path / "hdr.8"
    old.write_text('{"ts_start": 10, "ts_end": 11, "pid": 8, "count": 0, "errors": 0, "hist": ""}\n')
    assert hdr.cpu_percent_max(hdr.read_intervals([f, old]), 10, 12) == pytest.approx(90.0)
    assert hdr.cpu_percent_max(hdr.read_intervals([old]), 10, 12) is None
    assert "cpu_s" in (Path(__file__).resolve().parents[2] / "workloads" / "locustfiles" /
                       "hdr_recorder.py").read_text()
