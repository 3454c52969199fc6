"""The test app and the Locust driver end to end, on loopback (and in a netns as root)."""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from hdrh.histogram import HdrHistogram

from bench import PREFIX
from bench.load.driver import (
    LOCUSTFILE,
    LoadGeneratorError,
    LocustRun,
    locust_command,
    run_locust,
    split_url,
)
from bench.load.hdr import merge, read_intervals, summarize
from tests.support.hdr_windows import steady_window
from tests.support.ports import free_port

PAYLOAD = 1234


def _start_app(port: int, prefix: list[str] | None = None) -> subprocess.Popen[bytes]:
    cmd = [*(prefix or []), sys.executable, "-m", "bench.apps.http_server", "--bind",
           "127.0.0.1", "--port", str(port), "--payload-bytes", str(PAYLOAD)]
    return subprocess.Popen(cmd, cwd=Path(__file__).resolve().parents[2])


def _wait_healthy(port: int, prefix: list[str] | None = None, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    probe = [*(prefix or []), sys.executable, "-c",
             f"import urllib.request as u; u.urlopen('http://127.0.0.1:{port}/healthz', timeout=1)"]
    while time.monotonic() < deadline:
        if prefix:
            if subprocess.run(probe, capture_output=True, check=False).returncode == 0:
                return
        else:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    return
            except OSError:
                pass
        time.sleep(0.1)
    raise TimeoutError(f"app on port {port} did not come up")


@pytest.fixture
def app_port() -> Iterator[int]:
    port = free_port()
    proc = _start_app(port)
    try:
        _wait_healthy(port)
        yield port
    finally:
        proc.terminate()
        # SIGTERM must be a clean exit.
        assert proc.wait(timeout=5) == 0


def _group_members(pgid: int) -> list[psutil.Process]:
    out = []
    for p in psutil.process_iter():
        try:
            if os.getpgid(p.pid) == pgid and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except (psutil.Error, ProcessLookupError):
            pass
    return out


def _assert_no_locust_left(run: LocustRun) -> None:
    assert run.returncode is not None
    assert _group_members(run.pid) == []
    for pid in {s.pid for s in run.cpu_samples()}:
        try:
            p = psutil.Process(pid)
            alive = p.status() != psutil.STATUS_ZOMBIE and str(LOCUSTFILE) in " ".join(p.cmdline())
        except psutil.Error:  # gone, or a zombie waiting for its new parent to reap it
            alive = False
        assert not alive, f"Locust process {pid} outlived its run"


def test_app_returns_exact_payload_with_keep_alive(app_port: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", app_port, timeout=5)
    try:
        for path in ("/", "/any/path"):
            conn.request("GET", path)
            resp = conn.getresponse()
            body = resp.read()
            assert resp.status == 200 and len(body) == PAYLOAD
            assert resp.getheader("Content-Length") == str(PAYLOAD)
            assert not resp.will_close
            if path == "/":
                first_sock = conn.sock
        assert conn.sock is first_sock  # the second request reused the connection
        conn.request("GET", "/healthz")
        assert conn.getresponse().read() == b"ok"
    finally:
        conn.close()


def test_command_and_url() -> None:
    assert split_url("http://10.96.0.10:8080/a?b=1") == ("http://10.96.0.10:8080", "/a?b=1")
    assert split_url("http://127.0.0.1:9") == ("http://127.0.0.1:9", "/")
    with pytest.raises(ValueError):
        split_url("10.96.0.10:8080/")
    cmd = locust_command(netns="mb-c", base_url="http://x:1", users=4, processes=2, duration_s=30)
    assert cmd[:5] == ["ip", "netns", "exec", "mb-c", sys.executable]
    assert cmd[-2:] == ["--processes", "2"] and "--run-time" in cmd and "30s" in cmd
    assert "--processes" not in locust_command(
        netns=None, base_url="http://x:1", users=4, processes=1, duration_s=30)


def test_timeout_kills_the_whole_group(tmp_path: Path) -> None:
    # A stand-in for a hung Locust, with a grandchild in the same group.
    run = LocustRun(["sh", "-c", "sleep 60 & exec sleep 60"], dict(os.environ),
                    hdr_out=tmp_path / "h", log_path=tmp_path / "log", duration_s=0.5,
                    timeout_s=1.0).start()
    time.sleep(0.3)
    assert len(_group_members(run.pid)) == 2
    t = time.monotonic()
    with pytest.raises(LoadGeneratorError, match="did not finish"):
        run.wait()
    assert time.monotonic() - t < 5
    _assert_no_locust_left(run)


def test_nonzero_exit_is_an_error(tmp_path: Path) -> None:
    run = LocustRun(["sh", "-c", "echo boom; exit 3"], dict(os.environ), hdr_out=tmp_path / "h",
                    log_path=tmp_path / "log", duration_s=1, timeout_s=10).start()
    with pytest.raises(LoadGeneratorError, match="code 3: boom"):
        run.wait()


@pytest.mark.slow
def test_locust_paced_load_records_microseconds(app_port: int, tmp_path: Path) -> None:
    target = 100.0
    run = run_locust(netns=None, url=f"http://127.0.0.1:{app_port}/", target_rps=target,
                     users=2, processes=1, duration_s=8, hdr_out=tmp_path / "cell.jsonl",
                     log_path=tmp_path / "locust.log", timeout_s=40)
    try:
        run.wait()
    finally:
        run.stop()
    _assert_no_locust_left(run)

    paths = run.hdr_paths()
    assert paths and all(p.stat().st_size > 0 for p in paths)
    intervals = read_intervals(paths)
    t0, t1 = steady_window(intervals, trim_s=1.0)  # the middle of the run
    s = summarize(intervals, t0, t1)
    assert t1 - t0 >= 3
    assert s.errors == 0 and s.count > 0
    assert s.achieved_rps == pytest.approx(target, rel=0.15)
    assert 10 < s.p50_us < 50_000
    # Microsecond resolution: Locust's own stats would round these to whole milliseconds.
    hist: HdrHistogram = merge(intervals, t0, t1)[0]
    values = [item.value_iterated_to for item in hist.get_recorded_iterator()]
    assert len(values) > 10
    assert any(v % 1000 for v in values)
    assert 0 < run.cpu_percent_max(t0, t1) < 100


@pytest.mark.slow
def test_stop_ends_a_running_load(app_port: int, tmp_path: Path) -> None:
    run = run_locust(netns=None, url=f"http://127.0.0.1:{app_port}/", target_rps=50, users=2,
                     processes=2, duration_s=60, hdr_out=tmp_path / "cell.jsonl",
                     log_path=tmp_path / "locust.log", timeout_s=90)
    try:
        deadline = time.monotonic() + 20
        while len(run.hdr_paths()) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(run.hdr_paths()) == 2  # one file per worker, none for the master
    finally:
        t = time.monotonic()
        run.stop()
    assert time.monotonic() - t < 15
    _assert_no_locust_left(run)
    assert sum(i.count for i in read_intervals(run.hdr_paths())) > 0


@pytest.mark.root
@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root for ip netns")
def test_locust_inside_a_network_namespace(tmp_path: Path) -> None:
    ns = f"{PREFIX}test-load-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    app: subprocess.Popen[bytes] | None = None
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        in_ns = ["ip", "netns", "exec", ns]
        port = 18080
        app = _start_app(port, in_ns)
        _wait_healthy(port, in_ns)
        run = run_locust(netns=ns, url=f"http://127.0.0.1:{port}/", target_rps=100, users=2,
                         processes=1, duration_s=5, hdr_out=tmp_path / "cell.jsonl",
                         log_path=tmp_path / "locust.log", timeout_s=40)
        try:
            run.wait()
        finally:
            run.stop()
        _assert_no_locust_left(run)
        intervals = read_intervals(run.hdr_paths())
        s = summarize(intervals, *steady_window(intervals))
        assert s.errors == 0 and s.achieved_rps == pytest.approx(100, rel=0.15)
    finally:
        if app is not None:
            app.terminate()
            app.wait(timeout=5)
        subprocess.run(["ip", "netns", "del", ns], check=False)
