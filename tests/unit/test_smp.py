"""smp.json parses against the released SMP protos (v0.6.1) and the 2020 names do not.

The field list tests/data/smp_v0.6.1_fields.json was read from the .proto files of
service-mesh-performance/service-mesh-performance at tag v0.6.1 (its "commit" and "files"
keys say which); `check` below follows proto3 JSON: a message is an object whose keys are
its fields (proto names), scalars have their JSON types, an enum is one of its value names,
a map<string, string> an object of strings, google.protobuf.Timestamp an RFC 3339 string.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
from pathlib import Path
from typing import Any

import make_fixture as fx  # tests/fixtures, on sys.path via tests/conftest.py
import numpy as np
import pandas as pd
import pytest

from analysis.rundata import load_run
from analysis.smp import propagation, smp_document
from bench.store import Cell, RunStore, Sample

SPEC = json.loads((Path(__file__).resolve().parents[1] / "data" /
                   "smp_v0.6.1_fields.json").read_text())
INTS = {"int32": (-2**31, 2**31 - 1), "int64": (-2**63, 2**63 - 1)}
# smp.json's own wrapper (SMP defines no file holding the messages together)
WRAPPER = {"environment": "EnvironmentConfig", "mesh_configs": "ServiceMeshConfig",
           "test_configs": "PerformanceTestConfig", "results": "PerformanceTestResult"}


class SpecError(ValueError):
    pass


def check(value: Any, typ: str, where: str) -> None:
    """Raise SpecError when `value` is not proto3 JSON of type `typ` (a name in SPEC)."""
    if typ.startswith("repeated "):
        if not isinstance(value, list):
            raise SpecError(f"{where}: expected a list")
        for i, v in enumerate(value):
            check(v, typ.removeprefix("repeated "), f"{where}[{i}]")
        return
    if typ.startswith("map<"):
        if not isinstance(value, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
            raise SpecError(f"{where}: expected a map of strings")
        return
    if typ == "google.protobuf.Timestamp":
        if not isinstance(value, str):
            raise SpecError(f"{where}: expected an RFC 3339 string")
        dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        return
    if typ == "string":
        if not isinstance(value, str):
            raise SpecError(f"{where}: expected a string")
        return
    if typ == "bool":
        if not isinstance(value, bool):
            raise SpecError(f"{where}: expected a bool")
        return
    if typ in INTS:
        lo, hi = INTS[typ]
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise SpecError(f"{where}: expected an {typ}, got {value!r}")
        return
    if typ in ("double", "float"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SpecError(f"{where}: expected a number")
        return
    if typ in SPEC["enums"]:
        if value not in SPEC["enums"][typ]:
            raise SpecError(f"{where}: {value!r} is not a value of enum {typ}")
        return
    fields = SPEC["messages"].get(typ)
    if fields is None:
        raise SpecError(f"{where}: unknown type {typ}")
    if not isinstance(value, dict):
        raise SpecError(f"{where}: expected a {typ} object")
    for key, v in value.items():
        if key not in fields:
            raise SpecError(f"{where}: {typ} has no field {key!r}")
        check(v, fields[key], f"{where}.{key}")


def check_document(doc: dict[str, Any]) -> None:
    for key, typ in WRAPPER.items():
        value = doc[key]
        for i, msg in enumerate(value if isinstance(value, list) else [value]):
            check(msg, typ, f"{key}[{i}]")


# per experiment and repetition: (change -> first send, each proxy's first send -> ACK), ms
PUSHES = {"new_service": lambda rep: (110.0 + 2 * rep, (5.0, 12.0 + rep)),
          "l4_authz": lambda rep: (105.0 + rep, (2.0, 7.0 + rep))}
ISTIO_MODELLED = "1.27.3"


def _push_samples(cell: Cell, experiment: str, to_send: float, acks: tuple[float, ...],
                  updated: int | None = None, view: str = "control-plane") -> list[Sample]:
    """The "xds" rows bench/experiments.py writes for one change: totals, per-proxy
    change -> ACK ("convergence"), and, in the control plane's view, the send times and the
    100 ms debounce (istiod's view has neither)."""
    lab = {"experiment": experiment, "view": view}
    conv = [to_send + a for a in acks]
    n = len(acks) if updated is None else updated
    metrics = [("proxies_total", "count", float(n)), ("proxies_updated", "count", float(n)),
               ("convergence_p50", "ms", float(np.median(conv))),
               ("convergence_max", "ms", max(conv))]
    if view == "control-plane":
        metrics += [("send_to_last_ack", "ms", max(acks)), ("debounce_time", "ms", 100.0)]
    rows = [Sample.for_cell(cell, source="xds", metric=m, unit=u, value=v, entity="mesh",
                            labels=lab) for m, u, v in metrics]
    rows += [Sample.for_cell(cell, source="xds", metric="convergence", unit="ms", value=c,
                             entity=f"sidecar-{i}", labels=lab) for i, c in enumerate(conv)]
    return rows


def _push_rows(run_dir: Path) -> None:
    """Push experiments of the sidecar mode (PUSHES): 2 of 2 proxies; the local backend
    records the Istio release its control plane models."""
    manifest = json.loads((run_dir / "manifest.json").read_text())
    manifest["istio_fidelity"] = {"istio_version_modelled": ISTIO_MODELLED}
    store = RunStore(run_dir, manifest)
    store.save_manifest()
    samples = []
    for rep in (0, 1, 2):
        for experiment, push in PUSHES.items():
            to_send, acks = push(rep)
            samples += _push_samples(Cell(rep, "sidecar", 0), experiment, to_send, acks)
    store.append(samples)


@pytest.fixture(scope="module")
def doc(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    run_dir = fx.make_run(tmp_path_factory.mktemp("smp"), finalize=False)
    _push_rows(run_dir)
    return smp_document(load_run(run_dir))


def test_the_field_list_is_the_released_spec() -> None:
    assert SPEC["tag"] == "v0.6.1" and len(SPEC["commit"]) == 40
    assert "nodes" in SPEC["messages"]["EnvironmentConfig"]
    assert SPEC["messages"]["PerformanceTestResult"]["actual_qps"] == "double"
    assert "ISTIO" in SPEC["enums"]["ServiceMesh.Type"]


def test_the_export_parses_against_v0_6_1(doc: dict[str, Any]) -> None:
    check_document(doc)
    assert doc["smp_version"] == "v0.6.1"


def test_the_export_uses_the_released_names_and_fields(doc: dict[str, Any]) -> None:
    env = doc["environment"]
    assert env["nodes"] == [{"type": fx.CPU_MODEL, "cores": 2}]
    workloads = {w["name"]: w for w in env["individual_workloads"]}
    # the fixture's per-role cost at 1000 rps: sidecar 0.05 cores per 100 rps over 2
    # processes, PSS 40 MiB; the role rows carry no process count
    assert workloads["sidecar/sidecar"]["cpu_mcores"] == pytest.approx(500, abs=5)
    assert workloads["sidecar/sidecar"]["mem_mb"] == round(40 * 1.048576)
    assert {"ambient/ztunnel", "waypoint/waypoint", "waypoint/ztunnel"} <= set(workloads)
    meshes = {m["labels"]["meshbench.mode"]: m for m in doc["mesh_configs"]}
    assert meshes["ambient"]["mesh_type"] == {"type": "ISTIO", "version": ISTIO_MODELLED}
    assert "mesh_control_plane" not in meshes["ambient"]
    client = doc["test_configs"][0]["clients"][0]
    assert client["protocol"] == "PROTOCOL_HTTP"
    result = doc["results"][0]
    assert {"actual_qps", "test_id", "mesh_config_id", "env_id"} <= set(result)
    assert result["labels"]["meshbench.latency_source"] == "load"


def test_the_local_backend_says_which_istio_it_emulates(doc: dict[str, Any]) -> None:
    """mesh_type.version is the Istio release (not mesh_build); the local backend, which
    installs no Istio, names the profile the kube backends install for the mode and says
    that both are emulated."""
    meshes = {m["labels"]["meshbench.mode"]: m for m in doc["mesh_configs"]}
    assert "mesh_type" not in meshes["baseline"] and "profile" not in meshes["baseline"]
    for mode, profile in (("sidecar", "minimal"), ("ambient", "ambient"),
                          ("waypoint", "ambient")):
        m = meshes[mode]
        assert m["mesh_type"]["version"] == ISTIO_MODELLED
        assert m["profile"] == profile
        assert m["labels"]["meshbench.profile"].startswith("emulated:")
        assert m["labels"]["meshbench.mesh_version"].startswith("emulated:")
        assert m["mesh_build"].startswith("meshbench control plane")  # the build, apart


def test_lds_and_cds_are_send_to_ack_without_the_debounce(doc: dict[str, Any]) -> None:
    """SMP's lds/cds_latency_ms: first send -> the ACK bringing the change to 90 % of the
    proxies, median of the repetitions; the debounce and change -> ACK shown apart."""
    meshes = {m["labels"]["meshbench.mode"]: m for m in doc["mesh_configs"]}
    control = meshes["sidecar"]["mesh_control_plane"]
    # 2 proxies: the 90 % proxy is the 2nd; send -> ACK 12+rep (cds) and 7+rep (lds)
    assert control == {"count": 1, "sidecars": 2, "lds_latency_ms": 8, "cds_latency_ms": 13}
    labels = meshes["sidecar"]["labels"]
    assert "send -> ACK; debounce and config generation excluded" in labels[
        "meshbench.cds_latency_ms"]
    assert labels["meshbench.cds_debounce_ms"] == labels["meshbench.lds_debounce_ms"] == "100.0"
    # change -> that ACK: (110 + 2 rep) + (12 + rep) and (105 + rep) + (7 + rep), medians
    assert labels["meshbench.cds_change_to_ack_ms"] == "125.0"
    assert labels["meshbench.lds_change_to_ack_ms"] == "114.0"


def _xds_frame(samples: list[Sample]) -> tuple[pd.DataFrame, pd.Series]:
    rows = pd.DataFrame([{"repetition": s.repetition, "metric": s.metric, "value": s.value}
                         for s in samples])
    return rows, pd.Series([(s.labels or {})["experiment"] for s in samples], index=rows.index)


def test_propagation_takes_the_90_percent_proxy_not_the_last() -> None:
    # 10 proxies ACK 1..10 ms after the first send, 100 ms after the change; then a
    # straggler at 60 ms: the 9th ACK is the 90 % figure
    acks = (*range(1, 10), 60)
    rows, exp = _xds_frame(_push_samples(Cell(0, "sidecar", 0), "l4_authz", 100.0,
                                         tuple(float(a) for a in acks)))
    prop = propagation(rows, exp, "l4_authz")
    assert prop.send_to_ack == [9.0] and prop.change_to_ack == [109.0]
    assert prop.debounce == [100.0] and prop.not_reached == 0


def test_propagation_not_reached_and_without_send_times() -> None:
    """Fewer than 90 % of the proxies ACKed (8 of 10), or istiod's view (no send time):
    no figure, counted."""
    samples = _push_samples(Cell(0, "sidecar", 0), "new_service", 100.0,
                            tuple(float(a) for a in range(1, 9)), updated=10)
    samples += _push_samples(Cell(1, "sidecar", 0), "new_service", 100.0, (3.0, 4.0),
                             view="istiod")
    rows, exp = _xds_frame(samples)
    prop = propagation(rows, exp, "new_service")
    assert prop.send_to_ack == [] and (prop.not_reached, prop.no_send_time) == (1, 1)


def test_istiod_view_leaves_the_latency_out_and_says_why(tmp_path: Path) -> None:
    run_dir = fx.make_run(tmp_path, finalize=False)
    store = RunStore(run_dir, json.loads((run_dir / "manifest.json").read_text()))
    store.append([s for rep in (0, 1) for s in _push_samples(
        Cell(rep, "sidecar", 0), "new_service", 100.0, (3.0, 4.0), view="istiod")])
    doc = smp_document(load_run(run_dir))
    check_document(doc)
    sidecar = next(m for m in doc["mesh_configs"] if m["labels"]["meshbench.mode"] == "sidecar")
    assert "cds_latency_ms" not in sidecar["mesh_control_plane"]
    assert sidecar["labels"]["meshbench.cds_latency_ms"].endswith(
        "not measured: repetitions 2 without a send time (istiod's view)")


def test_kube_backends_report_the_istio_they_found(tmp_path: Path) -> None:
    """mesh_type.version, mesh_build and profile from what each deployment found."""
    found = {"r0-sidecar": {"istio": {"version": "1.27.3", "profile": "minimal",
                                      "image": "docker.io/istio/pilot:1.27.3"}},
             "r0-ambient": {"istio": {"version": "1.27.3", "profile": "ambient",
                                      "image": "docker.io/istio/pilot:1.27.3-distroless"}},
             "r1-ambient": {"istio": {"version": "1.27.3", "profile": "ambient",
                                      "image": "docker.io/istio/pilot:1.27.3-distroless"}}}
    run_dir = fx.make_series_run(tmp_path, modes=("baseline", "sidecar", "ambient"),
                                 manifest_updates={"backend": "kind", "emulated": False,
                                                   "simplifications": [],
                                                   "versions": {"istio": "1.27.3"},
                                                   "deployment_info": found})
    doc = smp_document(load_run(run_dir))
    check_document(doc)
    meshes = {m["labels"]["meshbench.mode"]: m for m in doc["mesh_configs"]}
    assert meshes["sidecar"]["mesh_type"] == {"type": "ISTIO", "version": "1.27.3"}
    assert meshes["sidecar"]["profile"] == "minimal"  # found installed, not guessed
    assert meshes["ambient"]["profile"] == "ambient"
    assert meshes["ambient"]["mesh_build"] == "docker.io/istio/pilot:1.27.3-distroless"
    assert "emulated" not in meshes["ambient"]["labels"]["meshbench.profile"]


@pytest.mark.parametrize(("path", "old_key", "old_value"), [
    (("environment",), "node", [{"type": "x", "cores": 2}]),
    (("results", 0), "actual_QPS", 99.0),
    (("results", 0), "testId", "x"),
    (("mesh_configs", 1, "sidecar"), "cpu_mCores", 1000),
])
def test_the_2020_names_are_rejected(doc: dict[str, Any], path: tuple, old_key: str,
                                     old_value: Any) -> None:
    bad = copy.deepcopy(doc)
    target: Any = bad
    for p in path:
        target = target[p]
    target[old_key] = old_value
    with pytest.raises(SpecError, match=f"no field '{old_key}'"):
        check_document(bad)


def test_lower_case_enum_values_are_rejected(doc: dict[str, Any]) -> None:
    bad = copy.deepcopy(doc)
    bad["mesh_configs"][1]["mesh_type"] = {"type": "istio"}
    with pytest.raises(SpecError, match="'istio' is not a value of enum ServiceMesh.Type"):
        check_document(bad)
    bad = copy.deepcopy(doc)
    bad["test_configs"][0]["clients"][0]["protocol"] = "http"
    with pytest.raises(SpecError, match="not a value of enum"):
        check_document(bad)


def test_an_int32_field_refuses_a_fraction(doc: dict[str, Any]) -> None:
    bad = copy.deepcopy(doc)
    bad["environment"]["individual_workloads"][0]["cpu_mcores"] = 12.5
    with pytest.raises(SpecError, match="expected an int32"):
        check_document(bad)
