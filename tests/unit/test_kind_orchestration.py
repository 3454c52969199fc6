"""The kind backend's whole orchestration against the fake cluster and a command recorder:
provision per mode, reuse, profile switches, readiness timeouts, failures midway (what
was created is deleted, or the hint says how), teardown, health checks, in-cluster load."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from bench import scenario as scen
from bench.backends.kind import kindconfig
from bench.backends.kind.backend import KindBackend, delete_clusters
from bench.backends.kube import measure
from bench.backends.kube.loadgen import InClusterLoadError
from bench.backends.kube.orchestrator import CHECK_INTERVAL_S, delete_all_runs
from bench.errors import PrerequisiteError, ProvisionError
from bench.load.hdr import hdr_files
from bench.store import Cell
from tests.support.k8s_fake import CommandRecorder, FakeClock, FakeKube, simulate_kind

SCENARIO = scen.from_dict({"name": "t", "backend": "kind", "load": {"processes": 2}})
RUN_SELECTOR = "app.kubernetes.io/managed-by=meshbench,meshbench.io/run-id=r1"
WAYPOINT_POD = "waypoint-5d9c7-abcde"


@dataclass
class World:
    kube: FakeKube
    rec: CommandRecorder
    clock: FakeClock
    clusters: list[str]
    backend: KindBackend
    logs: list[str]

    def namespaces(self) -> list[str]:
        return [k[3] for k in self.kube.objects if k[1] == "Namespace" and k[3].startswith("mb-")]


def make_world(tmp_path: Path, scenario: scen.Scenario = SCENARIO, **kw: object) -> World:
    kube, rec, clock, logs = FakeKube(), CommandRecorder(), FakeClock(), []
    labels = [n["labels"] for n in kindconfig.config(scenario, "mb-kind")["nodes"][1:]]
    clusters = simulate_kind(rec, kube, worker_labels=labels,
                             payload_bytes=scenario.workload.payload_bytes)
    kube.proxy_texts[("mb-bench", WAYPOINT_POD, 15090)] = \
        'istio_requests_total{reporter="destination",response_code="200"} 1\n'
    (tmp_path / "proc").mkdir(parents=True, exist_ok=True)
    b = KindBackend(scenario, run_id="r1", commands=rec, kube_factory=lambda ctx: kube,
                    clock=clock, workdir=tmp_path / "work", proc_root=tmp_path / "proc",
                    cluster="mb-kind", fetch=lambda url: 'pilot_xds_pushes{type="cds"} 4\n',
                    **kw)  # type: ignore[arg-type]
    b.log = logs.append
    return World(kube, rec, clock, clusters, b, logs)


@pytest.fixture
def world(tmp_path: Path) -> World:
    return make_world(tmp_path)


@pytest.mark.parametrize("mode", scen.MODES)
def test_provision_each_mode_from_nothing(world: World, mode: str) -> None:
    dep = world.backend.provision(mode)
    assert dep.load_netns is None and dep.info["load"]["where"] == "in-cluster"
    assert dep.url == "http://svc-0.mb-bench.svc.cluster.local:80"
    assert dep.mesh.mode == mode
    assert world.rec.ran("kind", "create", "cluster", "--name", "mb-kind")
    config = world.rec.stdins[world.rec.calls.index(world.rec.ran("kind", "create")[0])]
    assert "kindest/node:v1.33.1@sha256:" in config
    profile = {"baseline": None, "sidecar": "minimal"}.get(mode, "ambient")
    installs = world.rec.ran("istioctl", "install")
    assert installs == ([] if profile is None else [
        ("istioctl", "install", "--context", "kind-mb-kind", "-f", "-", "--skip-confirmation")])
    if profile:
        iop = yaml.safe_load(world.rec.stdins[world.rec.calls.index(installs[0])])
        assert iop["kind"] == "IstioOperator" and iop["spec"]["profile"] == profile
        assert dep.info["istio"]["profile"] == profile
        assert dep.info["istio"]["hbone_for_sidecars"] == (profile == "ambient")
        # istiod on its own worker, never with the client or the servers
        assert set(dep.info["istio"]["istiod_nodes"].values()) == {"istiod"}
    # the Gateway API CRDs in every mode with a mesh (sidecar's l7_route needs HTTPRoute)
    assert bool(world.rec.ran("apply", "--server-side")) == (profile is not None)
    assert world.rec.ran("exec", "client-0", "python3")  # a request crossed the path
    # every object we applied carries the run labels
    for (_api, kind, ns, name), obj in world.kube.objects.items():
        if ns == "mb-bench" or (kind == "Namespace" and name == "mb-bench"):
            if name == WAYPOINT_POD:
                continue
            assert obj["metadata"]["labels"]["meshbench.io/run-id"] == "r1", (kind, name)


def test_probe_status_is_recorded_with_reasons(world: World) -> None:
    dep = world.backend.provision("ambient")
    probes = dep.info["probes"]
    assert probes["istiod"]["status"] == "ok" and probes["istiod"]["port"] == 40123
    assert "pilot_proxy_convergence_time" in probes["istiod"]["metrics"]
    assert probes["processes"]["status"] == "skipped"  # an empty /proc: the host sees nothing
    assert probes["metrics_api"] == {"status": "skipped", "used": False,
                                     "reason": probes["metrics_api"]["reason"]}
    assert "metrics-server" in probes["metrics_api"]["reason"]
    # neither path can measure: said so, not filled with zeros
    assert probes["resources_in_cluster"]["status"] == "missing"
    assert world.backend.window_resources(Cell(1, "ambient", 200)) == []
    assert probes["bcc"] == {"status": "skipped", "reason": measure.BCC_NO_PROCESSES}
    assert world.backend.istiod_metrics() == {'pilot_xds_pushes{type="cds"}': 4.0}
    json.dumps(dep.info)  # the manifest can store it


def test_interleaved_modes_reuse_the_cluster_and_switch_profiles(world: World) -> None:
    b = world.backend
    for mode in ("baseline", "sidecar", "sidecar", "ambient", "waypoint", "baseline", "sidecar"):
        b.provision(mode)
        b.teardown()
        assert world.namespaces() == []
    assert len(world.rec.ran("kind", "create")) == 1
    profiles = [yaml.safe_load(world.rec.stdins[i])["spec"]["profile"]
                for i, c in enumerate(world.rec.calls) if c[:2] == ("istioctl", "install")]
    assert profiles == ["minimal", "ambient", "minimal"]
    assert len(world.rec.ran("istioctl", "uninstall", "--purge")) == 2
    assert len(world.rec.ran("apply", "--server-side")) == 1  # CRDs stay once installed


def test_existing_matching_cluster_is_reused(tmp_path: Path) -> None:
    w = make_world(tmp_path)
    w.clusters.append("mb-kind")
    w.kube.seed_nodes([n["labels"] for n in kindconfig.config(SCENARIO, "mb-kind")["nodes"][1:]])
    w.backend.provision("baseline")
    assert not w.rec.ran("kind", "create")


def test_existing_cluster_that_differs_is_refused_not_deleted(tmp_path: Path) -> None:
    w = make_world(tmp_path)
    w.clusters.append("mb-kind")
    w.kube.seed_nodes([{"meshbench.io/node": "node0", "meshbench.io/role": "client"}])
    with pytest.raises(ProvisionError) as e:
        w.backend.provision("baseline")
    assert "exists but differs" in e.value.message
    assert "kind delete cluster --name mb-kind" in e.value.one_line()
    assert not w.rec.ran("kind", "delete") and not w.rec.ran("kind", "create")


def test_pod_that_never_becomes_ready_times_out_and_everything_is_deleted(world: World) -> None:
    world.kube.never_ready.add(("Pod", "svc-0-0"))
    with pytest.raises(ProvisionError) as e:
        world.backend.provision("sidecar")
    msg = e.value.one_line()
    assert "mb-bench/svc-0-0" in msg and "300 s" in msg and "Pending" in msg
    assert "everything this run created in the cluster was deleted" in msg
    assert "kind delete cluster --name mb-kind" in msg  # what stays, and how to remove it
    assert world.namespaces() == []
    assert world.clock.now >= 300  # the wait used the clock, never a real sleep


def test_waypoint_gateway_never_programmed_times_out(world: World) -> None:
    world.kube.never_ready.add(("Gateway", "waypoint"))
    with pytest.raises(ProvisionError, match="Gateway mb-bench/waypoint programmed"):
        world.backend.provision("waypoint")
    assert world.namespaces() == []


@pytest.mark.parametrize("nth", [3, 12, 20])
def test_api_error_midway_deletes_what_was_created(world: World, nth: int) -> None:
    # count the API calls of a clean run, then fail a call inside the workload phase
    clean = make_world(world.backend.workdir.parent / f"clean{nth}")
    clean.backend.provision("ambient")
    first_apply = next(i for i, c in enumerate(clean.kube.calls, 1) if c[0] == "apply")
    world.kube.fail_call(first_apply + nth, status=500)
    with pytest.raises(ProvisionError) as e:
        world.backend.provision("ambient")
    assert "injected failure" in e.value.message
    assert "was deleted" in e.value.one_line()
    assert world.namespaces() == []
    assert not [k for k in world.kube.objects if k[2] == "mb-bench"]


def test_when_cleanup_fails_too_the_hint_prints_the_command(world: World) -> None:
    world.kube.never_ready.add(("Pod", "client-1"))
    world.kube.stuck.add(("Namespace", "mb-bench"))
    with pytest.raises(ProvisionError) as e:
        world.backend.provision("baseline")
    msg = e.value.one_line()
    assert "clean-up failed too" in msg
    assert ("kubectl --context kind-mb-kind delete namespace -l "
            f"{RUN_SELECTOR}") in msg


def test_request_that_never_gets_through_fails_with_the_last_error(world: World) -> None:
    world.rec.on("kubectl", "exec", "client-0", "python3", returncode=1,
                 stderr="urllib.error.URLError: <urlopen error [Errno 111] Connection refused>")
    with pytest.raises(ProvisionError) as e:
        world.backend.provision("ambient")
    assert "Connection refused" in e.value.message and "60 s" in e.value.message
    assert len(world.rec.ran("exec", "client-0", "python3")) >= 60
    assert world.namespaces() == []


def test_pods_not_enrolled_are_caught(world: World) -> None:
    world.kube.simulate_istio = False  # as if the injection webhook were not running
    with pytest.raises(ProvisionError, match="no istio-proxy sidecar"):
        world.backend.provision("sidecar")


def test_waypoint_that_sees_no_traffic_is_caught(world: World) -> None:
    world.kube.proxy_texts[("mb-bench", WAYPOINT_POD, 15090)] = "istio_requests_total 0\n"
    with pytest.raises(ProvisionError, match="waypoint did not see it"):
        world.backend.provision("waypoint")


def test_namespace_of_someone_else_is_never_adopted(world: World) -> None:
    world.kube.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "mb-bench"}})
    with pytest.raises(ProvisionError, match="belongs to someone else"):
        world.backend.provision("baseline")
    assert world.kube.get("v1", "Namespace", "mb-bench") is not None  # not ours: kept


def test_teardown_deletes_by_label_and_waits_until_gone(world: World) -> None:
    world.kube.delete_after_reads = 5
    world.backend.provision("ambient")
    t0 = world.clock.now
    world.backend.teardown()
    assert world.namespaces() == []
    assert world.clock.now - t0 >= 4  # it polled until the namespace had gone
    assert all(bg.stopped for bg in world.rec.started)  # the port-forward too
    assert ("delete", "Namespace", "", "mb-bench") in world.kube.calls
    world.backend.teardown()  # twice is fine


def test_teardown_times_out_on_a_stuck_namespace(world: World) -> None:
    world.backend.provision("baseline")
    world.kube.stuck.add(("Namespace", "mb-bench"))
    with pytest.raises(ProvisionError, match="gone: not after 180 s"):
        world.backend.teardown()


def test_teardown_before_anything_reached_the_cluster_is_a_no_op(world: World) -> None:
    world.backend.teardown()
    assert world.kube.calls == [] and world.rec.calls == []


def test_check_reports_unready_and_restarted_pods_at_most_every_interval(world: World) -> None:
    dep = world.backend.provision("sidecar")
    assert world.backend.check(dep) == []
    world.kube.never_ready.add(("Pod", "svc-0-0"))
    assert world.backend.check(dep) == []  # within the interval: the last answer
    world.clock.sleep(CHECK_INTERVAL_S)
    assert world.backend.check(dep) == ["pod svc-0-0 is not Ready"]


def test_path_counters_per_mode(world: World) -> None:
    k = world.kube
    for pod in ("client-0", "svc-0-0"):
        k.proxy_texts[("mb-bench", pod, 15090)] = (
            'istio_requests_total{reporter="source"} 7\n'
            'istio_requests_total{reporter="destination"} 5\n')
    dep = world.backend.provision("sidecar")
    counters = world.backend.path_counters(dep)
    assert counters["sidecar/client-0:istio_requests_total{reporter=source}"] == 7
    world.backend.teardown()
    for i in (0, 1):
        k.proxy_texts[("istio-system", f"ztunnel-{i}", 15020)] = \
            "istio_tcp_connections_opened_total{direction=\"outbound\"} 3\n"
    dep = world.backend.provision("waypoint")
    counters = world.backend.path_counters(dep)
    assert counters["ztunnel/w1:istio_tcp_connections_opened_total"] == 3
    assert counters["waypoint:istio_requests_total"] == 1
    world.backend.teardown()
    assert world.backend.path_counters(world.backend.provision("baseline")) == {}


def test_in_cluster_load_runs_master_and_workers_and_copies_hdr_files(
        world: World, tmp_path: Path) -> None:
    world.backend.provision("ambient")

    def fake_cp(argv: list[str]) -> None:  # what kubectl cp would leave behind
        dest = Path(argv[-1])
        dest.mkdir(parents=True)
        (dest / "hdr.7").write_text('{"ts_start": 1, "ts_end": 2}\n')

    world.rec.on("kubectl", "cp", effect=fake_cp)
    hdr_out = tmp_path / "run" / "hdr" / "r1-ambient-200rps.jsonl"
    load = world.backend.start_load(cell="r1-ambient-200rps", target_rps=200, duration_s=16,
                                    hdr_out=hdr_out, log_path=tmp_path / "run" / "locust.log",
                                    timeout_s=60)
    assert load.wait() == 0
    load.stop()
    assert [p.name for p in hdr_files(hdr_out)] == [
        "r1-ambient-200rps.jsonl.0000000007", "r1-ambient-200rps.jsonl.0010000007"]
    workers = world.rec.ran("exec", "client-1", "locust")
    assert workers and "--worker" in workers[0][-1]
    master = world.rec.ran("exec", "locust-master")[0][-1]
    assert ("MB_RATE=200 MB_USERS=4 MB_PROCESSES=2 MB_ARRIVALS=uniform" in master
            and "--expect-workers 2" in master)
    assert "-u 4" in master and "--host http://svc-0.mb-bench.svc.cluster.local:80" in master
    assert not world.rec.ran("kill", "-TERM")  # it finished: nothing to kill in the pods


def test_in_cluster_load_timeout_kills_locust_in_the_pods(world: World, tmp_path: Path) -> None:
    world.backend.provision("baseline")
    world.rec.on("kubectl", "exec", "locust-master", exits_with=None)
    load = world.backend.start_load(cell="c", target_rps=100, duration_s=5,
                                    hdr_out=tmp_path / "h" / "c.jsonl",
                                    log_path=tmp_path / "l.log", timeout_s=1)
    with pytest.raises(InClusterLoadError, match="did not finish"):
        load.wait()
    assert len(world.rec.ran("exec", "sh", "-c", "kill -TERM -1 2>/dev/null; true")) == 3


def test_delete_clusters_only_touches_harness_clusters() -> None:
    rec = CommandRecorder()
    rec.on("kind", "get", "clusters", stdout="dev\nmb-kind\nmb-old\nprod\n")
    assert delete_clusters(rec) == ["kind cluster mb-kind", "kind cluster mb-old"]
    deleted = [c[-1] for c in rec.ran("kind", "delete", "cluster")]
    assert deleted == ["mb-kind", "mb-old"]


def test_cluster_name_must_carry_the_prefix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MB_KIND_CLUSTER", "dev")
    with pytest.raises(PrerequisiteError, match="must start with 'mb-'"):
        KindBackend(SCENARIO, run_id="r1", commands=CommandRecorder())


def test_teardown_all_removes_every_run_namespace_and_nothing_else(world: World) -> None:
    world.backend.provision("baseline")
    k = world.kube
    k.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {
        "name": "mb-old", "labels": {"app.kubernetes.io/managed-by": "meshbench",
                                     "meshbench.io/run-id": "r0"}}})
    k.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {
        "name": "team-a", "labels": {"app.kubernetes.io/managed-by": "meshbench"}}})
    k.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "mb-someone"}})
    assert delete_all_runs(k, world.clock) == ["namespace mb-bench", "namespace mb-old"]
    left = sorted(key[3] for key in k.objects if key[1] == "Namespace")
    assert left == ["mb-someone", "team-a"]


# ---- Istio 1.27's real shapes (tests/fixtures/istio/, each naming the file it follows) -------

def test_istio_version_from_a_distroless_tag() -> None:
    """The ambient profile sets global.variant: distroless (manifests/helm-profiles/
    ambient.yaml), so istiod's tag is 1.27.3-distroless: still Istio 1.27.3."""
    from istio_shapes import items

    from bench.backends.kube import versions as v
    from bench.backends.kube.orchestrator import find_istiods, istio_state

    kube = FakeKube()
    for obj in items("istiod-ambient.json"):
        kube.put(obj)
    kube.put({"apiVersion": "apps/v1", "kind": "DaemonSet",
              "metadata": {"name": "ztunnel", "namespace": "istio-system",
                           "labels": {"app": "ztunnel"}}})
    assert istio_state(kube) == ("1.27.3", "ambient")
    (istiod,) = find_istiods(kube)
    assert (istiod.version, istiod.variant, istiod.revision) == ("1.27.3", "distroless", "default")
    assert v.image_version("docker.io/istio/pilot:1.27.3-distroless") == ("1.27.3", "distroless")
    assert v.image_version("gcr.io/istio-release/pilot:1.27.3-debug@sha256:" + "a" * 64) == \
        ("1.27.3", "debug")
    assert v.image_version("localhost:5000/pilot:1.28.0-rc.1") == ("1.28.0-rc.1", "")
    assert v.image_version("localhost:5000/pilot") == ("", "")


