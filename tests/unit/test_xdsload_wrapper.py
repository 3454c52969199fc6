"""bench.istiod.xdsload.XdsLoad: the command-line protocol, errors, and the process's end;
against a stand-in script (fast), and against the real mb-xdsload when `go` can build it
(slow; its streams fail, since nothing serves xDS there, which is recorded, not retried)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.istiod.xdsload import XdsLoad, XdsLoadError

REPO = Path(__file__).resolve().parents[2]

# A stand-in for mb-xdsload: answers each command line with one reply line.
FAKE = r'''
import json, sys, time
print("fake started", file=sys.stderr, flush=True)
mark = 0
for line in sys.stdin:
    try:
        c = json.loads(line)
    except ValueError:
        print(json.dumps({"ok": False, "error": "bad JSON"}), flush=True)
        continue
    cmd = c.get("cmd")
    if cmd == "status":
        r = {"ok": True, "connected": 0, "synced": 0, "streams_failed": 0}
    elif cmd == "mark":
        mark += 1
        r = {"ok": True, "mark": mark}
    elif cmd == "connect":
        r = {"ok": True, "connected": c["to"] - c["from"], "opened": c["to"] - c["from"]}
    elif cmd == "held":
        open(c["path"], "w").write(json.dumps({"0": {"t": [1, 2, "00"]}}))
        r = {"ok": True}
    elif cmd == "die":
        print("fatal: dying as asked", file=sys.stderr, flush=True)
        sys.exit(3)
    elif cmd == "hang":
        time.sleep(60)
        r = {"ok": True}
    elif cmd == "close":
        print(json.dumps({"ok": True}), flush=True)
        sys.exit(0)
    else:
        r = {"ok": False, "error": f"unknown command {cmd!r}"}
    print(json.dumps(r), flush=True)
'''


@pytest.fixture
def fake_binary(tmp_path: Path) -> Path:
    p = tmp_path / "fake-xdsload"
    p.write_text(f"#!{sys.executable}\n{FAKE}")
    p.chmod(0o755)
    return p


PROXIES = [{"id": "sidecar~10.0.0.1~a.ns~ns.svc.cluster.local", "role": "sidecar",
            "cluster": "Kubernetes", "metadata": {"NAMESPACE": "ns"}, "keep": True},
           {"id": "ztunnel~10.0.0.2~z.istio-system~istio-system.svc.cluster.local",
            "role": "ztunnel", "cluster": "Kubernetes", "metadata": {}, "keep": False}]


def test_commands_and_close(fake_binary: Path, tmp_path: Path) -> None:
    with XdsLoad(fake_binary, "127.0.0.1:1", PROXIES, tmp_path / "ev.jsonl", tmp_path) as load:
        assert load.pid > 0
        assert json.loads((tmp_path / "proxies.json").read_text()) == PROXIES
        assert load.connect(0, 2) == 2
        assert load.status()["synced"] == 0
        assert load.mark() == 1
        assert load.mark() == 2
        assert load.held(tmp_path / "held.json") == {"0": {"t": [1, 2, "00"]}}
        with pytest.raises(XdsLoadError, match="unknown command 'nope'"):
            load.call({"cmd": "nope"})
        assert load.status()["ok"] is True  # still in step after an error reply
        popen = load._popen
    assert popen is not None and popen.returncode == 0
    assert "fake started" in (tmp_path / "mb-xdsload.log").read_text()


def test_death_names_the_command_and_the_log(fake_binary: Path, tmp_path: Path) -> None:
    with XdsLoad(fake_binary, "127.0.0.1:1", PROXIES, tmp_path / "ev.jsonl", tmp_path) as load:
        with pytest.raises(XdsLoadError, match=r"'die'.*exit code 3.*dying as asked"):
            load.call({"cmd": "die"})
        with pytest.raises(XdsLoadError, match=r"'status'.*dying as asked"):
            load.status()


def test_timeout_ends_the_process(fake_binary: Path, tmp_path: Path) -> None:
    load = XdsLoad(fake_binary, "127.0.0.1:1", PROXIES, tmp_path / "ev.jsonl", tmp_path)
    pid = load.pid
    with load, pytest.raises(XdsLoadError, match=r"did not answer 'hang' in 1 s"):
        load.call({"cmd": "hang"}, timeout_s=1)
    with pytest.raises(ProcessLookupError):
        for _ in range(50):
            os.kill(pid, 0)
            time.sleep(0.1)
    with pytest.raises(XdsLoadError, match="not running"):
        load.status()


def test_exception_in_block_terminates(fake_binary: Path, tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), \
            XdsLoad(fake_binary, "127.0.0.1:1", PROXIES, tmp_path / "ev.jsonl", tmp_path) as load:
        popen = load._popen
        raise RuntimeError("boom")
    assert popen is not None and popen.poll() is not None


def test_missing_binary(tmp_path: Path) -> None:
    with pytest.raises(XdsLoadError, match="cannot start"):
        XdsLoad(tmp_path / "absent", "127.0.0.1:1", PROXIES, tmp_path / "ev.jsonl", tmp_path)


@pytest.fixture(scope="module")
def real_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    go = shutil.which("go")
    if go is None:
        pytest.skip("no `go` on PATH to build mb-xdsload")
    out = tmp_path_factory.mktemp("xdsload") / "mb-xdsload"
    r = subprocess.run([go, "build", "-p", "1", "-o", str(out), "."],
                       cwd=REPO / "bench" / "istiod" / "xdsload", capture_output=True, text=True,
                       timeout=900)
    if r.returncode != 0:
        pytest.skip(f"mb-xdsload does not build here: {r.stderr.strip()[-300:]}")
    return out


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_real_binary_without_server(real_binary: Path, tmp_path: Path) -> None:
    events = tmp_path / "ev.jsonl"
    addr = f"127.0.0.1:{_closed_port()}"
    with XdsLoad(real_binary, addr, PROXIES, events, tmp_path) as load:
        assert load.connect(0, 2) >= 0
        # nothing listens: each stream is refused (Unavailable) and retried, as Envoy
        # retries, until the harness closes it
        deadline = time.monotonic() + 30
        while load.status()["retries"] < 2:
            assert time.monotonic() < deadline, load.status()
            time.sleep(0.1)
        st = load.status()
        assert st["connected"] == 2 and st["synced"] == 0 and st["streams_failed"] == 0
        assert load.mark() == 1
        assert load.held(tmp_path / "held.json") == {"0": {}, "1": {}}
        reply = load.dump([0, 1], tmp_path / "dump.json")
        assert reply["not_kept"] == [1]
        assert json.loads((tmp_path / "dump.json").read_text()) == {"0": {}, "1": {}}
        with pytest.raises(XdsLoadError, match="connect: range"):
            load.connect(0, 9)
        popen = load._popen
    assert popen is not None and popen.returncode == 0
    lines = [json.loads(x) for x in events.read_text().splitlines()]
    events_seen = [e["event"] for e in lines]
    assert events_seen.count("close") == 2 and events_seen.count("retry") >= 2
    assert "error" not in events_seen


@pytest.mark.slow
def test_real_binary_sigterm_flushes(real_binary: Path, tmp_path: Path) -> None:
    events = tmp_path / "ev.jsonl"
    load = XdsLoad(real_binary, f"127.0.0.1:{_closed_port()}", PROXIES, events, tmp_path)
    with load:
        load.connect(0, 2)
        deadline = time.monotonic() + 30
        while load.status()["retries"] < 2:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        os.kill(load.pid, signal.SIGTERM)
        assert load._popen is not None and load._popen.wait(timeout=10) == 0
    # the retries' lines were flushed on SIGTERM
    assert sum('"retry"' in x for x in events.read_text().splitlines()) >= 2
