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
  ServiceMeshConfig      smp_version, id, labels, mesh_type{type: ISTIO, version},
                         mesh_build, proxy_build, mtls_enabled, proxy_concurrency, profile,
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
for baseline. Labels (map<string, string> on every message) are the export's extension
area: whatever SMP has no field for, and how a field was measured, goes there under
"meshbench.*".

Which Istio: mesh_type.version is the Istio release the mode ran on: on the kube backends
the istiod each deployment found (manifest deployment_info["r<rep>-<mode>"].istio.version,
else versions.istio), with mesh_build the istiod image; on the local backend the release
whose istiod the harness's control plane models (manifest
istio_fidelity.istio_version_modelled), with mesh_build naming that control plane, and a
label saying it is emulated. `profile` is the istioctl profile: on the kube backends the
one found installed (deployment_info ... istio.profile); on the local backend, which
installs no Istio, the profile the kube backends install for the mode
(bench.backends.kube.versions.istio_profile: minimal for sidecar, ambient for ambient and
waypoint), labelled as emulated (meshbench.profile).

SMP's `sidecar` block means "all sidecars", so only sidecar mode fills it, at the highest
level: count, cores and memory of the data plane under load, and rps = the requests per
second the load generator completed through the sidecars (achieved rps, not the target),
median across repetitions; every result also carries the data plane's total (whatever its
proxies are) in labels (meshbench.dataplane_cpu_mcores, meshbench.dataplane_mem_mb,
meshbench.dataplane_memory).