def test_the_fake_istiod_has_the_charts_shape() -> None:
    """The fake's istiod is the fixture's, field for field where the harness reads it."""
    from istio_shapes import items

    kube = FakeKube()
    kube.seed_istio("ambient", node_selector={"meshbench.io/node": "istiod"})
    fake = kube.get("apps/v1", "Deployment", "istiod", "istio-system")
    (real,) = items("istiod-ambient.json")
    assert fake["metadata"]["labels"] == real["metadata"]["labels"]
    assert fake["spec"]["selector"] == real["spec"]["selector"]
    fc, rc = fake["spec"]["template"]["spec"], real["spec"]["template"]["spec"]
    assert fc["containers"][0]["image"] == rc["containers"][0]["image"]
    assert fc["nodeSelector"] == rc["nodeSelector"]
    kube.remove_istio()
    kube.seed_istio("minimal", revision="1-27-3")
    fake = kube.list("apps/v1", "Deployment", "istio-system", "app=istiod")[0]
    (real,) = items("istiod-revision.json")
    assert fake["metadata"]["name"] == real["metadata"]["name"]
    assert fake["metadata"]["labels"]["istio.io/rev"] == real["metadata"]["labels"]["istio.io/rev"]
    assert fake["spec"]["selector"] == real["spec"]["selector"]
    assert fake["spec"]["template"]["spec"]["containers"][0]["image"] == \
        real["spec"]["template"]["spec"]["containers"][0]["image"]


