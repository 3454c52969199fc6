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
import pytest

from analysis.rundata import load_run
from analysis.smp import smp_document
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


def _push_rows(run_dir: Path) -> None:
    """Push experiments of the sidecar mode: 2 of 2 proxies, last ACK 40-44 ms (new
    service) and 30-33 ms (authorization policy)."""
    store = RunStore(run_dir, json.loads((run_dir / "manifest.json").read_text()))
    samples = []
    for rep in (0, 1, 2):
        for experiment, last_ack in (("new_service", 40 + 2 * rep), ("l4_authz", 30 + rep)):
            lab = {"experiment": experiment, "view": "control-plane"}
            cell = Cell(rep, "sidecar", 0)
            samples += [Sample.for_cell(cell, source="xds", metric=m, unit=u, value=v,
                                        entity="mesh", labels=lab)
                        for m, u, v in (("proxies_total", "count", 2.0),
                                        ("proxies_updated", "count", 2.0),
                                        ("convergence_max", "ms", float(last_ack)))]
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
    assert meshes["ambient"]["mesh_type"] == {"type": "ISTIO"}
    control = meshes["sidecar"]["mesh_control_plane"]
    assert control == {"count": 1, "sidecars": 2, "lds_latency_ms": 31, "cds_latency_ms": 42}
    assert "upper bound of SMP's 90 % figure" in meshes["sidecar"]["labels"][
        "meshbench.cds_latency_ms"]
    assert "mesh_control_plane" not in meshes["ambient"]
    client = doc["test_configs"][0]["clients"][0]
    assert client["protocol"] == "PROTOCOL_HTTP"
    result = doc["results"][0]
    assert {"actual_qps", "test_id", "mesh_config_id", "env_id"} <= set(result)
    assert result["labels"]["meshbench.latency_source"] == "load"


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