`mesh_control_plane`: sidecars = the proxies the control plane served in sidecar mode;
lds_latency_ms / cds_latency_ms are SMP's "time for a listener / cluster change to
propagate to 90 % of the proxies", filled in sidecar mode only, from the l4_authz (an
authorization policy: a listener change) and new_service (a new cluster) experiments. Per
repetition: from the control plane's first send of the change to the ACK that brought it
to 90 % of the proxies it was pushed to (the ceil(0.9 n)-th ACK of n; send -> ACK, read
from the per-proxy change -> ACK rows minus change -> first send), median across
repetitions. The debounce (istiod's PILOT_DEBOUNCE_AFTER, 100 ms) and the config
generation before the first send are not in it; they are shown apart in labels
(meshbench.lds_debounce_ms, meshbench.lds_change_to_ack_ms: change -> the same 90 % ACK).
Where the run has no send time (istiod's view on the kube backends) the field is left out
and a label says why. SMP defines no file that holds these messages together: smp.json is
one object with "environment", "mesh_configs", "test_configs" and "results".

One statistic per field: every number of a result (latencies_ms min, average, p50, p90,
p99 and max, and actual_qps) is the median across repetitions of that repetition's own
value (labels["meshbench.statistic"]); a repetition's min is read from its per-second HDR
files, as the tidy table has none: absent, with a label saying so, when no HDR file is
left, or when the latency is not Locust's (the HDR files are Locust's timing). Latency is
read through `Run.latency` (labels["meshbench.latency_source"]). Memory is PSS when read,
else RSS, converted from MiB to MB (SMP's unit).

Time: every result's start_time / end_time and every test config's duration describe one
span, the run's measurement: from the first counted cell's window start to the last one's
end. Repetitions interleave modes and levels, so a (mode, level) is measured in windows
spread over that whole span; each result's labels give the window length
(meshbench.window_s) and the time its windows add up to (meshbench.under_load_s).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.resources import DATAPLANE
from analysis.rundata import LOAD, UNDER_LOAD, Run
from analysis.stats import cell_values
from bench.changes import L4_AUTHZ, NEW_SERVICE
from bench.scenario import MESH_MODES

SMP_VERSION = "v0.6.1"  # the release whose protos this export follows
MIB_TO_MB = 1.048576
LATENCY = (("p50", "latency_p50"), ("p90", "latency_p90"), ("p99", "latency_p99"),
           ("average", "latency_mean"))
STATISTIC = "median across repetitions of each repetition's own value (min and max too)"
PROPAGATION_PERCENT = 90  # SMP: "propagate to 90 % of the proxies"


def _rfc3339(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _seconds(value: float) -> str:
    """A duration as SMP's string, in seconds ("3600s", "10.5s")."""
    return f"{value:.3f}".rstrip("0").rstrip(".") + "s"


def hdr_minima_us(run: Run) -> dict[tuple[str, int], np.ndarray]:
    """Per (mode, level) each ok cell's smallest latency (µs) in its measurement window,
    one value per repetition, from the per-second HDR files (same window rule as the
    runner: an interval counts when its midpoint lies in the window)."""
    from bench.load import hdr

    out: dict[tuple[str, int], list[float]] = {}
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
        out.setdefault((str(c["mode"]), int(c["level"])), []).append(
            float(hist.get_min_value()))
    return {k: np.array(v, dtype=float) for k, v in out.items()}


def measurement_span(run: Run) -> tuple[float, float] | None:
    """The run's measurement: the first counted cell's window start and the last one's
    end (epoch seconds); None when no counted cell has a window."""
    windows = [c["window"] for c in run.counted_cells()
               if "start" in (c.get("window") or {})]
    if not windows:
        return None
    return (min(float(w["start"]) for w in windows), max(float(w["end"]) for w in windows))


def _under_load_s(run: Run) -> dict[tuple[str, int], float]:
    """Per (mode, level) the seconds its counted cells' windows add up to."""
    out: dict[tuple[str, int], float] = {}
    for c in run.counted_cells():
        w = c.get("window") or {}
        if "start" in w:
            key = (str(c["mode"]), int(c["level"]))
            out[key] = out.get(key, 0.0) + float(w["end"]) - float(w["start"])
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
                                 if run.emulated else "")}
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


def _istio_found(run: Run, mode: str, key: str) -> str:
    """What the kube backends found of the Istio a mode ran on (manifest
    deployment_info["r<rep>-<mode>"]["istio"][key]) over its repetitions, distinct values
    joined by " / "; "" when none was recorded."""
    found: list[str] = []
    for name, info in (run.manifest.get("deployment_info") or {}).items():
        if not isinstance(info, dict) or str(name).partition("-")[2] != mode:
            continue
        value = str((info.get("istio") or {}).get(key) or "")
        if value and value not in found:
            found.append(value)
    return " / ".join(found)


def mesh_identity(run: Run, mode: str) -> tuple[dict[str, Any], dict[str, Any], dict[str, str]]:
    """(mesh_type, {mesh_build, profile} as known, label notes) of a mesh mode: the Istio
    release and istioctl profile the mode ran on (kube backends: found installed) or that
    the local backend emulates (see the module docstring)."""
    from bench.backends.kube.versions import istio_profile

    versions = run.manifest.get("versions") or {}
    mesh_type: dict[str, Any] = {"type": "ISTIO"}
    fields: dict[str, Any] = {}
    notes: dict[str, str] = {}
    if run.emulated:
        modelled = str((run.manifest.get("istio_fidelity") or {})
                       .get("istio_version_modelled") or "")
        if modelled:
            mesh_type["version"] = modelled
        harness = versions.get("harness") or versions.get("meshbench")
        fields["mesh_build"] = ("meshbench control plane" + (f" {harness}" if harness else "")
                                + (f", modelling istiod {modelled}" if modelled else "")
                                + " (Envoy in network namespaces)")
        notes["meshbench.mesh_version"] = (
            f"emulated: the local backend models istiod {modelled}'s push decision; no Istio "
            "is installed" if modelled else "not recorded (local backend, no Istio installed)")
        profile = istio_profile(mode)
        if profile:
            fields["profile"] = profile
            notes["meshbench.profile"] = (
                "emulated: the profile the kube backends install for this mode; the local "
                "backend installs no Istio")
        return mesh_type, fields, notes
    version = _istio_found(run, mode, "version") or str(versions.get("istio") or "")
    if version:
        mesh_type["version"] = version
    else:
        notes["meshbench.mesh_version"] = "not recorded"
    image = _istio_found(run, mode, "image")
    if image:
        fields["mesh_build"] = image
    profile = _istio_found(run, mode, "profile")
    if profile:
        fields["profile"] = profile
        notes["meshbench.profile"] = "the istioctl profile found installed"
    else:
        notes["meshbench.profile"] = "not recorded"
    return mesh_type, fields, notes


def mesh_config(run: Run, mode: str, dataplane: dict[tuple[str, int], dict[str, Any]],
                level: int | None,
                qps: dict[tuple[str, int], np.ndarray] | None = None) -> dict[str, Any]:
    """One ServiceMeshConfig; `qps` (per (mode, level) the repetitions' achieved rps,
    read from the run when not given) gives the sidecars' traffic."""
    versions = run.manifest.get("versions") or {}
    proxy = (run.scenario.get("proxy") or {})
    cfg: dict[str, Any] = {
        "smp_version": SMP_VERSION, "id": f"{run.run_id}/mesh/{mode}",
        "labels": {"meshbench.mode": mode, "meshbench.backend": run.backend},
        "mtls_enabled": mode in MESH_MODES,
    }
    if mode in MESH_MODES:
        mesh_type, fields, notes = mesh_identity(run, mode)
        cfg["mesh_type"] = mesh_type
        if "mesh_build" in fields:
            cfg["mesh_build"] = fields["mesh_build"]
        if versions.get("envoy"):
            cfg["proxy_build"] = str(versions["envoy"])
        if "profile" in fields:
            cfg["profile"] = fields["profile"]
        cfg["labels"].update(notes)
        if proxy.get("concurrency"):
            cfg["proxy_concurrency"] = int(proxy["concurrency"])
    control = mesh_control_plane(run, mode)
    if control:
        cfg["mesh_control_plane"], notes = control
        cfg["labels"].update(notes)
    d = dataplane.get((mode, level)) if level is not None else None
    if mode == "sidecar" and d:
        sidecar: dict[str, Any] = {}
        if "count" in d:
            sidecar["count"] = d["count"]
        if "cpu_cores" in d:
            sidecar["cpu_mcores"] = round(1000 * d["cpu_cores"])
        if "mem_mib" in d:
            sidecar["mem_mb"] = round(d["mem_mib"] * MIB_TO_MB)
        achieved = (qps if qps is not None else _per_cell(run, "achieved_rps")).get(
            (mode, int(level or 0)), np.array([]))
        if achieved.size:  # SMP: "total rps traversing all sidecars", as carried
            sidecar["rps"] = round(float(np.median(achieved)))
            cfg["labels"]["meshbench.sidecar_rps"] = (
                "requests per second the load generator completed through the sidecars "
                f"(achieved, at the {level} rps level; each crosses the client's and the "
                f"server's sidecar), median of {achieved.size} repetitions")
        else:
            cfg["labels"]["meshbench.sidecar_rps"] = "not measured (no achieved rps)"
        cfg["sidecar"] = sidecar
        cfg["labels"]["meshbench.sidecar_at_rps"] = str(level)
    return cfg


# SMP's latency fields and the experiment whose change they describe (sidecar mode)
PUSH_LATENCY = tuple((f"{c.xds}_latency_ms", c.name, what) for c, what in (
    (L4_AUTHZ, "a listener change (AuthorizationPolicy)"),
    (NEW_SERVICE, "a cluster change (new service)")))


@dataclass
class Propagation:
    """One change's reach, one value per repetition that measured it (ms): first send ->
    the ACK that brought it to 90 % of the proxies it was pushed to; change -> that same
    ACK; the debounce the change waited."""

    send_to_ack: list[float] = field(default_factory=list)
    change_to_ack: list[float] = field(default_factory=list)
    debounce: list[float] = field(default_factory=list)
    not_reached: int = 0  # repetitions where fewer than 90 % of the proxies ACKed
    no_send_time: int = 0  # repetitions with ACK times but no send time (istiod's view)


def propagation(rows: pd.DataFrame, experiment: pd.Series, name: str) -> Propagation:
    """The Propagation of experiment `name` from the "xds" rows (`experiment` = their
    experiment label). Per repetition: per proxy, change -> its last ACK ("convergence",
    one row per proxy); change -> first send = convergence_max - send_to_last_ack (the
    last ACK measured from both ends), so a proxy's send -> ACK is its convergence minus
    that; the 90 % proxy is the ceil(0.9 n)-th to ACK of the n proxies_updated."""
    out = Propagation()
    for _, g in rows[experiment.loc[rows.index] == name].groupby("repetition"):
        def one(metric: str, g: pd.DataFrame = g) -> float | None:
            v = g[g["metric"] == metric]["value"]
            return float(v.iloc[0]) if not v.empty else None

        acks = np.sort(g[g["metric"] == "convergence"]["value"].to_numpy(dtype=float))
        last, send_to_last = one("convergence_max"), one("send_to_last_ack")
        if not acks.size:
            continue
        if last is None or send_to_last is None:
            out.no_send_time += 1
            continue
        n = int(one("proxies_updated") or acks.size)
        k = -(-n * PROPAGATION_PERCENT // 100)  # ceil, in integers (0.9 x 70 > 63 in floats)
        if acks.size < k:
            out.not_reached += 1
            continue
        reached = float(acks[k - 1])
        out.change_to_ack.append(reached)
        out.send_to_ack.append(max(0.0, reached - (last - send_to_last)))
        debounce = one("debounce_time")
        if debounce is not None:
            out.debounce.append(debounce)
    return out


def _ms(value: float) -> str:
    return f"{value:.1f}"


def mesh_control_plane(run: Run, mode: str) -> tuple[dict[str, Any], dict[str, str]] | None:
    """SMP's MeshControlPlane from the run's push experiments, with label notes: sidecar
    mode only (sidecars = proxies the control plane served; LDS / CDS latency = first send
    -> the ACK of the 90 % proxy after the matching change, median across repetitions; the
    debounce and change -> that ACK in labels). None when the run has no push rows for
    sidecar mode."""
    if mode != "sidecar":
        return None
    xds = run.without_failed(run.rows("xds"))
    xds = xds[xds["mode"] == mode]
    mesh = xds[xds["entity"] == "mesh"]
    if mesh.empty:
        return None
    exp = run.label("experiment").loc[xds.index]
    block: dict[str, Any] = {"count": 1}
    notes: dict[str, str] = {}
    total = mesh[mesh["metric"] == "proxies_total"]["value"]
    if not total.empty:
        block["sidecars"] = int(total.median())
    for name, experiment, what in PUSH_LATENCY:
        prop = propagation(xds, exp, experiment)
        short = name.removesuffix("_latency_ms")
        skipped = []
        if prop.not_reached:
            skipped.append(f"{prop.not_reached} where fewer than 90 % of the proxies ACKed")
        if prop.no_send_time:
            skipped.append(f"{prop.no_send_time} without a send time (istiod's view)")
        if not prop.send_to_ack:
            if skipped:
                notes[f"meshbench.{name}"] = (f"{what}: not measured: repetitions "
                                              + "; ".join(skipped))
            continue
        n = len(prop.send_to_ack)
        block[name] = round(float(np.median(prop.send_to_ack)))
        notes[f"meshbench.{name}"] = (
            f"{what}: the control plane's first send of the change to the ACK that brought "
            "it to 90 % of the proxies it was pushed to (send -> ACK; debounce and config "
            f"generation excluded), median of {n} repetitions"
            + (f"; left out: {'; '.join(skipped)}" if skipped else ""))
        notes[f"meshbench.{short}_change_to_ack_ms"] = _ms(float(np.median(prop.change_to_ack)))
        if prop.debounce:
            notes[f"meshbench.{short}_debounce_ms"] = _ms(float(np.median(prop.debounce)))
    return block, notes


def test_config(run: Run, level: int, span: tuple[float, float] | None = None) -> dict[str, Any]:
    """One PerformanceTestConfig; duration = the run's measurement `span` (read from the
    run when not given), the same span as every result's start_time / end_time."""
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
    cfg: dict[str, Any] = {
        "smp_version": SMP_VERSION, "id": f"{run.run_id}/test/{level}rps",
        "name": f"{s.get('name', 'scenario')} at {level} rps",
        "labels": {"meshbench.scenario_hash": str(run.manifest.get("scenario_hash", "")),
                   "meshbench.repetitions": str(s.get("repetitions", "")),
                   "meshbench.protocol": protocol,
                   "meshbench.payload_bytes": str((s.get("workload") or {})
                                                  .get("payload_bytes", ""))},
        "clients": [client]}
    if timing.get("window_s"):
        cfg["labels"]["meshbench.window_s"] = f"{float(timing['window_s']):g}"
    span = span if span is not None else measurement_span(run)
    if span is not None:
        cfg["duration"] = _seconds(span[1] - span[0])
        cfg["labels"]["meshbench.duration"] = (
            "the run's measurement, first window start to last window end (the results' "
            "start_time / end_time); repetitions interleave modes and levels")
    return cfg


def results(run: Run, span: tuple[float, float] | None = None) -> list[dict[str, Any]]:
    """One PerformanceTestResult per (mode, level) with latency rows. Every number is the
    median across repetitions of each repetition's own value (STATISTIC); start_time /
    end_time are the run's measurement `span` (read from the run when not given)."""
    per = {name: _per_cell(run, metric) for name, metric in LATENCY}
    maxima, qps = _per_cell(run, "latency_max"), _per_cell(run, "achieved_rps")
    # the HDR files are Locust's: a minimum from them sits beside Locust's percentiles only
    minima = hdr_minima_us(run) if run.latency_source() == LOAD else {}
    dataplane, under_load = _dataplane(run), _under_load_s(run)
    span = span if span is not None else measurement_span(run)
    window_s = (run.scenario.get("timing") or {}).get("window_s")
    out = []
    for mode in run.modes:
        for level in run.levels:
            key = (mode, level)
            if key not in per["p50"]:
                continue
            n = int(per["p50"][key].size)
            lat: dict[str, float] = {}
            low = _median(minima.get(key, np.array([])))
            if low is not None:
                lat["min"] = low / 1000
            for name, _ in LATENCY:
                v = _median(per[name].get(key, np.array([])))
                if v is not None:
                    lat[name] = v / 1000
            high = _median(maxima.get(key, np.array([])))
            if high is not None:
                lat["max"] = high / 1000
            labels = {"meshbench.mode": mode, "meshbench.level_rps": str(level),
                      "meshbench.repetitions": str(n), "meshbench.backend": run.backend,
                      "meshbench.run_id": run.run_id,
                      "meshbench.latency_source": run.latency_source(),
                      "meshbench.statistic": STATISTIC}
            if "min" not in lat:
                labels["meshbench.min_latency"] = (
                    "not recorded (no HDR files)" if run.latency_source() == LOAD else
                    f"not recorded (the HDR files are Locust's timing, not "
                    f"{run.latency_source()})")
            elif minima[key].size != n:
                labels["meshbench.min_latency"] = (
                    f"median of the {minima[key].size} repetitions with HDR files")
            if window_s:
                labels["meshbench.window_s"] = f"{float(window_s):g}"
            if key in under_load:
                labels["meshbench.under_load_s"] = f"{under_load[key]:g}"
            d = dataplane.get(key, {})
            if "cpu_cores" in d:
                labels["meshbench.dataplane_cpu_mcores"] = str(round(1000 * d["cpu_cores"]))
            if "mem_mib" in d:
                labels["meshbench.dataplane_mem_mb"] = str(round(d["mem_mib"] * MIB_TO_MB))
                labels["meshbench.dataplane_memory"] = d["memory"]
            if run.emulated:
                labels["meshbench.note"] = ("local backend: Envoy in network namespaces, "
                                            "not Istio release figures")
            result: dict[str, Any] = {
                "smp_version": SMP_VERSION, "id": f"{run.run_id}/{mode}/{level}rps",
                "labels": labels, "latencies_ms": lat, "details_uri": "report.html",
                "test_id": f"{run.run_id}/test/{level}rps",
                "mesh_config_id": f"{run.run_id}/mesh/{mode}", "env_id": f"{run.run_id}/env"}
            if key in qps:
                result["actual_qps"] = float(np.median(qps[key]))
            if span is not None:
                result["start_time"] = _rfc3339(span[0])
                result["end_time"] = _rfc3339(span[1])
            out.append(result)
    return out


def smp_document(run: Run) -> dict[str, Any]:
    """The whole export (see the module docstring for its layout)."""
    dataplane, qps, span = _dataplane(run), _per_cell(run, "achieved_rps"), measurement_span(run)
    levels = [lv for lv in run.levels if not run.client.empty
              and (run.client["level"] == lv).any()] or run.levels
    top = max(levels) if levels else None
    return {"smp_version": SMP_VERSION, "generator": "meshbench analysis.smp",
            "run_id": run.run_id,
            "environment": environment(run, top),
            "mesh_configs": [mesh_config(run, m, dataplane, top, qps) for m in run.modes],
            "test_configs": [test_config(run, lv, span) for lv in levels],
            "results": results(run, span)}


def write_smp(run: Run, path: Path) -> Path:
    path.write_text(json.dumps(smp_document(run), indent=2) + "\n")
    return path
