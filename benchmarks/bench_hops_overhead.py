"""What does the per-hop BPF probe cost, and do its hops add up? (a benchmark, not a test)

1. Overhead. Sidecar mode on the local backend; keep-alive GET loops from inside the client
   pod (one client process per connection, each on its own keep-alive connection), for
   --seconds per round, alternating "probe off" and "probe on" rounds (the order flips each
   round so that drift hits both alike). Reports throughput (requests/s, all connections) and
   p50 latency per state (median over rounds), and the relative difference, for 1 and 4
   connections (one connection: the latency view; four: the proxies busy on 2 cores).
2. Validation. Every mode (baseline, sidecar, ambient, waypoint, in a shuffled order per
   repetition), one keep-alive connection, the probe attached: the end-to-end overhead of a
   mode (its client-side p50/mean minus baseline's, same repetition) against the sum of its
   per-hop medians/means (request + response of every proxy on the path). Means add up
   exactly, medians only roughly; the remainder is network and kernel time (extra TCP
   traversals, veths, iptables) that no hop contains.

    .venv/bin/python benchmarks/bench_hops_overhead.py [--rounds 6] [--seconds 5] [--reps 3]

Writes benchmarks/results/hops_overhead.json. Needs root and BCC; takes ~5 minutes. Uses the
local backend (waits for its lock) and tears every mode down.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.backends.base import Deployment
from bench.backends.local.backend import LocalBackend, envoy_binary, envoy_version
from bench.meta import cpu_model
from bench.probes.hops import HopHistogram, HopProbe, path_order, targets_for
from bench.scenario import from_dict

OUT = Path(__file__).resolve().parent / "results" / "hops_overhead.json"

# the client: stdlib only, run inside the client pod's namespace with `ip netns exec`
CLIENT = r"""
import http.client, json, sys, time
host, port, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
rate = float(sys.argv[4]) if len(sys.argv) > 4 else 0.0  # per connection; 0 = closed loop
conn = http.client.HTTPConnection(host, port, timeout=5)
lat, errors = [], 0
start = time.perf_counter()
end = start + seconds
due = start
while True:
    t = time.perf_counter()
    if rate > 0:
        due += 1.0 / rate
        if due > t:
            time.sleep(due - t)
            t = time.perf_counter()
    if t >= end:
        break
    try:
        conn.request("GET", "/")
        r = conn.getresponse()
        body = r.read()
        if r.status != 200:
            errors += 1
    except OSError:
        errors += 1
        conn.close()
        conn = http.client.HTTPConnection(host, port, timeout=5)
        continue
    lat.append(round((time.perf_counter() - t) * 1e6, 1))
elapsed = time.perf_counter() - start
conn.close()
json.dump({"lat_us": lat, "elapsed_s": elapsed, "errors": errors}, sys.stdout)
"""


@contextmanager
def mesh(mode: str) -> Iterator[Deployment]:
    backend = LocalBackend(from_dict({"name": "hops-bench", "load": {"levels": [100]}}))
    backend.wait_for_lock(900)  # other users of the local backend finish first
    try:
        backend.preflight()
        yield backend.provision(mode)
    finally:
        backend.teardown()


def cpu_busy_s() -> float:
    """Machine-wide busy CPU seconds so far (all CPUs; /proc/stat, USER_HZ ticks)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def mesh_cpu_s(dep: Deployment) -> float:
    """CPU seconds of the mesh's processes (Envoys, app: process CPU clocks, ns) plus all
    waited-for children of this script (the clients): neighbours' load is not in it."""
    total = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = total.ru_utime + total.ru_stime
    for p in dep.processes:
        try:
            cpu += time.clock_gettime_ns(((~p.pid) << 3) | 2) / 1e9  # CPUCLOCK_SCHED of pid
        except OSError:
            pass  # exited: the run is broken anyway and the request count will show it
    return cpu


