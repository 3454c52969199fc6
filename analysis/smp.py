"""Headline numbers per mode and load level in the Service Mesh Performance (SMP) format.

Spec: service-mesh-performance/service-mesh-performance, tag v0.6.1 (commit 25a6a96),
protos/service_mesh_performance.proto, service_mesh.proto and metadata.proto (package
`smp`); releases v0.3.0 to v0.6.1 share these names. Their field list is shipped as
tests/data/smp_v0.6.1_fields.json, against which the tests parse this export. Messages and
fields used, in proto3 JSON with the proto's own field names (which protobuf's JSON parser
accepts) and enum values by name:

  EnvironmentConfig      smp_version, id, labels, kubernetes_version,
                         nodes[{type, cores, mem_mb}],
                         individual_workloads[{name, count, cpu_mcores, mem_mb}]
                           (per mode and proxy role, under load at the highest level, as `sidecar`)
  ServiceMeshConfig      smp_version, id, labels, mesh_type{type: ISTIO}, mesh_build,
                         proxy_build, mtls_enabled, proxy_concurrency, profile,
                         sidecar{count, cpu_mcores, mem_mb, rps}  (sidecar mode only),
                         mesh_control_plane{count, sidecars, lds_latency_ms,
                           cds_latency_ms}  (where the run measured config pushes)
  PerformanceTestConfig  smp_version, id, name, labels, duration,
                         clients[{internal, load_generator, protocol: PROTOCOL_HTTP |
                           PROTOCOL_GRPC, connections, rps}]
  PerformanceTestResult  smp_version, id, labels, start_time, end_time, actual_qps,
                         latencies_ms{min, average, p50, p90, p99, max}, details_uri,
                         test_id, mesh_config_id, env_id

Names of a superseded 2020 commit of the protos (`node`, `cpu_mCores`, `actual_QPS`,
lower-case enum values) are not used: they do not parse against any release.

SMP has no ambient type and no "no mesh" config: every message carries the mode in
labels["meshbench.mode"]; mesh_type is ISTIO for sidecar, ambient and waypoint and absent
for baseline. SMP's `sidecar` block means "all sidecars", so only sidecar mode fills it;
every result also carries the data plane's total (whatever its proxies are) in labels
(meshbench.dataplane_cpu_mcores, meshbench.dataplane_mem_mb, meshbench.dataplane_memory).
`mesh_control_plane`: sidecars = the proxies the control plane served in sidecar mode;
lds_latency_ms / cds_latency_ms (SMP: time for a listener / cluster change to reach 90 %
of the proxies) are filled in sidecar mode only, from the l4_authz (an authorization
policy: a listener change) and new_service (a new cluster) experiments, with the LAST
proxy's ACK (convergence_max, an upper bound of SMP's 90 % figure), median across
repetitions; labels say so. SMP defines no file that holds these messages together:
smp.json is one object with "environment", "mesh_configs", "test_configs" and "results".

Numbers are medians across repetitions (labels["meshbench.statistic"]), like the report:
p50/p90/p99/average are the medians of each repetition's value; min is the smallest and
max the largest over the repetitions' windows (min read from the per-second HDR files, as
the tidy table has none; absent, with a label saying so, when no HDR file is left).
Latency is read through `Run.latency` (labels["meshbench.latency_source"]). Memory is PSS
when read, else RSS, converted from MiB to MB (SMP's unit).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.resources import DATAPLANE
from analysis.rundata import UNDER_LOAD, Run
from analysis.stats import cell_values

SMP_VERSION = "v0.6.1"  # the release whose protos this export follows
MESH_MODES = ("sidecar", "ambient", "waypoint")
MIB_TO_MB = 1.048576
LATENCY = (("p50", "latency_p50"), ("p90", "latency_p90"), ("p99", "latency_p99"),
           ("average", "latency_mean"))


def _rfc3339(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def hdr_minimum_us(run: Run) -> dict[tuple[str, int], float]:
    """Smallest latency (µs) per (mode, level) over the ok cells' measurement windows,
    from the per-second HDR files (same window rule as the runner: an interval counts
    when its midpoint lies in the window)."""
    from bench.load import hdr

    out: dict[tuple[str, int], float] = {}
    for c in run.counted_cells():
        window = c.get("window") or {}
        if "start" not in window or not c.get("cell"):
            continue
        files = hdr.hdr_files(run.run_dir / c.get("hdr", f"hdr/{c['cell']}.jsonl"))
        if not files:
            continue
        hist, count, _, _ = hdr.merge(hdr.read_intervals(files), window["start"], window["end"])
        if not count:
            continue
        key = (str(c["mode"]), int(c["level"]))
        low = float(hist.get_min_value())
        out[key] = min(out.get(key, low), low)
    return out


def _windows(run: Run) -> dict[tuple[str, int], tuple[float, float]]:
    out: dict[tuple[str, int], tuple[float, float]] = {}
    for c in run.counted_cells():
        w = c.get("window") or {}
        if "start" not in w:
            continue
        key = (str(c["mode"]), int(c["level"]))
        lo, hi = out.get(key, (w["start"], w["end"]))
        out[key] = (min(lo, w["start"]), max(hi, w["end"]))
    return out


def _median(values: np.ndarray) -> float | None:
    return float(np.median(values)) if values.size else None


def _per_cell(run: Run, metric: str) -> dict[tuple[str, int], np.ndarray]:
    """Per (mode, level) the repetitions' values: latency_* from `run.latency`, anything
    else (achieved_rps) from the load generator's rows."""
    rows = run.latency if metric.startswith("latency_") else run.client
    values = cell_values(rows, metric)
    return {(str(m), int(lv)): g["value"].to_numpy(dtype=float)
            for (m, lv), g in values.groupby(["mode", "level"])}