def test_an_ambient_install_from_a_previous_run_is_reused_not_purged(world: World) -> None:
    """The distroless tag once made every ambient run uninstall Istio and then fail."""
    world.backend.provision("ambient")
    world.backend.teardown()
    world.backend.provision("waypoint")
    assert len(world.rec.ran("istioctl", "install")) == 1
    assert not world.rec.ran("istioctl", "uninstall")


def test_sidecar_mode_first_installs_the_gateway_crds_before_istio_for_l7_route(
        tmp_path: Path) -> None:
    s = scen.from_dict({"name": "t", "backend": "kind", "experiments": ["l7_route"]})
    w = make_world(tmp_path, s)
    w.backend.provision("sidecar")
    crds = w.rec.calls.index(w.rec.ran("apply", "--server-side", "-f")[0])
    install = w.rec.calls.index(w.rec.ran("istioctl", "install")[0])
    assert crds < install
    assert "standard-install.yaml" in w.rec.calls[crds][-1] and "v1.3.0" in w.rec.calls[crds][-1]
    assert w.kube.get("apiextensions.k8s.io/v1", "CustomResourceDefinition",
                      "httproutes.gateway.networking.k8s.io") is not None


def test_gateway_crds_of_another_version_are_replaced_by_the_pinned_ones(world: World) -> None:
    world.clusters.append("mb-kind")
    world.kube.seed_nodes([n["labels"] for n in kindconfig.config(SCENARIO, "mb-kind")["nodes"][1:]])
    world.kube.seed_cni("kindnet")
    world.kube.seed_gateway_crds("v1.2.1")
    dep = world.backend.provision("sidecar")
    assert len(world.rec.ran("apply", "--server-side")) == 1
    assert dep.info["manifest_versions"]["gateway_api"] == "v1.3.0"