def load(dep: Deployment, conns: int, seconds: float, rate: float = 0.0) -> dict[str, Any]:
    """`conns` client processes in the client pod, each one keep-alive connection, closed
    loop (rate 0) or paced at `rate` requests/s per connection (latency measured from the
    actual send, so a late schedule is not corrected for)."""
    svc = dep.mesh.target
    assert dep.load_netns
    cpu0 = cpu_busy_s()
    mesh0 = mesh_cpu_s(dep)
    procs = [subprocess.Popen(["ip", "netns", "exec", dep.load_netns, sys.executable, "-c",
                               CLIENT, svc.vip, str(svc.port), str(seconds), str(rate)],
                              stdout=subprocess.PIPE, text=True) for _ in range(conns)]
    results = []
    for p in procs:
        out, _ = p.communicate(timeout=seconds + 60)
        if p.returncode != 0:
            raise RuntimeError(f"client exited with {p.returncode}")
        results.append(json.loads(out))
    cpu = cpu_busy_s() - cpu0
    mesh_cpu = mesh_cpu_s(dep) - mesh0
    lat = sorted(x for r in results for x in r["lat_us"])
    elapsed = max(r["elapsed_s"] for r in results)
    return {
        "requests": len(lat),
        "errors": sum(r["errors"] for r in results),
        "rps": len(lat) / elapsed,
        "p50_us": statistics.median(lat),
        "p90_us": lat[int(0.9 * (len(lat) - 1))],
        "p99_us": lat[int(0.99 * (len(lat) - 1))],
        "mean_us": statistics.fmean(lat),
        # all CPUs, including client start-up: compare on vs off, not as an absolute
        "cpu_us_per_request": cpu / len(lat) * 1e6,
        # the mesh's processes and the clients only (BPF runs in their context)
        "mesh_cpu_us_per_request": mesh_cpu / len(lat) * 1e6,
    }


def hop_summary(hists: list[HopHistogram]) -> list[dict[str, Any]]:
    return [{
        "entity": h.entity, "role": h.role, "side": h.side, "direction": h.direction,
        "count": h.count, "unmatched": h.unmatched, "ambiguous": h.ambiguous,
        "evicted": h.evicted, "unclassified": h.unclassified, "no_arrival": h.no_arrival,
        "p50_us": round(h.percentile(0.5), 1) if h.count else None,
        "p90_us": round(h.percentile(0.9), 1) if h.count else None,
        "p99_us": round(h.percentile(0.99), 1) if h.count else None,
        "mean_us": round(h.mean_us, 1) if h.matched else None,
    } for h in hists]


def pct(a: float, b: float) -> float:
    return round(100.0 * (a - b) / b, 2)


# ---- 1. overhead ------------------------------------------------------------------------------