def _dataplane(run: Run) -> dict[tuple[str, int], dict[str, Any]]:
    """Median data-plane cores and memory per (mode, level) under load, and proxy count."""
    res = run.resources
    rows = res[(res["phase"] == UNDER_LOAD) & (res["entity"] == DATAPLANE)]
    out: dict[tuple[str, int], dict[str, Any]] = {}
    if rows.empty:
        return out
    entities = run.label("entities").loc[rows.index]
    for (mode, level), g in rows.groupby(["mode", "level"]):
        d: dict[str, Any] = {}
        cpu = g[g["metric"] == "cpu_cores"]["value"]
        if not cpu.empty:
            d["cpu_cores"] = float(cpu.median())
        for metric in ("pss_mib", "rss_mib"):
            mem = g[g["metric"] == metric]["value"]
            if not mem.empty:
                d["mem_mib"], d["memory"] = float(mem.median()), metric.removesuffix("_mib")
                break
        count = entities.loc[g.index].dropna()
        if not count.empty:
            d["count"] = int(count.iloc[0])
        out[(str(mode), int(level))] = d
    return out


def individual_workloads(run: Run, level: int | None) -> list[dict[str, Any]]:
    """Per mode and proxy role ("<mode>/<role>"), under load at `level`: process count,
    median cores (as mCores) and memory (PSS when read, else RSS) across repetitions."""
    res = run.resources
    if level is None or res.empty:
        return []
    rows = res[(res["phase"] == UNDER_LOAD) & (res["level"] == level)
               & res["entity"].str.startswith("role:")]
    entities = run.label("entities").loc[rows.index]
    out = []
    for (mode, entity), g in rows.groupby(["mode", "entity"], sort=False):
        w: dict[str, Any] = {"name": f"{mode}/{str(entity).removeprefix('role:')}"}
        count = pd.to_numeric(entities.loc[g.index], errors="coerce").dropna()
        if not count.empty:
            w["count"] = int(count.median())
        cpu = g[g["metric"] == "cpu_cores"]["value"]
        if not cpu.empty:
            w["cpu_mcores"] = round(1000 * float(cpu.median()))
        for metric in ("pss_mib", "rss_mib"):
            mem = g[g["metric"] == metric]["value"]
            if not mem.empty:
                w["mem_mb"] = round(float(mem.median()) * MIB_TO_MB)
                break
        out.append(w)
    return out


