"""How does a config push fan out? K real Envoys on one control plane, S clusters each
(a benchmark, not a test).

For each cell (K Envoys x S clusters), with a fresh control-plane process and K Envoy 1.40
processes on loopback (root namespace, --concurrency 1, admin on Unix sockets, no netns):
  1. every Envoy connects and ACKs an empty snapshot (its initial fetch is done);
  2. "change": one set_snapshots() gives every Envoy S clusters (mTLS outbound clusters as
     the local backend's sidecars get them, one per service of a mesh with S services);
  3. "full-push": push() sends the same, unchanged S clusters again under a new version,
     as istiod's full push does.
Each phase reports: time from the first send to each Envoy's last ACK (p50, max; "from
call" adds the control API round trip and the JSON->protobuf conversion), bytes sent in
total (serialised DiscoveryResponses), the control plane's CPU seconds (its own process,
as istiod's would be) and the Envoys' CPU seconds, summed over K, from the call until
--settle seconds after the last ACK (idle CPU over the same time is measured before and
reported apart). Envoys' USS is sampled after the change.

All Envoys get the same config object (one certificate for all), so the control plane
converts it once and its CPU is the push itself (encode + send per proxy); with per-proxy
certificates (as in a mesh) conversion would add ~0.3 ms per cluster per proxy, which the
"convert_s" field shows for the shared case. A cell whose estimated memory exceeds
--mem-fraction of MemAvailable is skipped and recorded as skipped.

    .venv/bin/python benchmarks/bench_xds.py [--envoys 50,100,200] [--clusters 10,100,1000]

Writes benchmarks/results/xds.json and prints a table. Needs root (Envoys as root); takes
~5-10 minutes for the default grid. Stops every process it started by PID.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.backends.local import loopback
from bench.backends.local.backend import envoy_version
from bench.backends.local.certs import LocalCA
from bench.controlplane import envoy_config
from bench.controlplane.client import ControlPlane
from bench.mesh import build
from bench.meta import cpu_model
from bench.probes.resources import process_cpu_ns, read_smaps_rollup
from bench.scenario import from_dict

OUT = Path(__file__).resolve().parent / "results" / "xds.json"
MIB = 2**20
# Envoy USS per proxy, measured here: ~15-17 MiB idle, ~88 MiB with 1,000 mTLS clusters
# (~0.07 MiB per cluster); the estimate errs high so that a cell never pushes the host to OOM.
USS_BASE_MIB, USS_PER_CLUSTER_MIB = 20.0, 0.08


def clusters_for(services: int, certs: LocalCA) -> list[dict[str, Any]]:
    """The outbound clusters a sidecar of a mesh with `services` services gets."""
    nodes = 1 + math.ceil(services / 900)  # at most 990 pods per node in the mesh model
    mesh = build(from_dict({"name": "bench-xds", "topology": {
        "nodes": nodes, "services": services, "pods_per_service": 1}}), "sidecar")
    cfg = envoy_config.build(mesh, mesh.proxies[0], certs.issue)
    return [c for c in cfg.clusters if c["name"].startswith("outbound|")][:services]


def mem_available_mib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no MemAvailable in /proc/meminfo")


def envoys_cpu_s(envoys: list[loopback.Envoy]) -> float:
    return sum(process_cpu_ns(e.pid) for e in envoys) / 1e9


def wait_connected(cp: ControlPlane, nodes: list[str], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        st = cp.status()["nodes"]
        missing = [n for n in nodes if not st.get(n, {}).get("connected")]
        if not missing:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(missing)} Envoys not connected, e.g. {missing[0]}")
        time.sleep(0.2)


def measure(cp: ControlPlane, envoys: list[loopback.Envoy], action: Callable[[], Any],
            timeout_s: float, settle_s: float) -> dict[str, Any]:
    """Run `action` (a set_snapshots or push call) and account its fan-out."""
    _, since = cp.events()
    idle0 = envoys_cpu_s(envoys)
    time.sleep(settle_s)
    idle_s = envoys_cpu_s(envoys) - idle0
    cp0, env0, t0 = cp.cpu_seconds(), envoys_cpu_s(envoys), time.monotonic()
    result = action()
    call_s = time.monotonic() - t0
    done = cp.wait_acked(version=result["version"], timeout_s=timeout_s)
    all_acked_s = time.monotonic() - t0
    time.sleep(settle_s)
    cp_cpu, env_cpu = cp.cpu_seconds() - cp0, envoys_cpu_s(envoys) - env0
    events, _ = cp.events(since)
    mine = [e for e in events if e["version"] == result["version"]]
    sends = [e for e in mine if e["event"] == "send"]
    acks = [e for e in mine if e["event"] == "ack"]
    first = min(e["mono_ns"] for e in sends)
    last_ack: dict[str, int] = {}
    for a in acks:
        last_ack[a["node"]] = max(last_ack.get(a["node"], 0), a["mono_ns"])
    per_node_ms = sorted((t - first) / 1e6 for t in last_ack.values())
    return {
        "acked": done["acked"], "stragglers": len(done["stragglers"]),
        "sends": len(sends), "acks": len(acks),
        "nacks": sum(1 for e in mine if e["event"] == "nack"),
        "bytes_total": sum(e["bytes"] for e in sends),
        "bytes_per_proxy": statistics.median(
            [sum(e["bytes"] for e in sends if e["node"] == n) for n in last_ack] or [0]),
        "convergence_p50_ms": statistics.median(per_node_ms) if per_node_ms else None,
        "convergence_max_ms": per_node_ms[-1] if per_node_ms else None,
        "from_call_to_last_ack_ms": all_acked_s * 1000,
        "call_ms": call_s * 1000,
        "convert_s": result.get("convert_s", 0.0),
        "cp_cpu_s": cp_cpu,
        "envoys_cpu_s": env_cpu,
        "envoys_cpu_s_per_proxy": env_cpu / len(envoys),
        "envoys_idle_cpu_s": idle_s,
        "window_s": all_acked_s + settle_s,
    }


def run_cell(k: int, clusters: list[dict[str, Any]], args: argparse.Namespace
             ) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="mb-xds-") as tmp:
        cp = ControlPlane.in_dir(Path(tmp))
        envoys: list[loopback.Envoy] = []
        try:
            cp.start()
            nodes = [f"bench-{i}" for i in range(k)]
            t0 = time.monotonic()
            for n in nodes:
                envoys.append(loopback.start(n, Path(tmp) / "envoys", cp.xds_socket))
            loopback.wait_admin(envoys, timeout_s=args.timeout)
            wait_connected(cp, nodes, args.timeout)
            empty: dict[str, Any] = {"listeners": [], "clusters": []}
            base = cp.set_snapshots({n: empty for n in nodes})
            if not cp.wait_acked(version=base["version"], timeout_s=args.timeout)["acked"]:
                raise RuntimeError("the empty snapshot was not ACKed by every Envoy")
            start_s = time.monotonic() - t0
            full: dict[str, Any] = {"listeners": [], "clusters": clusters}
            change = measure(cp, envoys, lambda: cp.set_snapshots({n: full for n in nodes}),
                             args.timeout, args.settle)
            uss = [u for u in (read_smaps_rollup(e.pid) for e in envoys[:10]) if u]
            push = measure(cp, envoys, lambda: cp.push(None, "bench"), args.timeout,
                           args.settle)
            dead = [e.node_id for e in envoys if not e.alive()]
            return {"envoys": k, "clusters": len(clusters), "start_and_ack_empty_s": start_s,
                    "envoy_uss_mib_median": statistics.median(u[1] for u in uss) / MIB,
                    "envoy_pss_mib_median": statistics.median(u[0] for u in uss) / MIB,
                    "dead_envoys": dead, "change": change, "full_push": push}
        finally:
            loopback.stop_all(envoys)
            cp.stop()


def table(cells: list[dict[str, Any]]) -> str:
    head = (f"{'K':>4} {'S':>5} {'phase':<10} {'p50 ms':>8} {'max ms':>8} {'call->all':>9} "
            f"{'MB sent':>8} {'CP cpu s':>8} {'Envoy cpu s':>11} {'/proxy':>7} {'USS MiB':>7}")
    lines = [head, "-" * len(head)]
    for c in cells:
        if c.get("skipped"):
            lines.append(f"{c['envoys']:>4} {c['clusters']:>5} skipped: {c['skipped']}")
            continue
        for phase in ("change", "full_push"):
            m = c[phase]
            lines.append(
                f"{c['envoys']:>4} {c['clusters']:>5} {phase:<10} "
                f"{m['convergence_p50_ms']:>8.0f} {m['convergence_max_ms']:>8.0f} "
                f"{m['from_call_to_last_ack_ms']:>9.0f} {m['bytes_total'] / 1e6:>8.2f} "
                f"{m['cp_cpu_s']:>8.2f} {m['envoys_cpu_s']:>11.2f} "
                f"{m['envoys_cpu_s_per_proxy']:>7.3f} {c['envoy_uss_mib_median']:>7.1f}")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--envoys", default="50,100,200", help="comma-separated K values")
    ap.add_argument("--clusters", default="10,100,1000", help="comma-separated S values")
    ap.add_argument("--timeout", type=float, default=300.0, help="per wait, seconds")
    ap.add_argument("--settle", type=float, default=2.0,
                    help="seconds after the last ACK still counted as the push's CPU")
    ap.add_argument("--mem-fraction", type=float, default=0.5,
                    help="skip a cell whose estimated Envoy memory exceeds this share of "
                         "MemAvailable")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("needs root (it starts Envoys and reads their /proc)", file=sys.stderr)
        return 2
    ks = [int(x) for x in args.envoys.split(",")]
    ss = [int(x) for x in args.clusters.split(",")]
    result: dict[str, Any] = {
        "machine": {"cpu_model": cpu_model(), "cpus": os.cpu_count(),
                    "kernel": os.uname().release, "python": sys.version.split()[0],
                    "envoy": envoy_version(), "loadavg_at_start": list(os.getloadavg())},
        "started": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "note": ("Envoy 1.40 on loopback, --concurrency 1, one ADS stream each over a Unix "
                 "socket to the meshbench control plane (python, grpc.aio, one process); "
                 "SotW CDS; clusters = the local backend's sidecar outbound clusters (STATIC, "
                 "one endpoint, mTLS from files); every Envoy gets the same config; shared "
                 "2-core VM, other jobs may run concurrently (see loadavg)"),
        "cells": [],
    }
    with tempfile.TemporaryDirectory(prefix="mb-xds-certs-") as certdir:
        ca = LocalCA(Path(certdir), os.getuid())
        configs = {s: clusters_for(s, ca) for s in ss}
        for k in ks:
            for s in ss:
                need = k * (USS_BASE_MIB + USS_PER_CLUSTER_MIB * s)
                avail = mem_available_mib()
                if need > args.mem_fraction * avail:
                    cell: dict[str, Any] = {
                        "envoys": k, "clusters": s,
                        "skipped": f"needs ~{need / 1024:.1f} GiB, "
                                   f"{args.mem_fraction:.0%} of {avail / 1024:.1f} GiB available"}
                else:
                    print(f"K={k} S={s} ...", file=sys.stderr, flush=True)
                    cell = run_cell(k, configs[s], args)
                result["cells"].append(cell)
                args.out.parent.mkdir(parents=True, exist_ok=True)
                args.out.write_text(json.dumps(result, indent=1))  # survives an abort
    result["machine"]["loadavg_at_end"] = list(os.getloadavg())
    result["finished"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    args.out.write_text(json.dumps(result, indent=1))
    print(table(result["cells"]))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