def overhead(rounds: int, seconds: float, conns_list: list[int],
             before: Path | None = None, bpf_rounds: int = 4) -> dict[str, Any]:
    """Rounds of probe off / on (/ before: the probe of an earlier hops.c), in an order that
    rotates every round so that drift hits every state alike."""
    out: dict[str, Any] = {"mode": "sidecar", "rounds": rounds, "seconds_per_round": seconds,
                           "by_connections": {}}
    states = ["off", "on"] + (["before"] if before else [])
    templates = {"on": None, "before": before}
    with mesh("sidecar") as dep:
        targets = targets_for(dep)
        load(dep, 1, 2.0)  # warm-up: connection pools, caches
        for conns in conns_list:
            per_round = []
            for r in range(rounds):
                k = r % len(states)
                order = states[k:] + states[:k]
                if (r // len(states)) % 2:
                    order.reverse()
                for state in order:
                    if state != "off":
                        probe = HopProbe(targets, template=templates[state])
                        t0 = time.perf_counter()
                        probe.start()
                        attach_s = time.perf_counter() - t0
                        try:
                            res = load(dep, conns, seconds)
                            hists = probe.read()
                        finally:
                            probe.stop()
                        res["attach_s"] = round(attach_s, 3)
                        res["hops"] = hop_summary(hists)
                        res["matched_pct_min"] = round(100 * min(
                            h.count / res["requests"] for h in hists), 1)
                    else:
                        res = load(dep, conns, seconds)
                    res.update(round=r, state=state)
                    per_round.append(res)
                    print(f"overhead conns={conns} round={r} {state}: {res['rps']:.0f} rps, "
                          f"p50 {res['p50_us']:.0f} us, cpu {res['cpu_us_per_request']:.0f} "
                          f"us/req (mesh {res['mesh_cpu_us_per_request']:.0f})", flush=True)
            summary = {}
            for state in states:
                rs = [x for x in per_round if x["state"] == state]
                summary[state] = {
                    "rps_median": round(statistics.median(x["rps"] for x in rs), 1),
                    "rps_min": round(min(x["rps"] for x in rs), 1),
                    "rps_max": round(max(x["rps"] for x in rs), 1),
                    "p50_us_median": round(statistics.median(x["p50_us"] for x in rs), 1),
                    "p50_us_min": round(min(x["p50_us"] for x in rs), 1),
                    "p50_us_max": round(max(x["p50_us"] for x in rs), 1),
                    "cpu_us_per_request_median": round(statistics.median(
                        x["cpu_us_per_request"] for x in rs), 1),
                    "mesh_cpu_us_per_request_median": round(statistics.median(
                        x["mesh_cpu_us_per_request"] for x in rs), 1),
                }
            # paired per round: on vs off of the same round
            paired_rps = [pct(on["rps"], off["rps"]) for on, off in _pairs(per_round)]
            paired_p50 = [pct(on["p50_us"], off["p50_us"]) for on, off in _pairs(per_round)]
            paired_cpu = [pct(on["cpu_us_per_request"], off["cpu_us_per_request"])
                          for on, off in _pairs(per_round)]
            paired_mesh = [pct(on["mesh_cpu_us_per_request"], off["mesh_cpu_us_per_request"])
                           for on, off in _pairs(per_round)]
            extra: dict[str, Any] = {}
            if before:
                b_rps = [pct(b["rps"], off["rps"]) for b, off in _pairs(per_round, "before")]
                b_p50 = [pct(b["p50_us"], off["p50_us"]) for b, off in _pairs(per_round, "before")]
                extra = {
                    "before_throughput_change_pct": pct(summary["before"]["rps_median"],
                                                        summary["off"]["rps_median"]),
                    "before_p50_change_pct": pct(summary["before"]["p50_us_median"],
                                                 summary["off"]["p50_us_median"]),
                    "before_paired_throughput_change_pct": b_rps,
                    "before_paired_p50_change_pct": b_p50,
                    "before_paired_throughput_change_pct_median": round(
                        statistics.median(b_rps), 2),
                    "before_paired_p50_change_pct_median": round(statistics.median(b_p50), 2),
                }
            out["by_connections"][str(conns)] = {
                **extra,
                "summary": summary,
                "throughput_change_pct": pct(summary["on"]["rps_median"],
                                             summary["off"]["rps_median"]),
                "p50_change_pct": pct(summary["on"]["p50_us_median"],
                                      summary["off"]["p50_us_median"]),
                "paired_throughput_change_pct": paired_rps,
                "paired_p50_change_pct": paired_p50,
                "paired_throughput_change_pct_median": round(statistics.median(paired_rps), 2),
                "paired_p50_change_pct_median": round(statistics.median(paired_p50), 2),
                "cpu_per_request_change_pct": pct(summary["on"]["cpu_us_per_request_median"],
                                                  summary["off"]["cpu_us_per_request_median"]),
                "paired_cpu_per_request_change_pct": paired_cpu,
                "mesh_cpu_per_request_change_pct": pct(
                    summary["on"]["mesh_cpu_us_per_request_median"],
                    summary["off"]["mesh_cpu_us_per_request_median"]),
                "paired_mesh_cpu_per_request_change_pct": paired_mesh,
                "paired_mesh_cpu_per_request_change_pct_median": round(
                    statistics.median(paired_mesh), 2),
                "paired_throughput_change_pct_iqr": _iqr(paired_rps),
                "paired_p50_change_pct_iqr": _iqr(paired_p50),
                "rounds": per_round,
            }
        out["bpf_run_time"] = bpf_run_time(dep, targets, seconds)
        if before:
            # in-kernel time is as noisy as the machine: alternate the versions, medians
            runs: dict[str, list[dict[str, Any]]] = {"on": [out["bpf_run_time"]], "before": []}
            for i in range(2 * bpf_rounds - 1):
                state = "before" if i % 2 == 0 else "on"
                runs[state].append(bpf_run_time(dep, targets, seconds,
                                                before if state == "before" else None))
            out["bpf_run_time_rounds"] = {
                state: {"total_us_per_request": [r["total_us_per_request"] for r in rs],
                        "total_us_per_request_median": round(statistics.median(
                            r["total_us_per_request"] for r in rs), 2),
                        "ns_per_call_median": {name: round(statistics.median(
                            r["programs"][name]["ns_per_call"] for r in rs))
                            for name in rs[0]["programs"]},
                        "matched_pct_min": min(r["matched_pct_min"] or 0 for r in rs)}
                for state, rs in runs.items()}
            out["bpf_run_time_before"] = runs["before"][-1]
        # the probe's in-kernel time against the CPU the mesh spends per request (probe
        # off, one connection): steadier than the throughput difference on a busy machine
        off = out["by_connections"].get("1", {}).get("summary", {}).get("off")
        if off:
            share = {state: round(100 * v["total_us_per_request_median"]
                                  / off["mesh_cpu_us_per_request_median"], 2)
                     for state, v in out.get("bpf_run_time_rounds", {
                         "on": {"total_us_per_request_median":
                                out["bpf_run_time"]["total_us_per_request"]}}).items()}
            out["bpf_pct_of_mesh_cpu_per_request"] = share
    out["bpf_primitives"] = bpf_primitives()
    return out


# what the probe's building blocks cost here, each alone in a program on a tracepoint that
# a loopback send/recv fires (run_time_ns per call includes ~70 ns of the statistics' own)
PRIMITIVES = r"""
BPF_PERCPU_ARRAY(pc, u64, 1);
BPF_ARRAY(arr, u64, 4);
BPF_HASH(h32, u32, u64, 4096);
BPF_HASH(h64, u64, u64, 65536);
TRACEPOINT_PROBE(sock, sock_send_length) { return 0; }
TRACEPOINT_PROBE(sock, sock_recv_length) {
    u64 id = bpf_get_current_pid_tgid(); return (id >> 32) == 1; }
TRACEPOINT_PROBE(tcp, tcp_sendmsg_locked) { u64 t = bpf_ktime_get_ns(); return t == 7; }
TRACEPOINT_PROBE(sock, sk_data_ready) {
    int z = 0; u64 *v = pc.lookup(&z); if (v) *v += 1; return 0; }
TRACEPOINT_PROBE(tcp, tcp_rcv_space_adjust) {
    u32 k = bpf_get_current_pid_tgid(); u64 *v = h32.lookup(&k); return v ? 1 : 0; }
TRACEPOINT_PROBE(tcp, tcp_probe) {
    u64 k = (u64)args->skaddr; u64 *v = h64.lookup(&k);
    if (v) *v += 1; else { u64 o = 1; h64.insert(&k, &o); } return 0; }
TRACEPOINT_PROBE(net, net_dev_queue) {
    int k = 1; u64 *v = arr.lookup(&k); if (v) __sync_fetch_and_add(v, 1); return 0; }
TRACEPOINT_PROBE(net, netif_rx) {
    u16 p[2] = {}; bpf_probe_read_kernel(p, 4, (void *)args->skbaddr); return p[0] == 3; }
"""
PRIMITIVE_NAMES = {
    "sock_send_length": "empty program", "sock_recv_length": "get_current_pid_tgid + compare",
    "tcp_sendmsg_locked": "bpf_ktime_get_ns", "sk_data_ready": "per-CPU array look-up",
    "tcp_rcv_space_adjust": "hash look-up (u32 key, miss)",
    "tcp_probe": "hash look-up (u64 key, hit) + update", "net_dev_queue": "array + atomic add",
    "netif_rx": "bpf_probe_read_kernel 4 bytes"}


def bpf_primitives(n: int = 20000) -> dict[str, Any]:
    import socket

    from bcc import BPF

    flag = Path("/proc/sys/kernel/bpf_stats_enabled")
    old = flag.read_text().strip()
    b = BPF(text=PRIMITIVES.encode())
    try:
        flag.write_text("1")
        try:
            srv = socket.socket()
            srv.bind(("127.0.0.1", 0))
            srv.listen()
            c = socket.create_connection(srv.getsockname())
            a, _ = srv.accept()
            before = _prog_stats_of(b)
            for _ in range(n):
                c.send(b"x" * 100)
                a.recv(200)
            after = _prog_stats_of(b)
            for x in (c, a, srv):
                x.close()
        finally:
            flag.write_text(old)
    finally:
        b.cleanup()
    out = {}
    for name, (cnt, ns) in after.items():
        c_, t_ = cnt - before[name][0], ns - before[name][1]
        short = name.split("__")[-1]
        out[PRIMITIVE_NAMES.get(short, short)] = {"calls": c_, "ns_per_call": round(t_ / max(c_, 1))}
    return out


def bpf_run_time(dep: Deployment, targets: list[Any], seconds: float,
                 template: Path | None = None) -> dict[str, Any]:
    """The probe's own in-kernel CPU per request, per program, from the kernel's BPF run-time
    statistics (kernel.bpf_stats_enabled, switched on for this one round, then restored).
    Tracepoint dispatch around the programs is not included."""
    flag = Path("/proc/sys/kernel/bpf_stats_enabled")
    old = flag.read_text().strip()
    probe = HopProbe(targets, template=template)
    probe_reads: dict[str, list[HopHistogram]] = {}
    probe.start()
    try:
        flag.write_text("1")
        try:
            probe.reset()
            before = _prog_stats(probe)
            res = load(dep, 1, seconds)
            after = _prog_stats(probe)
            probe_reads = {"hists": probe.read()}
        finally:
            flag.write_text(old)
    finally:
        probe.stop()
    n = res["requests"]
    progs = {}
    for name, (cnt, ns) in after.items():
        c, t = cnt - before[name][0], ns - before[name][1]
        progs[name] = {"calls_per_request": round(c / n, 2), "ns_per_call": round(t / max(c, 1)),
                       "us_per_request": round(t / n / 1000, 2)}
    hists = probe_reads.get("hists", [])
    return {"connections": 1, "requests": n, "p50_us": res["p50_us"],
            "template": str(template or "current"),
            "matched_pct_min": round(100 * min(h.count / n for h in hists), 1) if hists else None,
            "total_us_per_request": round(sum(p["us_per_request"] for p in progs.values()), 2),
            "programs": progs}


def _prog_stats(probe: HopProbe) -> dict[str, tuple[int, int]]:
    return _prog_stats_of(probe._bpf)


def _prog_stats_of(bpf: Any) -> dict[str, tuple[int, int]]:
    out = {}
    for name, fn in bpf.funcs.items():
        text = Path(f"/proc/self/fdinfo/{fn.fd}").read_text()
        cnt = re.search(r"run_cnt:\s*(\d+)", text)
        ns = re.search(r"run_time_ns:\s*(\d+)", text)
        out[name.decode()] = (int(cnt.group(1)) if cnt else 0, int(ns.group(1)) if ns else 0)
    return out


def _iqr(values: list[float]) -> list[float]:
    q = statistics.quantiles(values, n=4)
    return [round(q[0], 2), round(q[2], 2)]


def _pairs(per_round: list[dict[str, Any]], state: str = "on"
           ) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    by_round: dict[int, dict[str, dict[str, Any]]] = {}
    for x in per_round:
        by_round.setdefault(x["round"], {})[x["state"]] = x
    for r in sorted(by_round):
        yield by_round[r][state], by_round[r]["off"]


# ---- 2. validation ----------------------------------------------------------------------------

def validation(reps: int, seconds: float, seed: int) -> dict[str, Any]:
    modes = ["baseline", "sidecar", "ambient", "waypoint"]
    rng = random.Random(seed)
    runs: list[dict[str, Any]] = []
    for rep in range(reps):
        order = modes[:]
        rng.shuffle(order)
        for mode in order:
            with mesh(mode) as dep:
                targets = targets_for(dep)
                load(dep, 1, 1.0)  # warm-up
                probe = HopProbe(targets)
                probe.start()
                try:
                    probe.reset()
                    res = load(dep, 1, seconds)
                    hists = probe.read()
                finally:
                    probe.stop()
            hops = hop_summary(hists)
            res.update(rep=rep, mode=mode, hops=hops,
                       sum_hop_p50_us=round(sum(h["p50_us"] or 0 for h in hops), 1),
                       sum_hop_mean_us=round(sum(h["mean_us"] or 0 for h in hops), 1),
                       matched_pct=[round(100 * h["count"] / res["requests"], 1) for h in hops])
            runs.append(res)
            print(f"validation rep={rep} {mode}: e2e p50 {res['p50_us']:.0f} us, "
                  f"sum of hop p50s {res['sum_hop_p50_us']:.0f} us", flush=True)
    per_mode: dict[str, Any] = {}
    for mode in modes[1:]:
        rows = []
        for rep in range(reps):
            base = next(x for x in runs if x["rep"] == rep and x["mode"] == "baseline")
            m = next(x for x in runs if x["rep"] == rep and x["mode"] == mode)
            over_p50 = m["p50_us"] - base["p50_us"]
            over_mean = m["mean_us"] - base["mean_us"]
            rows.append({
                "rep": rep,
                "e2e_p50_us": round(m["p50_us"], 1), "baseline_p50_us": round(base["p50_us"], 1),
                "overhead_p50_us": round(over_p50, 1),
                "sum_hop_p50_us": m["sum_hop_p50_us"],
                "ratio_p50": round(m["sum_hop_p50_us"] / over_p50, 3) if over_p50 > 0 else None,
                "overhead_mean_us": round(over_mean, 1),
                "sum_hop_mean_us": m["sum_hop_mean_us"],
                "ratio_mean": round(m["sum_hop_mean_us"] / over_mean, 3) if over_mean > 0
                else None,
                "remainder_mean_us": round(over_mean - m["sum_hop_mean_us"], 1),
                "matched_pct_min": min(m["matched_pct"]),
            })
        hop_p50: dict[str, list[float]] = {}
        for x in runs:
            if x["mode"] != mode:
                continue
            for h in x["hops"]:
                hop_p50.setdefault(f"{h['entity']}/{h['direction']}", []).append(h["p50_us"])
        per_mode[mode] = {
            "path": path_order(mode),
            "reps": rows,
            "ratio_p50_median": _med(r["ratio_p50"] for r in rows),
            "ratio_mean_median": _med(r["ratio_mean"] for r in rows),
            "hop_p50_us_median": {k: _med(v) for k, v in hop_p50.items()},
        }
    return {"seconds_per_run": seconds, "reps": reps, "connections": 1, "per_mode": per_mode,
            "runs": runs}


def _med(values: Any) -> float | None:
    vals = [v for v in values if v is not None]
    return round(statistics.median(vals), 3) if vals else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--conns", default="1,4")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--skip-overhead", action="store_true")
    ap.add_argument("--skip-validation", action="store_true")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--bpf-rounds", type=int, default=4,
                    help="BPF run-time rounds per version (with --before)")
    ap.add_argument("--before", metavar="REV",
                    help="also run the probe of this git revision's hops.c, interleaved")
    a = ap.parse_args()
    # a SIGTERM (timeout, Ctrl-C of a wrapper) unwinds through the teardowns: the default
    # action would leave the mesh's processes and namespaces behind
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    before = None
    if a.before:
        before = Path(tempfile.mkdtemp(prefix="mb-hops-before-")) / "hops.c"
        before.write_bytes(subprocess.run(
            ["git", "-C", str(Path(__file__).resolve().parent.parent), "show",
             f"{a.before}:bench/probes/hops.c"], check=True, capture_output=True).stdout)
    result: dict[str, Any] = {
        "machine": {"cpu_model": cpu_model(), "cpus": os.cpu_count(),
                    "kernel": platform.release(), "python": platform.python_version(),
                    "envoy": envoy_version(envoy_binary()),
                    "loadavg_at_start": list(os.getloadavg())},
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "note": ("local backend: Envoy 1.40 in network namespaces, --concurrency 1; the "
                 "client is Python http.client in the client pod (keep-alive); shared 2-core "
                 "VM, other jobs may run concurrently (see loadavg)"),
    }
    if not a.skip_overhead:
        result["overhead"] = overhead(a.rounds, a.seconds, [int(c) for c in a.conns.split(",")],
                                      before, a.bpf_rounds)
        if a.before:
            result["overhead"]["before_rev"] = a.before
    if not a.skip_validation:
        result["validation"] = validation(a.reps, a.seconds, a.seed)
    result["machine"]["loadavg_at_end"] = list(os.getloadavg())
    result["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {a.out}")
    for conns, v in result.get("overhead", {}).get("by_connections", {}).items():
        print(f"overhead, {conns} conn(s): throughput {v['throughput_change_pct']:+.2f} %, "
              f"p50 {v['p50_change_pct']:+.2f} % (paired medians "
              f"{v['paired_throughput_change_pct_median']:+.2f} % / "
              f"{v['paired_p50_change_pct_median']:+.2f} %), mesh CPU per request "
              f"{v['mesh_cpu_per_request_change_pct']:+.2f} % (paired median "
              f"{v['paired_mesh_cpu_per_request_change_pct_median']:+.2f} %)")
    for state, v in result.get("overhead", {}).get("bpf_run_time_rounds", {}).items():
        print(f"BPF run time {state}: median {v['total_us_per_request_median']} us per request "
              f"(rounds {v['total_us_per_request']}), ns per call {v['ns_per_call_median']}")
    for k, v in result.get("overhead", {}).get("bpf_primitives", {}).items():
        print(f"primitive {k}: {v['ns_per_call']} ns per call")
    for key in ("bpf_run_time", "bpf_run_time_before"):
        bpf = result.get("overhead", {}).get(key)
        if bpf:
            print(f"{key}: {bpf['total_us_per_request']} us per request "
                  f"(p50 {bpf['p50_us']:.0f} us, matched min {bpf['matched_pct_min']} %): "
                  + ", ".join(f"{k.split('__')[-1]} {v['calls_per_request']}x"
                              f"{v['ns_per_call']} ns" for k, v in bpf["programs"].items()))
    for conns, v in result.get("overhead", {}).get("by_connections", {}).items():
        if "before_throughput_change_pct" in v:
            print(f"before, {conns} conn(s): throughput {v['before_throughput_change_pct']:+.2f} "
                  f"%, p50 {v['before_p50_change_pct']:+.2f} % (paired medians "
                  f"{v['before_paired_throughput_change_pct_median']:+.2f} % / "
                  f"{v['before_paired_p50_change_pct_median']:+.2f} %)")
    for mode, v in result.get("validation", {}).get("per_mode", {}).items():
        print(f"validation {mode}: sum(hop p50)/overhead(p50) = {v['ratio_p50_median']}, "
              f"sum(hop mean)/overhead(mean) = {v['ratio_mean_median']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