def test_versions_cni_and_istio_are_recorded_for_the_manifest(world: World) -> None:
    from bench.backends.kube.orchestrator import merge_versions

    dep = world.backend.provision("ambient")
    found = dep.info["manifest_versions"]
    assert found == {"kubernetes": "v1.33.1", "gateway_api": "v1.3.0", "cni": "kindnet",
                     "istio": "1.27.3"}
    assert dep.info["istio"]["variant"] == "distroless"
    assert dep.info["versions"]["cni"] == "kindnet"
    assert merge_versions({"harness": "0.1.0+gabc"}, found)["istio"] == "1.27.3"
    assert merge_versions({"istio": "1.27.3"}, {"istio": "1.26.0"})["istio"] == "1.27.3 / 1.26.0"


def test_calico_cluster_applies_the_pinned_manifest_and_waits_for_it(tmp_path: Path) -> None:
    from bench.backends.kube import versions as v

    s = scen.from_dict({"name": "t", "backend": "kind", "kind": {"cni": "calico"}})
    w = make_world(tmp_path, s)
    dep = w.backend.provision("sidecar")
    create = w.rec.ran("kind", "create", "cluster")[0]
    assert "--wait" not in create  # no node is Ready before Calico runs
    config = yaml.safe_load(w.rec.stdins[w.rec.calls.index(create)])
    assert config["networking"] == {"disableDefaultCNI": True, "podSubnet": v.POD_SUBNET}
    (calico,) = [c for c in w.rec.ran("apply", "--server-side", "-f") if "calico" in c[-1]]
    assert calico[-1].endswith(f"/{v.CALICO_VERSION}/manifests/calico.yaml")
    assert dep.info["manifest_versions"]["cni"] == f"calico {v.CALICO_VERSION}"
    assert dep.info["versions"]["calico"] == v.CALICO_VERSION
    # a kindnet cluster of the same name is refused, not silently used
    w2 = make_world(tmp_path / "again", s)
    w2.clusters.append("mb-kind")
    w2.kube.seed_nodes([n["labels"] for n in kindconfig.config(s, "mb-kind")["nodes"][1:]])
    w2.kube.seed_cni("kindnet")
    with pytest.raises(ProvisionError, match="runs kindnet"):
        w2.backend.provision("baseline")


