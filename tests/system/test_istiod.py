"""The real istiod (bench/istiod): built from the Go module proxy when absent (minutes, cold),
started on loopback with the smoke sweep's simulated cluster and proxies.

What istiod is checked to do: a change reaches exactly the simulated proxies that our reading
of this istiod (pushrules.plan_main) names, with the same xDS types whole or incremental; a
policy selecting one workload reaches only its namespace's sidecars but every ztunnel; the
kube backends' /debug/syncz parser and metric names work against the real istiod. And the
harness's own part: a dying istiod fails only its size, Ctrl-C leaves nothing behind."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.istiod import build
from bench.istiod.controlplane import MEMCG, RUNTIME

pytestmark = [pytest.mark.root]
REPO = Path(__file__).resolve().parents[2]


def _go_or_skip() -> None:
    if shutil.which("go") is None:
        pytest.skip("needs Go (the real istiod is built from the Go module proxy)")


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    """The smoke sweep at 10 pods, every mode and change (binaries built when absent)."""
    _go_or_skip()
    from analysis.istiod import table, write_report
    from bench.istiod.sweep import read_spec, run_sweep
    from bench.store import RunStore

    root = tmp_path_factory.mktemp("istiod")
    spec = read_spec("fanout-istiod-smoke", sizes=[10])
    store = RunStore.create(root, "smoke", {"scenario": spec.name, "kind": "istiod-sweep"})
    lines: list[str] = []
    code = run_sweep(spec, store, lines.append)
    store.finalize()
    write_report(store.dir)
    assert code == 0, "\n".join(lines[-20:])
    return store.dir, table(store.dir)


def _value(df, metric: str, mode: str, exp: str, entity: str = "mesh") -> float:  # type: ignore[no-untyped-def]
    sel = df[(df["metric"] == metric) & (df["mode"] == mode) & (df["experiment"] == exp)
             & (df["entity"] == entity)]
    assert len(sel) == 1, (metric, mode, exp, entity, len(sel))
    return float(sel["value"].iloc[0])


def test_every_size_ran_and_left_nothing(smoke) -> None:  # type: ignore[no-untyped-def]
    run_dir, _ = smoke
    m = json.loads((run_dir / "manifest.json").read_text())
    assert [p["status"] for p in m["points"]] == ["ok"] * 3, m["points"]
    assert m["istiod"]["commit"] == build.pseudo_commit(build.ISTIO_VERSION)[0]
    assert not RUNTIME.exists() and not MEMCG.exists()


def test_a_change_reaches_exactly_the_proxies_istiod_should_push(smoke) -> None:  # type: ignore[no-untyped-def]
    """istiod's pushes against our reading of its source, per change, mode and role."""
    _, df = smoke
    rows = df[(df["metric"] == "types_pushed")]
    assert len(rows) >= 4 * 3, "every change and role has a row"
    for _, r in rows.iterrows():
        pushed = _value(df, "proxies_pushed", r["mode"], r["experiment"], r["entity"])
        main = _value(df, "proxies_predicted_main", r["mode"], r["experiment"], r["entity"])
        assert pushed == main, (r["experiment"], r["mode"], r["entity"], pushed, main)
        assert set(filter(None, str(r["observed"]).split(","))) == set(
            filter(None, str(r["predicted_main"]).split(","))), (
            r["experiment"], r["mode"], r["entity"], r["observed"], r["predicted_main"])


def test_responses_received_equal_istiod_count_of_responses_sent(smoke) -> None:  # type: ignore[no-untyped-def]
    """Our proxies' count of responses, per change and type, against istiod's own
    (pilot_xds_pushes): two views of the same pushes, which must agree exactly."""
    _, df = smoke
    ours = df[df["metric"] == "responses_received"]
    theirs = df[df["metric"] == "istiod_responses_sent"]
    keys = ["mode", "experiment", "xds_type"]
    m = ours.merge(theirs, on=keys, suffixes=("_ours", "_istiod"))
    assert len(m) == len(ours) > 0 and m["value_ours"].sum() > 0
    bad = m[m["value_ours"] != m["value_istiod"]]
    assert bad.empty, bad[keys + ["value_ours", "value_istiod"]].to_string()


def test_one_workload_policy_is_scoped_by_namespace_for_sidecars(smoke) -> None:  # type: ignore[no-untyped-def]
    """The smoke mesh has two namespaces of 5 pods: the policy in the second reaches its 5
    sidecars (changing one: the selected workload's), and every ztunnel."""
    _, df = smoke
    assert _value(df, "proxies_total", "sidecar", "l4_authz_one") == 10
    assert _value(df, "proxies_pushed", "sidecar", "l4_authz_one") == 5
    assert _value(df, "proxies_changed", "sidecar", "l4_authz_one") == 1
    zt = _value(df, "proxies_total", "ambient", "l4_authz_one")
    assert _value(df, "proxies_pushed", "ambient", "l4_authz_one") == zt == 2


def test_kube_backends_read_the_real_istiod(smoke) -> None:  # type: ignore[no-untyped-def]
    """The kind/cluster backends' syncz parser lists every simulated proxy as ACKed, and the
    istiod metric families they read exist in the real istiod's /metrics."""
    _, df = smoke
    for mode in ("sidecar", "ambient", "waypoint"):
        ours = _value(df, "proxies_total", mode, "connect")
        assert _value(df, "syncz_proxies", mode, "syncz") == ours
        assert _value(df, "syncz_acked", mode, "syncz") == ours
    present = df[df["metric"] == "istiod_metric_present"]
    missing = sorted(set(present[present["value"] == 0]["family"]))
    assert not present.empty and missing == [], missing