def environment(run: Run, level: int | None = None) -> dict[str, Any]:
    host = run.manifest.get("host") or {}
    versions = run.manifest.get("versions") or {}
    node: dict[str, Any] = {"type": str(host.get("cpu_model") or "not recorded")}
    if host.get("cores"):
        node["cores"] = int(host["cores"])
    if host.get("mem_gib"):
        node["mem_mb"] = round(float(host["mem_gib"]) * 1024 * MIB_TO_MB)
    labels = {"meshbench.backend": run.backend,
              "meshbench.kernel": str(host.get("kernel", "not recorded")),
              "meshbench.note": ("one host; nodes are network namespaces"
                                 if run.backend == "local" else "")}
    env: dict[str, Any] = {"smp_version": SMP_VERSION, "id": f"{run.run_id}/env",
                           "labels": labels, "nodes": [node]}
    k8s = versions.get("kubernetes") or versions.get("kubernetes_server")
    if k8s:
        env["kubernetes_version"] = str(k8s)
    workloads = individual_workloads(run, level)
    if workloads:
        env["individual_workloads"] = workloads
        labels["meshbench.individual_workloads"] = (
            f"<mode>/<role> under load at {level} rps: median across repetitions; memory "
            "PSS when read, else RSS")
    return env


def mesh_config(run: Run, mode: str, dataplane: dict[tuple[str, int], dict[str, Any]],
                level: int | None) -> dict[str, Any]:
    versions = run.manifest.get("versions") or {}
    proxy = (run.scenario.get("proxy") or {})
    cfg: dict[str, Any] = {
        "smp_version": SMP_VERSION, "id": f"{run.run_id}/mesh/{mode}",
        "labels": {"meshbench.mode": mode, "meshbench.backend": run.backend},
        "mtls_enabled": mode in MESH_MODES,
    }
    if mode in MESH_MODES:
        cfg["mesh_type"] = {"type": "ISTIO"}
        istio = versions.get("istio")
        cfg["mesh_build"] = (str(istio) if istio else
                             f"meshbench {run.backend} backend (Envoy in network namespaces)")
        if versions.get("envoy"):
            cfg["proxy_build"] = str(versions["envoy"])
        if run.backend != "local":  # the istioctl profile the kube backends install
            cfg["profile"] = "ambient" if mode != "sidecar" else "default"
        if proxy.get("concurrency"):
            cfg["proxy_concurrency"] = int(proxy["concurrency"])
    control = mesh_control_plane(run, mode)
    if control:
        cfg["mesh_control_plane"], notes = control
        cfg["labels"].update(notes)
    d = dataplane.get((mode, level)) if level is not None else None
    if mode == "sidecar" and d:
        sidecar: dict[str, Any] = {"rps": int(level or 0)}
        if "count" in d:
            sidecar["count"] = d["count"]
        if "cpu_cores" in d:
            sidecar["cpu_mcores"] = round(1000 * d["cpu_cores"])
        if "mem_mib" in d:
            sidecar["mem_mb"] = round(d["mem_mib"] * MIB_TO_MB)
        cfg["sidecar"] = sidecar
        cfg["labels"]["meshbench.sidecar_at_rps"] = str(level)
    return cfg


# SMP's latency fields and the experiment whose change they describe (sidecar mode)
PUSH_LATENCY = (("lds_latency_ms", "l4_authz", "a listener change (AuthorizationPolicy)"),
                ("cds_latency_ms", "new_service", "a cluster change (new service)"))


def mesh_control_plane(run: Run, mode: str) -> tuple[dict[str, Any], dict[str, str]] | None:
    """SMP's MeshControlPlane from the run's push experiments, with label notes: sidecar
    mode only (sidecars = proxies the control plane served; LDS / CDS latency = the last
    proxy's ACK after the matching change, median across repetitions). None when the run
    has no push rows for sidecar mode."""
    if mode != "sidecar":
        return None
    rows = run.without_failed(run.rows("xds", entity="mesh"))
    rows = rows[rows["mode"] == mode]
    if rows.empty:
        return None
    exp = run.label("experiment").loc[rows.index]
    block: dict[str, Any] = {"count": 1}
    notes: dict[str, str] = {}
    total = rows[rows["metric"] == "proxies_total"]["value"]
    if not total.empty:
        block["sidecars"] = int(total.median())
    for field, experiment, what in PUSH_LATENCY:
        conv = rows[(rows["metric"] == "convergence_max") & (exp == experiment)]["value"]
        if conv.empty:
            continue
        block[field] = round(float(conv.median()))
        notes[f"meshbench.{field}"] = (
            f"{what}: change to the last proxy's ACK (an upper bound of SMP's 90 % figure), "
            f"median of {conv.size} repetitions")
    return block, notes


