"""Config-push experiments on kind, driven by the fake cluster and a fake istiod: the objects
each change applies, /debug/syncz parsing, waiting for ACKs, metric deltas, stragglers.
/debug/syncz is shaped as Istio 1.27.3's pilot/pkg/xds/debug.go writes it (tests/fixtures/
istio/syncz-ambient.json is a recorded-shape document): nonces per type URL under
`resources`, the top-level <type>_sent fields for CDS/LDS/RDS/EDS/ECDS only."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from istio_shapes import syncz_text

from bench.backends.kind.backend import KindBackend
from bench.backends.kube import push
from bench.experiments import run_push, to_samples
from bench.store import Cell
from tests.unit.test_kind_orchestration import SCENARIO, make_world

LDS = "type.googleapis.com/envoy.config.listener.v3.Listener"
CDS = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
ADDRESS = "type.googleapis.com/istio.workload.Address"
AUTHZ = "type.googleapis.com/istio.security.Authorization"


class FakeIstiod:
    """/metrics and /debug/syncz of an istiod that pushes to `affected` once the change's
    object exists, and sees their ACK `ack_polls` polls later (never, for `stuck`)."""

    def __init__(self, kube: object, proxies: list[str], affected: set[str],
                 stuck: frozenset[str] = frozenset(), ack_polls: int = 2) -> None:
        self.kube, self.proxies, self.affected, self.stuck = kube, proxies, affected, stuck
        self.ack_polls, self.polls_since_change = ack_polls, -1
        self.pushes = 0

    def changed(self) -> bool:
        return any(k[1] in ("AuthorizationPolicy", "HTTPRoute") or k[3] == "svc-new"
                   for k in self.kube.objects)  # type: ignore[attr-defined]

    def __call__(self, url: str) -> str:
        if url.endswith("/metrics"):
            n = len(self.affected) if self.changed() else 0
            return (f'pilot_xds_pushes{{type="lds"}} {10 + n}\n'
                    f"pilot_xds_config_size_bytes_sum {1000 + 700 * n}\n"
                    f"pilot_xds_config_size_bytes_count {5 + n}\n"
                    f"pilot_proxy_convergence_time_sum {0.5 + 0.01 * n}\n"
                    f"pilot_proxy_convergence_time_count {5 + n}\n")
        assert url.endswith("/debug/syncz"), url
        if self.changed():
            self.polls_since_change += 1
        out = []
        for p in self.proxies:
            moved = self.changed() and p in self.affected
            sent = "n2" if moved else "n1"
            acked = "n2" if moved and p not in self.stuck and \
                self.polls_since_change >= self.ack_polls else "n1"
            if p.startswith("ztunnel"):  # ztunnel: Address and Authorization, under resources only
                out.append({"proxy": p, "proxy_type": "ztunnel", "resources": {
                    ADDRESS: {"sent": sent, "acked": acked}, AUTHZ: {"sent": "z1", "acked": "z1"}}})
            else:
                out.append({"proxy": p, "proxy_type": "sidecar", "cluster_sent": "c1",
                            "cluster_acked": "c1", "listener_sent": sent, "listener_acked": acked,
                            "resources": {CDS: {"sent": "c1", "acked": "c1"},
                                          LDS: {"sent": sent, "acked": acked}}})
        return json.dumps(out)


def _world(tmp_path: Path, mode: str, **istiod: object) -> tuple[KindBackend, FakeIstiod, object]:
    w = make_world(tmp_path)
    # the run's proxies (ztunnel-0 is the fake's ztunnel pod), and two that are not the run's
    proxies = ["client-0.mb-bench", "svc-0-0.mb-bench", "ztunnel-0.istio-system",
               "istio-ingressgateway-7f9c8d-xyz12.istio-system", "reviews-v1-6c9f8.team-a"]
    fake = FakeIstiod(w.kube, proxies, **istiod)  # type: ignore[arg-type]
    w.backend.fetch = fake
    dep = w.backend.provision(mode)
    return w.backend, fake, dep


def test_experiment_objects_are_labelled_istio_objects() -> None:
    from bench.backends.kube.orchestrator import kube_mesh

    mesh = kube_mesh(SCENARIO, "sidecar")
    labels = {"meshbench.io/run-id": "r1"}
    kinds = {e: [o["kind"] for o in push.experiment_objects(mesh, e, "mb-bench", labels)]
             for e in ("new_service", "l7_route", "l4_authz")}
    assert kinds == {"new_service": ["Service"], "l7_route": ["HTTPRoute"],
                     "l4_authz": ["AuthorizationPolicy"]}
    (pol,) = push.experiment_objects(mesh, "l4_authz", "mb-bench", labels)
    assert pol["spec"]["selector"]["matchLabels"] == {"app": "svc-0"}
    assert pol["metadata"]["labels"] == labels and pol["metadata"]["namespace"] == "mb-bench"


def test_syncz_and_metric_deltas() -> None:
    # an istiod without the resources map: the top-level fields
    state = push.parse_syncz(json.dumps([{"proxy": "a.ns", "cluster_sent": "1",
                                          "cluster_acked": "1", "listener_sent": "2",
                                          "listener_acked": "1", "istio_version": "1.27"}]))
    assert state == {"a.ns": {"cluster": ("1", "1"), "listener": ("2", "1")}}
    assert push.metric_deltas({"a": 1.0, "b": 2.0}, {"a": 3.0, "b": 2.0, "c": 1.0}) == \
        {"a": 2.0, "c": 1.0}


def test_syncz_of_istio_1_27_reads_ztunnel_nonces_under_resources() -> None:
    """tests/fixtures/istio/syncz-ambient.json follows pilot/pkg/xds/debug.go (Syncz): a
    ztunnel has no top-level *_sent field; its Address and Authorization nonces are only
    in resources[typeUrl]."""
    state = push.parse_syncz(syncz_text())
    assert state["ztunnel-a.istio-system"] == {"address": ("a2", "a2"),
                                                "authorization": ("z1", "z1")}
    assert state["waypoint-5d9c7-abcde.mb-bench"]["listener"] == ("wl2", "wl1")
    assert state["client-0.mb-bench"]["route"] == ("r1", "r1")
    # only the run's proxies: not the ingress gateway, not another namespace's sidecar
    ours = {"client-0.mb-bench", "ztunnel-a.istio-system", "waypoint-5d9c7-abcde.mb-bench"}
    assert set(push.parse_syncz(syncz_text(), ours.__contains__)) == ours


def test_ambient_fan_out_counts_the_ztunnels(tmp_path: Path) -> None:
    backend, fake, dep = _world(tmp_path, "ambient", affected={"ztunnel-0.istio-system"})
    o = run_push(backend.abilities(), dep.mesh, "new_service", timeout_s=30)
    assert o.updated == ("ztunnel-0.istio-system",) and not o.stragglers


def test_push_on_kind_waits_for_every_moved_proxy_to_ack(tmp_path: Path) -> None:
    backend, fake, dep = _world(tmp_path, "sidecar",
                                affected={"client-0.mb-bench", "svc-0-0.mb-bench"})
    o = run_push(backend.abilities(), dep.mesh, "l4_authz", timeout_s=30)  # dispatches to istiod's view
    assert o.view == "istiod"
    assert set(o.updated) == {"client-0.mb-bench", "svc-0-0.mb-bench"}
    # the ingress gateway and team-a's sidecar are istiod's, not the run's
    assert set(o.proxies) == {"client-0.mb-bench", "svc-0-0.mb-bench"} and not o.stragglers
    # the push shows at the first poll and its ACK two polls later: 0.6 s after the apply
    assert all(abs(ms - 3 * 1000 * push.POLL_S) < 1e-6 for ms in o.converge_ms.values())
    assert o.bytes_total == 1400 and o.istiod["pushes"] == 2
    rows = {r.metric: r for r in to_samples(o, Cell(1, "sidecar", 0))}
    assert rows["proxies_updated"].value == 2 and rows["push_bytes_total"].value == 1400
    assert rows["proxies_updated"].labels["view"] == "istiod"
    assert rows["istiod_convergence_to_send_mean"].value == pytest.approx(10.0)
    assert backend.kube.get("security.istio.io/v1", "AuthorizationPolicy",  # type: ignore[attr-defined]
                            "deny-intruder", "mb-bench") is not None


def test_a_proxy_that_never_acks_is_a_straggler_after_the_timeout(tmp_path: Path) -> None:
    backend, fake, dep = _world(tmp_path, "ambient", affected={"ztunnel-0.istio-system",
                                                               "client-0.mb-bench"},
                                stuck=frozenset({"ztunnel-0.istio-system"}))
    o = run_push(backend.abilities(), dep.mesh, "new_service", timeout_s=5)
    assert set(o.stragglers) == {"ztunnel-0.istio-system"}
    assert o.stragglers["ztunnel-0.istio-system"] == {"address": "sent n2, acked n1"}
    assert set(o.converge_ms) == {"client-0.mb-bench"}


def test_no_istiod_means_a_clear_error(tmp_path: Path) -> None:
    from bench.errors import ProvisionError

    w = make_world(tmp_path)
    dep = w.backend.provision("sidecar")
    w.backend._istiod_port = 0
    with pytest.raises(ProvisionError, match="/debug/syncz"):
        run_push(w.backend.abilities(), dep.mesh, "l7_route", timeout_s=5)
