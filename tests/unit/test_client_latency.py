"""The kernel-timed client latency: generated BPF text, exact summaries, and the reference
client (a real C program against a real loopback server: no root needed)."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from loopback_app import loopback_app

from bench.load import reference
from bench.probes import client_latency
from bench.probes.client_latency import Requests, schedule_spread, summarize_requests
from bench.store import Cell


def test_generated_bpf_has_every_placeholder_filled() -> None:
    text = client_latency.generate_c(8080, dport_offset=12)
    assert not re.search(r"__[A-Z][A-Z0-9_]*__", text)
    assert "#define SERVICE_PORT 8080" in text and "#define SKC_DPORT_OFF 12" in text
    with pytest.raises(ValueError):
        client_latency.generate_c(0)


def test_print_bpf_cli(capsys: pytest.CaptureFixture[str]) -> None:
    assert client_latency.main(["--print-bpf", "--port", "9090"]) == 0
    assert "#define SERVICE_PORT 9090" in capsys.readouterr().out


def _requests(lat_us: list[float], t0: float = 100.0) -> Requests:
    n = len(lat_us)
    done = t0 + np.arange(n) * 0.01
    lat = np.array(lat_us, dtype=float)
    return Requests(t_send=done - lat / 1e6, t_done=done, latency_us=lat,
                    sk=np.zeros(n, dtype=np.uint64))


def test_summary_is_exact_and_rows_carry_the_spread() -> None:
    req = _requests([float(v) for v in range(1, 1001)])
    s = summarize_requests(req, 100.0, 110.0)
    assert s.count == 1000 and s.p50_us == pytest.approx(500.5) and s.max_us == 1000
    assert s.achieved_rps == pytest.approx(100.0)
    rows = client_latency.to_samples(Cell(1, "sidecar", 100), s, {"burst_share": 0.0}, lost=0)
    got = {r.metric: r.value for r in rows}
    assert got["latency_p50"] == pytest.approx(500.5) and got["requests"] == 1000
    assert got["burst_share"] == 0.0 and {r.source for r in rows} == {"load_kernel"}


def test_empty_window_has_no_latency_rows() -> None:
    s = summarize_requests(_requests([]), 0.0, 1.0)
    rows = client_latency.to_samples(Cell(1, "baseline", 100), s, {}, lost=3)
    assert {r.metric for r in rows} == {"requests", "achieved_rps", "requests_lost"}


def test_spread_needs_enough_sends() -> None:
    assert schedule_spread(np.array([1.0, 2.0]), 10.0) == {}


# ---- the reference client, built and run for real ------------------------------------------

@pytest.fixture(scope="module")
def refclient(tmp_path_factory: pytest.TempPathFactory) -> Path:
    try:
        return reference.refclient_path()
    except Exception:
        if shutil.which("cc") is None and shutil.which("gcc") is None:
            pytest.fail("no C compiler: make setup installs gcc")
        return reference.build(tmp_path_factory.mktemp("ref") / "mb-refclient")


@pytest.fixture
def app_port() -> Iterator[int]:
    with loopback_app() as port:
        yield port


@pytest.mark.parametrize("model", ["uniform", "poisson"])
def test_reference_client_paces_and_times_every_request(
        refclient: Path, app_port: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        model: str) -> None:
    monkeypatch.setenv("MB_REFCLIENT", str(refclient))
    req = reference.run_reference(netns=None, url=f"http://127.0.0.1:{app_port}/", rate=200,
                                  connections=4, duration_s=2.0, arrivals=model, seed=3,
                                  out=tmp_path / "ref.bin", timeout_s=60)
    # 200 rps for 2 s over 4 connections: ~400 requests, each timed from its actual send
    assert 360 <= len(req) <= 404, len(req)
    assert (req.latency_us > 0).all() and (req.t_done >= req.t_send).all()
    assert np.median(req.latency_us) < 50_000
    achieved = len(req) / (req.t_send.max() - req.t_send.min())
    assert achieved == pytest.approx(200, rel=0.1)
    spread = schedule_spread(req.t_send, 200)
    if model == "uniform":  # four connections, evenly staggered: no two leave together
        assert spread["burst_share"] < 0.05, spread
    else:
        assert 0.6 < spread["gap_cv"] < 1.4, spread


def test_reference_client_refuses_bad_usage(refclient: Path, tmp_path: Path) -> None:
    done = subprocess.run([str(refclient), "example", "80", "/", "10", "1", "1", "uniform", "0",
                           str(tmp_path / "x")], capture_output=True, text=True)
    assert done.returncode == 2 and "IPv4" in done.stderr
    done = subprocess.run([str(refclient)], capture_output=True, text=True)
    assert done.returncode == 2 and "usage" in done.stderr


def test_missing_reference_client_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from bench.errors import PrerequisiteError

    monkeypatch.setenv("MB_REFCLIENT", "/nonexistent/mb-refclient")
    monkeypatch.setattr(reference.sys, "prefix", "/nonexistent")
    monkeypatch.setattr(reference.shutil, "which", lambda _name: None)
    with pytest.raises(PrerequisiteError, match="not built") as e:
        reference.refclient_path()
    assert "make setup" in (e.value.hint or "")