def test_config(run: Run, level: int) -> dict[str, Any]:
    s = run.scenario
    load = s.get("load") or {}
    timing = s.get("timing") or {}
    protocol = str((s.get("workload") or {}).get("protocol", "http/1.1"))
    client: dict[str, Any] = {"internal": True, "load_generator": "locust",
                              "protocol": ("PROTOCOL_GRPC" if "grpc" in protocol
                                           else "PROTOCOL_HTTP"),
                              "rps": int(level)}
    if load.get("connections"):
        client["connections"] = int(load["connections"])
    cfg = {"smp_version": SMP_VERSION, "id": f"{run.run_id}/test/{level}rps",
           "name": f"{s.get('name', 'scenario')} at {level} rps",
           "labels": {"meshbench.scenario_hash": str(run.manifest.get("scenario_hash", "")),
                      "meshbench.repetitions": str(s.get("repetitions", "")),
                      "meshbench.protocol": protocol,
                      "meshbench.payload_bytes": str((s.get("workload") or {})
                                                     .get("payload_bytes", ""))},
           "clients": [client]}
    if timing.get("window_s"):
        cfg["duration"] = f"{float(timing['window_s']):g}s"
    return cfg


def results(run: Run) -> list[dict[str, Any]]:
    """One PerformanceTestResult per (mode, level) with latency rows."""
    per = {name: _per_cell(run, metric) for name, metric in LATENCY}
    maxima, qps = _per_cell(run, "latency_max"), _per_cell(run, "achieved_rps")
    minima, windows, dataplane = hdr_minimum_us(run), _windows(run), _dataplane(run)
    out = []
    for mode in run.modes:
        for level in run.levels:
            key = (mode, level)
            if key not in per["p50"]:
                continue
            n = int(per["p50"][key].size)
            lat: dict[str, float] = {}
            if key in minima:
                lat["min"] = minima[key] / 1000
            for name, _ in LATENCY:
                v = _median(per[name].get(key, np.array([])))
                if v is not None:
                    lat[name] = v / 1000
            if key in maxima:
                lat["max"] = float(maxima[key].max()) / 1000
            labels = {"meshbench.mode": mode, "meshbench.level_rps": str(level),
                      "meshbench.repetitions": str(n), "meshbench.backend": run.backend,
                      "meshbench.run_id": run.run_id,
                      "meshbench.latency_source": run.latency_source(),
                      "meshbench.statistic": ("median across repetitions (min: smallest, "
                                              "max: largest)")}
            if "min" not in lat:
                labels["meshbench.min_latency"] = "not recorded (no HDR files)"
            d = dataplane.get(key, {})
            if "cpu_cores" in d:
                labels["meshbench.dataplane_cpu_mcores"] = str(round(1000 * d["cpu_cores"]))
            if "mem_mib" in d:
                labels["meshbench.dataplane_mem_mb"] = str(round(d["mem_mib"] * MIB_TO_MB))
                labels["meshbench.dataplane_memory"] = d["memory"]
            if run.backend == "local":
                labels["meshbench.note"] = ("local backend: Envoy in network namespaces, "
                                            "not Istio release figures")
            result: dict[str, Any] = {
                "smp_version": SMP_VERSION, "id": f"{run.run_id}/{mode}/{level}rps",
                "labels": labels, "latencies_ms": lat, "details_uri": "report.html",
                "test_id": f"{run.run_id}/test/{level}rps",
                "mesh_config_id": f"{run.run_id}/mesh/{mode}", "env_id": f"{run.run_id}/env"}
            if key in qps:
                result["actual_qps"] = float(np.median(qps[key]))
            if key in windows:
                result["start_time"] = _rfc3339(windows[key][0])
                result["end_time"] = _rfc3339(windows[key][1])
            out.append(result)
    return out


def smp_document(run: Run) -> dict[str, Any]:
    """The whole export (see the module docstring for its layout)."""
    dataplane = _dataplane(run)
    levels = [lv for lv in run.levels if not run.client.empty
              and (run.client["level"] == lv).any()] or run.levels
    top = max(levels) if levels else None
    return {"smp_version": SMP_VERSION, "generator": "meshbench analysis.smp",
            "run_id": run.run_id,
            "environment": environment(run, top),
            "mesh_configs": [mesh_config(run, m, dataplane, top) for m in run.modes],
            "test_configs": [test_config(run, lv) for lv in levels],
            "results": results(run)}


def write_smp(run: Run, path: Path) -> Path:
    path.write_text(json.dumps(smp_document(run), indent=2) + "\n")
    return path