def test_in_cluster_load_cpu_is_measured_in_the_pods_or_said_missing(
        world: World, tmp_path: Path) -> None:
    """No 0.0 standing in: the workers' files carry their CPU time per interval."""
    world.backend.provision("ambient")

    def fake_cp(argv: list[str]) -> None:
        dest = Path(argv[-1])
        dest.mkdir(parents=True)
        (dest / "hdr.7").write_text(
            '{"ts_start": 100.0, "ts_end": 101.0, "pid": 7, "count": 1, "errors": 0, '
            '"hist": "", "cpu_s": 0.42}\n'
            '{"ts_start": 101.0, "ts_end": 102.0, "pid": 7, "count": 1, "errors": 0, '
            '"hist": "", "cpu_s": 0.61}\n')

    world.rec.on("kubectl", "cp", effect=fake_cp)
    load = world.backend.start_load(cell="c1", target_rps=200, duration_s=5,
                                    hdr_out=tmp_path / "r" / "hdr" / "c1.jsonl",
                                    log_path=tmp_path / "r" / "l.log", timeout_s=60)
    load.wait()
    assert load.cpu_percent_max(100.0, 102.0) == pytest.approx(61.0)
    assert load.cpu_percent_max(200.0, 210.0) is None  # nothing in that window
    assert "cpu_s" in load.cpu_missing


