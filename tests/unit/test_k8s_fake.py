"""The Kubernetes wrapper's waits and deletes, against its in-memory fake; and the fakes'
own behaviour (fault injection, selectors, command recording) that other tests rely on."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bench.backends.kube.k8s import (
    KubeError,
    WaitSpec,
    WaitTimeout,
    delete_by_label,
    kubectl,
    selector,
    wait_for,
)
from tests.support.k8s_fake import CommandRecorder, FakeClock, FakeKube, matches

REPO = Path(__file__).resolve().parents[2]


def pod(name: str, ns: str = "mb-x", **labels: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": ns, "labels": labels},
            "spec": {"containers": [{"name": "app", "image": "x"}]}}


def ns(name: str, **labels: str) -> dict:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}


def test_only_bench_k8s_imports_the_kubernetes_library() -> None:
    pattern = re.compile(r"^\s*(import kubernetes\b|from kubernetes\b)", re.MULTILINE)
    importers = [p.relative_to(REPO).as_posix() for p in (REPO / "bench").rglob("*.py")
                 if pattern.search(p.read_text())]
    assert importers == ["bench/backends/kube/k8s.py"]


@pytest.mark.parametrize("sel,ok", [
    ("", True), ("a=1", True), ("a==1", True), ("a=2", False), ("a!=2", True), ("a!=1", False),
    ("b", True), ("!b", False), ("c", False), ("!c", True), ("a=1,b=2", True), ("a=1,b=3", False),
])
def test_selector_terms(sel: str, ok: bool) -> None:
    assert matches({"a": "1", "b": "2"}, sel) is ok


def test_selector_is_sorted_for_stable_plans() -> None:
    assert selector({"b": "2", "a": "1"}) == "a=1,b=2"


def test_apply_get_list_and_status_of_a_healthy_cluster() -> None:
    kube = FakeKube()
    kube.apply(ns("mb-x"))
    kube.apply(pod("p1", app="a"))
    kube.apply(pod("p2", app="b"))
    assert kube.get("v1", "Pod", "p1", "mb-x")["status"]["phase"] == "Running"
    assert kube.get("v1", "Pod", "nope", "mb-x") is None
    assert [p["metadata"]["name"] for p in kube.list("v1", "Pod", "mb-x", "app=b")] == ["p2"]
    assert len(kube.list("v1", "Pod")) == 2  # all namespaces
    uid = kube.get("v1", "Pod", "p1", "mb-x")["metadata"]["uid"]
    kube.apply(pod("p1", app="a2"))  # re-apply keeps the identity, changes the labels
    again = kube.get("v1", "Pod", "p1", "mb-x")
    assert again["metadata"]["uid"] == uid and again["metadata"]["labels"] == {"app": "a2"}


def test_wait_polls_until_ready_without_real_sleep() -> None:
    kube, clock = FakeKube(), FakeClock()
    kube.ready_after_reads = 3
    kube.apply(pod("p1"))
    wait_for(kube, WaitSpec("v1", "Pod", "ready", "mb-x", name="p1", timeout_s=30), clock)
    assert clock.now == 3.0  # three not-ready reads, one second apart


def test_wait_times_out_naming_the_object_and_its_state() -> None:
    kube, clock = FakeKube(), FakeClock()
    kube.apply(pod("p1", run="r"))
    kube.apply(pod("stuck", run="r"))
    kube.never_ready.add(("Pod", "stuck"))
    with pytest.raises(WaitTimeout) as e:
        wait_for(kube, WaitSpec("v1", "Pod", "ready", "mb-x", selector="run=r", count=2,
                                timeout_s=20), clock)
    msg = e.value.one_line()
    assert "mb-x/stuck" in msg and "Pending" in msg and "20 s" in msg
    assert 20.0 <= clock.now <= 21.0


def test_wait_counts_objects_that_do_not_exist_yet() -> None:
    kube, clock = FakeKube(), FakeClock()
    kube.apply(pod("p1", run="r"))
    with pytest.raises(WaitTimeout, match="1 of 2 exist"):
        wait_for(kube, WaitSpec("v1", "Pod", "ready", "mb-x", selector="run=r", count=2,
                                timeout_s=5), clock)


def test_api_error_on_the_nth_call() -> None:
    kube = FakeKube()
    kube.fail_call(2, status=503)
    kube.apply(ns("mb-x"))
    with pytest.raises(KubeError) as e:
        kube.list("v1", "Pod")
    assert e.value.status == 503 and "call 2" in e.value.message
    assert kube.list("v1", "Pod") == []  # only that call fails


def test_delete_by_label_cascades_and_wait_gone() -> None:
    kube, clock = FakeKube(), FakeClock()
    kube.delete_after_reads = 2
    kube.apply(ns("mb-x", run="r"))
    kube.apply(ns("other", run="r"))  # the prefix guard spares it
    kube.apply(pod("p1"))
    assert delete_by_label(kube, "v1", "Namespace", "run=r", name_prefix="mb-") == ["mb-x"]
    assert kube.get("v1", "Namespace", "mb-x")["status"]["phase"] == "Terminating"
    wait_for(kube, WaitSpec("v1", "Namespace", "gone", name="mb-x", timeout_s=60), clock)
    assert clock.now == 1.0  # seen terminating twice (once above), then gone
    assert kube.get("v1", "Pod", "p1", "mb-x") is None  # went with its namespace
    assert kube.get("v1", "Namespace", "other") is not None
    assert not kube.delete("v1", "Namespace", "mb-x")  # already gone: False, no error


def test_stuck_deletion_times_out() -> None:
    kube, clock = FakeKube(), FakeClock()
    kube.apply(ns("mb-x", run="r"))
    kube.stuck.add(("Namespace", "mb-x"))
    delete_by_label(kube, "v1", "Namespace", "run=r")
    with pytest.raises(WaitTimeout, match="gone: not after 10 s.*mb-x"):
        wait_for(kube, WaitSpec("v1", "Namespace", "gone", selector="run=r", timeout_s=10), clock)


def test_delete_by_label_refuses_an_empty_selector() -> None:
    with pytest.raises(ValueError):
        delete_by_label(FakeKube(), "v1", "Namespace", "")


def test_waitspec_rejects_unknown_conditions_and_ambiguous_targets() -> None:
    with pytest.raises(ValueError):
        WaitSpec("v1", "Pod", "happy", name="p")
    with pytest.raises(ValueError):
        WaitSpec("v1", "Pod", "ready", name="p", selector="a=b")


def test_metrics_api_absent_unless_served() -> None:
    kube = FakeKube()
    with pytest.raises(KubeError) as e:
        kube.list("metrics.k8s.io/v1beta1", "PodMetrics", "x")
    assert e.value.status == 404
    kube.metrics_served = True
    assert kube.list("metrics.k8s.io/v1beta1", "PodMetrics", "x") == []


def test_istio_simulation_injects_only_when_istio_exists() -> None:
    kube = FakeKube()
    kube.apply(ns("mb-x", **{"istio-injection": "enabled"}))
    kube.apply(pod("before"))
    kube.seed_istio("default")
    kube.apply(pod("after"))
    names = lambda p: [c["name"] for c in kube.get("v1", "Pod", p, "mb-x")["spec"]["containers"]]
    assert names("before") == ["app"] and names("after") == ["app", "istio-proxy"]


def test_command_recorder_matches_tokens_in_order_latest_rule_wins() -> None:
    rec = CommandRecorder()
    rec.on("kubectl", "exec", stdout="first")
    rec.on("kubectl", "exec", "client-0", stdout="second", returncode=3)
    r = rec.run(kubectl("ctx", "exec", "client-0", "--", "true", namespace="ns"))
    assert (r.returncode, r.stdout) == (3, "second")
    assert rec.run(kubectl("ctx", "exec", "other")).stdout == "first"
    assert rec.run(["kind", "version"]).ok  # unmatched: succeeds, empty
    assert len(rec.ran("kubectl", "exec")) == 2
    assert rec.which("istioctl") == "/usr/bin/istioctl" and rec.which("helm") is None


def test_kubectl_always_names_the_context() -> None:
    assert kubectl("kind-mb-kind", "get", "pods", namespace="mb-bench") == [
        "kubectl", "--context", "kind-mb-kind", "-n", "mb-bench", "get", "pods"]
