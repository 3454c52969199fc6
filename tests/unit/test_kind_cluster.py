"""The cluster backend (an existing cluster): explicit context or nothing; reads Istio as it
is; writes only labelled objects in its own mb-* namespace; teardown by label."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import scenario as scen
from bench.backends import make
from bench.backends.cluster.backend import ClusterBackend, context_from
from bench.backends.kind.backend import KindBackend
from bench.backends.kube.k8s import KubeError
from bench.errors import PrerequisiteError, ProvisionError
from tests.support.k8s_fake import CommandRecorder, FakeClock, FakeKube

SCENARIO = scen.from_dict({"name": "t", "backend": "cluster"})


def backend(tmp_path: Path, kube: FakeKube, rec: CommandRecorder | None = None,
            context: str = "prod-like") -> ClusterBackend:
    rec = rec or CommandRecorder()
    rec.on("kubectl", "exec", "client-0", "python3", stdout="1024\n")
    rec.on("kubectl", "port-forward", stdout="Forwarding from 127.0.0.1:41000 -> 15014\n",
           exits_with=None)
    (tmp_path / "proc").mkdir(exist_ok=True)
    b = ClusterBackend(SCENARIO, run_id="r1", context=context, commands=rec,
                       kube_factory=lambda ctx: kube, clock=FakeClock(), workdir=tmp_path,
                       proc_root=tmp_path / "proc", fetch=lambda url: "pilot_xds 2\n")
    b.log = lambda msg: None
    return b


def cluster_with_istio(profile: str, version: str = "1.27.3") -> FakeKube:
    kube = FakeKube()
    kube.seed_nodes([{}, {}])
    kube.seed_gateway_crds()
    kube.seed_istio(profile, version)
    kube.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"}})
    kube.proxy_texts[("mb-bench", "waypoint-5d9c7-abcde", 15090)] = "istio_requests_total 1\n"
    return kube


def test_refuses_without_an_explicit_context(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MB_CONTEXT", raising=False)
    kube = cluster_with_istio("ambient")
    b = backend(tmp_path, kube, context=context_from(SCENARIO))
    for call in (b.preflight, lambda: b.provision("ambient")):
        with pytest.raises(PrerequisiteError) as e:
            call()
        assert "needs an explicit kube context" in e.value.one_line()
        assert "MB_CONTEXT" in e.value.one_line()
    assert kube.calls == []


def test_context_comes_from_the_argument_or_mb_context(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MB_CONTEXT", "from-env")
    assert context_from(SCENARIO) == "from-env"
    assert context_from(SCENARIO, "given") == "given"


def test_context_from_the_scenario_key_unless_overridden(monkeypatch: pytest.MonkeyPatch) -> None:
    s = scen.from_dict({"name": "t", "backend": "cluster", "cluster": {"context": "staging"}})
    monkeypatch.delenv("MB_CONTEXT", raising=False)
    assert context_from(s) == "staging"
    monkeypatch.setenv("MB_CONTEXT", "from-env")  # make ... CONTEXT=from-env
    assert context_from(s) == "from-env"
    assert context_from(s, "given") == "given"


def test_scenario_refuses_cluster_keys_that_cannot_work() -> None:
    with pytest.raises(scen.ScenarioError, match="cluster.context is for backend cluster"):
        scen.from_dict({"name": "t", "backend": "kind", "cluster": {"context": "x"}})
    with pytest.raises(scen.ScenarioError, match="different nodes") as e:
        scen.from_dict({"name": "t", "backend": "cluster",
                        "topology": {"client_node": 1, "server_node": 1}})
    assert "topology.client_node" in e.value.one_line()
    with pytest.raises(scen.ScenarioError, match="unknown key"):
        scen.from_dict({"name": "t", "backend": "cluster", "cluster": {"contxt": "x"}})
    # the local backend may put both on one node (a same-node path)
    scen.from_dict({"name": "t", "topology": {"client_node": 1, "server_node": 1}})


def test_make_dispatches_on_the_scenario_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MB_CONTEXT", "ctx")
    c = make(SCENARIO, run_id="r1")
    assert isinstance(c, ClusterBackend) and c.context == "ctx"
    assert isinstance(make(scen.from_dict({"name": "t", "backend": "kind"})), KindBackend)
    from bench.backends.local.backend import LocalBackend

    assert isinstance(make(scen.from_dict({"name": "t", "backend": "local"})), LocalBackend)


@pytest.mark.parametrize("mode", scen.MODES)
def test_provision_and_teardown_write_only_our_namespace(tmp_path: Path, mode: str) -> None:
    kube, rec = cluster_with_istio("ambient"), CommandRecorder()
    before = {k for k in kube.objects if k[2] != "mb-bench"}
    b = backend(tmp_path, kube, rec)
    dep = b.provision(mode)
    writes = [c for c in kube.calls if c[0] in ("apply", "delete")]
    assert writes and all(c[2] == "mb-bench" or (c[1], c[3]) == ("Namespace", "mb-bench")
                          for c in writes), writes
    assert not rec.ran("kind") and not rec.ran("istioctl")
    assert not [c for c in rec.calls if "apply" in c or "delete" in c]  # no kubectl writes
    b.teardown()
    assert {k for k in kube.objects} == before  # exactly what was there before
    assert dep.info["istio"].get("profile") == (None if mode == "baseline" else "ambient")


def test_sidecar_on_an_ambient_profile_install_is_recorded(tmp_path: Path) -> None:
    dep = backend(tmp_path, cluster_with_istio("ambient")).provision("sidecar")
    assert dep.info["istio"]["hbone_for_sidecars"] is True
    assert any("HBONE" in n for n in dep.info["notes"])


def test_other_istio_version_is_used_and_noted(tmp_path: Path) -> None:
    dep = backend(tmp_path, cluster_with_istio("default", "1.26.2")).provision("sidecar")
    assert dep.info["istio"]["version"] == "1.26.2"
    assert dep.info["notes"][-1] == "Istio 1.26.2 on the cluster; meshbench pins 1.27.3"
    # the default profile's ingress gateway is the cluster's, not the run's: said so
    assert "istio-ingressgateway" in dep.info["notes"][0]


@pytest.mark.parametrize("mode", ["ambient", "waypoint"])
def test_ambient_modes_need_the_ambient_profile(tmp_path: Path, mode: str) -> None:
    kube = cluster_with_istio("default")
    with pytest.raises(ProvisionError, match="no ztunnel"):
        backend(tmp_path, kube).provision(mode)
    assert kube.get("v1", "Namespace", "mb-bench") is None  # nothing created


def test_no_istio_at_all_is_refused_except_for_baseline(tmp_path: Path) -> None:
    kube = FakeKube()
    kube.seed_nodes([{}, {}])
    with pytest.raises(ProvisionError, match="no istiod"):
        backend(tmp_path, kube).provision("sidecar")
    backend(tmp_path, kube).provision("baseline")


def test_preflight_reports_an_unreachable_context(tmp_path: Path) -> None:
    def unreachable(ctx: str) -> FakeKube:
        raise KubeError(f"kube context {ctx!r} cannot be loaded: not in kubeconfig",
                        hint="kubectl config get-contexts")

    rec = CommandRecorder()
    b = ClusterBackend(SCENARIO, run_id="r1", context="nope", commands=rec,
                       kube_factory=unreachable, clock=FakeClock(), workdir=tmp_path)
    with pytest.raises(PrerequisiteError, match="context nope:.*not in kubeconfig"):
        b.preflight()


def test_pods_use_anti_affinity_not_node_labels(tmp_path: Path) -> None:
    kube = cluster_with_istio("ambient")
    backend(tmp_path, kube).provision("waypoint")
    pods = [o for k, o in kube.objects.items() if k[1] == "Pod" and k[2] == "mb-bench"
            and "meshbench.io/kind" in o["metadata"]["labels"]]
    assert len(pods) == 3
    for p in pods:
        assert "nodeSelector" not in p["spec"] and "podAntiAffinity" in p["spec"]["affinity"]
    assert not [c for c in kube.calls if c[0] == "apply" and c[1] == "Node"]


def test_a_revisioned_istiod_is_found_by_label_and_used(tmp_path: Path) -> None:
    """tests/fixtures/istio/istiod-revision.json: istiod-1-27-3, istio.io/rev=1-27-3
    (istio-discovery's deployment.yaml with a revision). The port-forward targets that
    Deployment and the namespace is labelled with the revision, not istio-injection."""
    from istio_shapes import items

    kube = FakeKube()
    kube.seed_nodes([{}, {}])
    for obj in items("istiod-revision.json"):
        kube.put(obj)
    kube.put({"apiVersion": "admissionregistration.k8s.io/v1",
              "kind": "MutatingWebhookConfiguration",
              "metadata": {"name": "istio-sidecar-injector-1-27-3",
                           "labels": {"app": "sidecar-injector", "istio.io/rev": "1-27-3"}}})
    rec = CommandRecorder()
    dep = backend(tmp_path, kube, rec).provision("sidecar")
    (pf,) = rec.ran("kubectl", "port-forward")
    assert "deployment/istiod-1-27-3" in pf
    ns = kube.get("v1", "Namespace", "mb-bench")["metadata"]["labels"]
    assert ns["istio.io/rev"] == "1-27-3" and "istio-injection" not in ns
    assert dep.info["istio"]["revision"] == "1-27-3"
    assert dep.info["istio"]["deployment"] == "istiod-1-27-3"
    assert dep.info["manifest_versions"]["istio"] == "1.27.3"
    # the injector of that revision did inject (the fake follows the revision label)
    assert any(c["name"] == "istio-proxy" for c in
               kube.get("v1", "Pod", "client-0", "mb-bench")["spec"]["containers"])


def test_l7_route_on_a_cluster_without_httproute_is_refused(tmp_path: Path) -> None:
    s = scen.from_dict({"name": "t", "backend": "cluster", "experiments": ["l7_route"]})
    kube = FakeKube()
    kube.seed_nodes([{}, {}])
    kube.seed_istio("minimal")
    b = ClusterBackend(s, run_id="r1", context="c", commands=CommandRecorder(),
                       kube_factory=lambda ctx: kube, clock=FakeClock(), workdir=tmp_path)
    with pytest.raises(ProvisionError, match="HTTPRoute CRD"):
        b.provision("sidecar")