def test_metrics_api_rows_when_the_host_sees_no_pod_process(world: World) -> None:
    """The metrics-API path is wired: with metrics-server and an empty /proc, each window
    gets rows for the run's pods and ztunnels only (the fake's team-a pod is left out)."""
    k = world.kube
    k.metrics_served = True
    k.pod_metrics["mb-bench"] = [
        {"metadata": {"name": "client-0"}, "window": "15s", "containers": [
            {"name": "locust", "usage": {"cpu": "400m", "memory": "90Mi"}}]},
        {"metadata": {"name": "svc-0-0"}, "window": "15s", "containers": [
            {"name": "app", "usage": {"cpu": "50m", "memory": "30Mi"}}]}]
    k.pod_metrics["istio-system"] = [
        {"metadata": {"name": "ztunnel-0"}, "window": "15s", "containers": [
            {"name": "istio-proxy", "usage": {"cpu": "120m", "memory": "20Mi"}}]},
        {"metadata": {"name": "istio-ingressgateway-1"}, "window": "15s", "containers": [
            {"name": "istio-proxy", "usage": {"cpu": "5", "memory": "1Gi"}}]}]
    dep = world.backend.provision("ambient")
    assert dep.info["probes"]["metrics_api"]["used"] is True
    rows = world.backend.window_resources(Cell(1, "ambient", 200))
    cpu = {r.entity: r.value for r in rows if r.metric == "cpu_cores"}
    assert cpu["loadgen/client-0"] == pytest.approx(0.4)
    assert cpu["dataplane"] == pytest.approx(0.12)  # the ztunnel; not the ingress gateway
    assert all(r.mode == "ambient" and r.level == 200 for r in rows)


def test_cli_teardown_all_on_a_cluster_needs_a_context_and_deletes_only_ours(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from bench.backends import teardown_all
    from bench.errors import UserError

    monkeypatch.delenv("MB_CONTEXT", raising=False)
    with pytest.raises(UserError, match="needs an explicit kube context"):
        teardown_all("cluster", None)
    k = FakeKube()
    k.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {
        "name": "mb-old", "labels": {"app.kubernetes.io/managed-by": "meshbench"}}})
    k.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"}})
    assert teardown_all("cluster", "ctx-a", kube=k) == ["namespace mb-old"]
    assert sorted(key[3] for key in k.objects if key[1] == "Namespace") == ["team-a"]