def test_exposure_is_measured_per_role(smoke) -> None:  # type: ignore[no-untyped-def]
    _, df = smoke
    ex = df[(df["experiment"] == "exposure") & (df["metric"] == "services_known")]
    roles = set(zip(ex["mode"], ex["role"], strict=True))
    assert {("sidecar", "sidecar"), ("ambient", "ztunnel"), ("waypoint", "waypoint")} <= roles
    side = ex[ex["role"] == "sidecar"]["value"]
    assert (side == 2).all(), "a sidecar holds every service of the mesh (default scope)"
    # after the changes, two policies: one on svc-0 in the first namespace, one on a single
    # workload of the second; a ztunnel holds both, a sidecar only those selecting it
    pol = df[(df["experiment"] == "exposure") & (df["metric"] == "policies_known")
             & (df["state"] == "after_changes")]
    assert (pol[pol["role"] == "ztunnel"]["value"] == 2).all()
    assert pol[pol["role"] == "sidecar"]["value"].max() == 1


def _sweep(results: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "bench", "istiod", "sweep", "-s",
                             "fanout-istiod-smoke", "--modes", "sidecar", "--results",
                             str(results), *extra], cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _wait_for(what: str, cond, timeout_s: float = 300.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, f"{what} not seen in {timeout_s:.0f} s"
        time.sleep(0.2)


def _istiod_pid() -> int:
    pids = RUNTIME / "pids"
    if not pids.exists():
        return 0
    for line in pids.read_text().splitlines():
        pid, _, exe = line.partition(" ")
        if exe.endswith("pilot-discovery"):
            return int(pid)
    return 0


def test_istiod_dying_fails_only_its_size(tmp_path: Path, smoke) -> None:  # type: ignore[no-untyped-def]
    proc = _sweep(tmp_path, "--sizes", "10,20")
    _wait_for("istiod of the first size", lambda: _istiod_pid() > 0)
    first = _istiod_pid()
    _wait_for("the first size's proxies", lambda: list(tmp_path.glob("*/istiod/sidecar-10/"
                                                                      "events.jsonl")))
    os.kill(first, signal.SIGKILL)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 3, out[-2000:]
    m = json.loads(next(tmp_path.glob("*/manifest.json")).read_text())
    status = {p["pods"]: (p["status"], p["reason"]) for p in m["points"]}
    assert status[10][0] == "failed" and "istiod" in status[10][1], status
    assert status[20][0] == "ok", status
    assert not RUNTIME.exists()


def test_ctrl_c_leaves_no_process_socket_or_database(tmp_path: Path, smoke) -> None:  # type: ignore[no-untyped-def]
    proc = _sweep(tmp_path, "--sizes", "10")
    _wait_for("istiod", lambda: _istiod_pid() > 0)
    pid = _istiod_pid()
    # SIGTERM takes the same path as Ctrl-C (bench.cli._on_sigterm); a background CI job may
    # have SIGINT ignored
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out[-2000:]
    assert not Path(f"/proc/{pid}").exists()
    assert not RUNTIME.exists() and not MEMCG.exists()


def test_unknown_binary_is_one_line_exit_2() -> None:
    r = subprocess.run([sys.executable, "-m", "bench", "istiod", "build", "istiodd"], cwd=REPO,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "istiodd" in r.stderr and "hint" in r.stderr


def test_kube_backends_push_measurement_against_real_istiod(tmp_path: Path, smoke) -> None:  # type: ignore[no-untyped-def]
    """bench/backends/kube/push.py `run` (what kind and cluster runs measure a change with:
    istiod's metric deltas, /debug/syncz polled until every moved proxy ACKed) against the
    real istiod: the policy on the first service reaches exactly its namespace's sidecars,
    each ACKed, istiod's push counter moves, nothing straggles."""
    import types

    from bench.backends.kube import measure
    from bench.backends.kube import push as kube_push
    from bench.istiod import cluster, proxies
    from bench.istiod.cluster import Shape
    from bench.istiod.controlplane import ControlPlane
    from bench.istiod.xdsload import XdsLoad

    paths = build.require()
    shape = Shape(10, "sidecar", pods_per_service=5, services_per_namespace=1, run_id="kube")
    with ControlPlane.start(paths, build.ISTIO_VERSION, say=lambda s: None) as cp:
        assert cp.api is not None
        refs = cluster.write(cp.api, shape)
        px = proxies.for_mode(shape, refs)
        with XdsLoad(paths["mb-xdsload"], f"127.0.0.1:{cp.ports.xds}",
                     [p.to_json(False) for p in px], tmp_path / "events.jsonl", tmp_path) as load:
            load.connect(0, len(px))
            _wait_for("every proxy synced", lambda: load.status()["synced"] == len(px), 120)
            backend = types.SimpleNamespace(
                istiod_metrics=lambda: measure.scrape(cp.metrics()), kube=cp.api,
                namespace=refs[0].namespace, run_id="kube")
            first = types.SimpleNamespace(name=refs[0].service, port=cluster.SVC_PORT,
                                          target_port=cluster.APP_PORT)
            mesh = types.SimpleNamespace(mode="sidecar", services=[first])
            clock = types.SimpleNamespace(monotonic=time.monotonic, sleep=time.sleep)
            out = kube_push.run(backend, mesh, "l4_authz", 120.0, None, cp.syncz, clock)
    ns0 = {f"{r.name}.{r.namespace}" for r in refs if r.namespace == refs[0].namespace}
    assert set(out.updated) == ns0, (out.updated, ns0)
    assert set(out.converge_ms) == ns0 and not out.stragglers
    assert out.istiod["pushes"] >= len(ns0) and out.istiod["rejects"] == 0
