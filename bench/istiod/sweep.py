"""The real-istiod fan-out sweep: per size (pods) and mode, a fresh control plane
(bench.istiod.controlplane), the simulated cluster (bench.istiod.cluster), one simulated
proxy per sidecar / ztunnel / waypoint (mb-xdsload), then:

1. connect: every proxy connects and is synced (a response for every type it subscribed);
   istiod's CPU seconds and peak RSS, the proxies' client CPU, bytes and time to the last
   proxy synced: what configuring the mesh at all costs istiod;
2. exposure: what each proxy holds (resources and bytes per type, all proxies), and for a
   sample of proxies, which of the mesh's services, workloads and policies their config
   names (claim (c));
3. each change (bench.istiod.changes) on top of the last: the proxies that received a
   response, those whose held config changed, bytes per xDS type and role, time from the
   API write to the last response (each is ACKed at once), istiod's CPU and peak RSS over
   the change, and istiod's own view: the deltas of its /metrics and, at the end, its
   /debug/syncz read with the kube backends' parser (bench.backends.kube.push) checking
   every simulated proxy ACKed what istiod sent;
4. our push table's prediction (bench.controlplane.pushrules) for each proxy and change,
   beside what istiod did.

A size that fails (a port taken, istiod or the API server dying, a timeout) is recorded
failed with the reason and the sweep goes on; Ctrl-C stops, tears down, and keeps what was
written. Rows go to the run's store as they are measured (source "istiod").
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil

from bench.errors import BenchError, ProvisionError, UserError
from bench.istiod import build, changes, cluster, proxies
from bench.istiod.cluster import PodRef, Shape
from bench.istiod.controlplane import ControlPlane
from bench.paths import workloads
from bench.store import RunStore, Sample

VIEW = "real-istiod"
XDS_SHORT = ("cds", "eds", "lds", "rds", "wds_address", "wds_authorization")
ISTIOD_TYPE = {"cds": "cds", "eds": "eds", "lds": "lds", "rds": "rds", "wds_address": "wds",
               "wds_authorization": "wads"}


@dataclass(frozen=True)
class SweepSpec:
    name: str
    modes: tuple[str, ...]
    sizes: tuple[int, ...]
    experiments: tuple[str, ...] = changes.EXPERIMENTS
    pods_per_service: int = 10
    services_per_namespace: int = 10
    pods_per_node: int = 10
    connect_batch: int = 500
    quiet_s: float = 2.0  # no response for this long after a change: istiod is done
    first_response_s: float = 15.0  # istiod's debounce is 100 ms, up to 10 s (PILOT_DEBOUNCE_MAX)
    timeout_s: float = 900.0
    exposure_sample: int = 3  # proxies per role whose config bodies are read
    compat: str = ""  # "1.27": Istio's compatibility profile
    istiod_env: tuple[tuple[str, str], ...] = ()  # more istiod environment, e.g. a rate limit
    istio_version: str = build.ISTIO_VERSION


class Usage:
    """CPU seconds and peak RSS of a set of processes, sampled every `interval_s` (RSS) and
    read exactly at mark() (CPU: the kernel's counters)."""

    def __init__(self, pids: Mapping[str, int], interval_s: float = 0.5) -> None:
        self.procs = {k: psutil.Process(v) for k, v in pids.items()}
        self.peak: dict[str, int] = dict.fromkeys(self.procs, 0)
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, args=(interval_s,), daemon=True)
        self._t.start()

    def _rss(self) -> None:
        for k, p in self.procs.items():
            try:
                self.peak[k] = max(self.peak[k], p.memory_info().rss)
            except psutil.Error:
                continue  # a dead process: its death is reported by the control plane

    def _run(self, interval_s: float) -> None:
        while not self._stop.wait(interval_s):
            self._rss()

    def cpu(self) -> dict[str, float]:
        out = {}
        for k, p in self.procs.items():
            try:
                t = p.cpu_times()
                out[k] = t.user + t.system
            except psutil.Error:
                out[k] = math.nan
        return out

    def reset_peak(self) -> None:
        self._rss()
        self.peak = {k: 0 for k in self.procs}
        self._rss()

    def stop(self) -> None:
        self._stop.set()
        self._t.join()


@dataclass
class Events:
    """mb-xdsload's events file, read forward from where the last read stopped."""

    path: Path
    offset: int = 0

    def read(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            data = f.read()
        end = data.rfind(b"\n") + 1
        self.offset += end
        return [json.loads(line) for line in data[:end].splitlines() if line.strip()]


@dataclass
class Point:
    """What one (size, mode) measured, for the sweep record and progress lines."""

    mode: str
    pods: int
    proxies: int = 0
    status: str = "ok"
    reason: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)


def _metric_totals(text: str) -> dict[str, float]:
    from bench.backends.kube.measure import parse_prometheus

    return {s.key(): s.value for s in parse_prometheus(text)}


def _family(values: Mapping[str, float], name: str, **match: str) -> float:
    total = 0.0
    for k, v in values.items():
        base, _, rest = k.partition("{")
        if base != name:
            continue
        if all(f'{lk}="{lv}"' in rest for lk, lv in match.items()):
            total += v
    return total


def _wait(what: str, cond: Callable[[], bool], cp: ControlPlane, timeout_s: float,
          poll_s: float = 0.2) -> float:
    t0 = time.monotonic()
    while True:
        dead = cp.alive()  # before the condition: a dead istiod fails the proxies' streams
        if dead:
            raise ProvisionError(dead[0])
        if cond():
            break
        if time.monotonic() - t0 > timeout_s:
            raise ProvisionError(f"{what}: not done after {timeout_s:.0f} s")
        time.sleep(poll_s)
    return time.monotonic() - t0


def held_digest(held: Mapping[str, Any]) -> dict[str, tuple[int, int, str]]:
    """Per type (count, bytes, digest) of what a proxy holds, from mb-xdsload's `held`."""
    out = {}
    for t, v in held.items():
        out[t] = (int(v[0]), int(v[1]), str(v[2]) if len(v) > 2 else "")
    return out


def short_type(url: str) -> str:
    tail = url.rsplit("/", 1)[-1]
    return {"envoy.config.cluster.v3.Cluster": "cds",
            "envoy.config.listener.v3.Listener": "lds",
            "envoy.config.route.v3.RouteConfiguration": "rds",
            "envoy.config.endpoint.v3.ClusterLoadAssignment": "eds",
            "istio.workload.Address": "wds_address",
            "istio.security.Authorization": "wds_authorization"}.get(tail, tail)


def exposure_of(role: str, bodies: Mapping[str, Mapping[str, str]], shape: Shape,
                refs: list[PodRef], policies: list[tuple[str, str]]) -> dict[str, int]:
    """Which of the mesh's services, workloads and policies one proxy's config names.

    `bodies`: type URL -> resource name -> base64 of the resource. Services: sidecar and
    waypoint clusters `outbound|PORT||HOST` / `inbound-vip|PORT|PROTO|HOST`
    (pilot/pkg/model/service.go BuildSubsetKey); ztunnel: Address resources named
    `NAMESPACE/HOST`. Workloads: for Envoy roles, a pod's IP as an endpoint's
    SocketAddress.address (field 2: tag 0x12, then its length, then the text, so that
    10.250.0.1 does not match inside 10.250.0.12); for a ztunnel, the Address resources
    named by the pod's uid (Kubernetes//Pod/NS/NAME). Policies: the policy's name in a
    listener's RBAC filter (istiod names its rules `ns[NS]-policy[NAME]-rule[i]`), or a WDS
    Authorization named `NS/NAME`."""
    import base64

    hosts = {f"{s}.{cluster.namespace_name(i // shape.services_per_namespace)}"
             f".svc.cluster.local" for i, s in
             ((i, cluster.service_name(i)) for i in range(shape.services))}
    services: set[str] = set()
    names: dict[str, set[str]] = {}
    parts: list[bytes] = []
    for url, res in bodies.items():
        t = short_type(url)
        names.setdefault(t, set()).update(res)
        for name, b64 in res.items():
            # sidecars: outbound|PORT||HOST; waypoints: inbound-vip|PORT|PROTO|HOST
            if t == "cds" and name.startswith(("outbound|", "inbound-vip|")):
                services.add(name.split("|")[-1])
            if t == "wds_address" and "/" in name and not name.startswith(
                    f"{proxies.cluster_id()}/"):
                services.add(name.split("/", 1)[1])
            parts.append(base64.b64decode(b64))
    blob = b"\0".join(parts)  # one join: bodies reach megabytes at 10,000 pods
    apps = [r for r in refs if r.service != cluster.WAYPOINT]
    if role == "ztunnel":
        addresses = names.get("wds_address", set())
        authz = names.get("wds_authorization", set())
        workloads = sum(1 for r in apps if
                        f"{proxies.cluster_id()}//Pod/{r.namespace}/{r.name}" in addresses)
        pol = sum(1 for ns, name in policies if f"{ns}/{name}" in authz)
    else:
        # every whole IPv4 address the config names, once: an endpoint's SocketAddress, or
        # a waypoint's HBONE target "IP:PORT" in its endpoint metadata
        seen = {m.decode() for m in re.findall(rb"(?<![0-9.])(\d{1,3}(?:\.\d{1,3}){3})(?![0-9])",
                                                blob)}
        workloads = sum(1 for r in apps if r.ip in seen)
        pol = sum(1 for ns, name in policies if f"-policy[{name}]-".encode() in blob)
    return {"services_known": len(services & hosts), "services_total": shape.services,
            "workloads_known": workloads, "workloads_total": len(apps),
            "policies_known": pol, "policies_total": len(policies)}


class PointRun:
    """One (size, mode): start, measure, stop."""

    def __init__(self, spec: SweepSpec, mode: str, pods: int, store: RunStore,
                 say: Callable[[str], None], paths: Mapping[str, Path]) -> None:
        self.spec, self.mode, self.pods, self.store, self.say = spec, mode, pods, store, say
        self.paths = paths
        self.shape = Shape(pods, mode, spec.pods_per_service, spec.services_per_namespace,
                           spec.pods_per_node, run_id=store.run_id)
        self.point = Point(mode, pods)
        self.work = store.dir / "istiod" / f"{mode}-{pods}"
        self.commit = build.pseudo_commit(spec.istio_version)[0]

    def row(self, metric: str, unit: str, value: float, entity: str = "mesh",
            **labels: Any) -> Sample:
        return Sample(source="istiod", metric=metric, unit=unit, value=float(value),
                      entity=entity, mode=self.mode, ts=time.time(),
                      labels={"view": VIEW, "pods": self.pods, "istio_commit": self.commit,
                              **{k: str(v) for k, v in labels.items()}})

    def run(self) -> Point:
        from bench.istiod.xdsload import XdsLoad

        self.work.mkdir(parents=True, exist_ok=True)
        t0 = time.monotonic()
        with ControlPlane.start(self.paths, self.spec.istio_version, compat=self.spec.compat,
                                extra_env=dict(self.spec.istiod_env), say=self.say,
                                run_id=self.store.run_id) as cp:
            self.point.timings.update({k: round(v, 2) for k, v in cp.timings.items()})
            # what istiod ran with (its limits and features), for the record
            self.point.summary["istiod_env"] = {k: v for k, v in cp.env.items()
                                                if k.startswith(("PILOT_", "ENABLE_", "INJECT"))}
            assert cp.api is not None
            usage = Usage({"istiod": cp.pid("istiod"), "kube-apiserver": cp.pid("kube-apiserver"),
                           "kine": cp.pid("kine")})
            try:
                t1 = time.monotonic()
                refs = cluster.write(cp.api, self.shape, self.say)
                self.point.timings["write_cluster_s"] = round(time.monotonic() - t1, 2)
                self._await_istiod(cp)
                px = proxies.for_mode(self.shape, refs)
                self.point.proxies = len(px)
                keep = self._kept(px)
                events = Events(self.work / "events.jsonl")
                with XdsLoad(self.paths["mb-xdsload"], f"127.0.0.1:{cp.ports.xds}",
                             [p.to_json(i in keep) for i, p in enumerate(px)],
                             events.path, self.work) as load:
                    if cp.memcap is not None:
                        cp.memcap.add(load.pid)
                    usage.procs["mb-xdsload"] = psutil.Process(load.pid)
                    usage.peak["mb-xdsload"] = 0
                    self._connect(cp, load, usage, px, events)
                    self._exposure(load, px, keep, refs, [])
                    applied: list[tuple[str, str]] = []
                    for exp in self.spec.experiments:
                        self._change(cp, load, usage, px, refs, events, exp, applied)
                    if applied:  # which proxies hold which of the policies now in the mesh
                        self._exposure(load, px, keep, refs, applied, state="after_changes")
                    self._syncz(cp, px)
            finally:
                usage.stop()
                if cp.memcap is not None:
                    peak = cp.memcap.peak()
                    self.point.summary["memory"] = {
                        "cgroup_peak_gib": round(peak / 2**30, 2),
                        "cgroup_limit_gib": round(cp.memcap.limit / 2**30, 2),
                        "cap": "on" if cp.memcap.path else cp.memcap.why}
                    self.store.append([self.row("controlplane_mem_peak", "bytes", peak,
                                                entity="cgroup", experiment="all")])
        self.point.timings["total_s"] = round(time.monotonic() - t0, 1)
        return self.point

    def _kept(self, px: list[proxies.Proxy]) -> set[int]:
        """The proxies whose config bodies are kept for the exposure read: the first
        `exposure_sample` of each role, spread over the namespaces."""
        by_role: dict[str, list[int]] = {}
        for i, p in enumerate(px):
            by_role.setdefault(p.role, []).append(i)
        keep: set[int] = set()
        for idx in by_role.values():
            step = max(1, len(idx) // self.spec.exposure_sample)
            keep.update(idx[::step][: self.spec.exposure_sample])
        return keep

    def _await_istiod(self, cp: ControlPlane) -> None:
        """istiod has seen the cluster: its service count holds ours and its push
        triggers stopped moving for quiet_s."""
        want = self.shape.services + (self.shape.namespaces if self.mode == "waypoint" else 0)
        last = [-1.0, time.monotonic()]

        def settled() -> bool:
            m = _metric_totals(cp.metrics())
            trig = _family(m, "pilot_push_triggers")
            now = time.monotonic()
            if trig != last[0]:
                last[0], last[1] = trig, now
            return _family(m, "pilot_services") >= want and now - last[1] >= self.spec.quiet_s
        waited = _wait("istiod to see the simulated cluster", settled, cp, self.spec.timeout_s)
        self.point.timings["istiod_catch_up_s"] = round(waited, 2)

    def _connect(self, cp: ControlPlane, load: Any, usage: Usage, px: list[proxies.Proxy],
                 events: Events) -> None:
        n = len(px)
        usage.reset_peak()
        cpu0 = usage.cpu()
        t0, started = time.monotonic(), time.time()
        for start in range(0, n, self.spec.connect_batch):
            load.connect(start, min(n, start + self.spec.connect_batch))
        last_say = [t0]

        def synced() -> bool:
            st = load.status()
            if st.get("streams_failed"):
                raise ProvisionError(f"{st['streams_failed']} simulated proxies' streams "
                                     f"failed: {st.get('errors', [])[:3]}")
            if time.monotonic() - last_say[0] > 15:
                last_say[0] = time.monotonic()
                self.say(f"  {self.mode} {self.pods} pods: {st['synced']}/{n} proxies synced "
                         f"({time.monotonic() - t0:.0f} s)")
            return int(st["synced"]) >= n
        try:
            _wait("every simulated proxy synced", synced, cp, self.spec.timeout_s, 0.5)
        except ProvisionError as err:  # say what was reached, and what it cost so far
            st, cpu = load.status(), usage.cpu()
            raise ProvisionError(
                f"{err.message}: {st['synced']}/{n} proxies synced, {st['responses']} responses, "
                f"{int(st['bytes']) / 2**30:.2f} GiB received; istiod "
                f"{cpu['istiod'] - cpu0['istiod']:.0f} CPU-s, peak "
                f"{usage.peak['istiod'] / 2**30:.1f} GiB; simulated proxies "
                f"{cpu.get('mb-xdsload', 0.0) - cpu0.get('mb-xdsload', 0.0):.0f} CPU-s, peak "
                f"{usage.peak.get('mb-xdsload', 0) / 2**30:.1f} GiB") from None
        wall = time.monotonic() - t0
        cpu1 = usage.cpu()
        load.flush()
        evs = events.read()
        total = sum(int(e.get("bytes", 0)) for e in evs if "bytes" in e)
        last_t = max((int(e["t"]) for e in evs if "bytes" in e), default=0)
        by_type: dict[tuple[str, str], int] = {}
        for e in evs:
            if "bytes" in e:
                rt = (px[int(e["p"])].role, str(e["type"]))
                by_type[rt] = by_type.get(rt, 0) + int(e["bytes"])
        last_ms = (last_t / 1e9 - started) * 1000.0 if last_t else 0.0
        rows = [self.row("proxies_total", "count", n, experiment="connect"),
                self.row("connect_wall", "s", wall, experiment="connect"),
                # from the first connect to the last response received (the wall time above
                # has the status poll's resolution)
                self.row("time_to_last_response", "ms", last_ms, experiment="connect"),
                self.row("connect_bytes_total", "bytes", total, experiment="connect"),
                self.row("responses", "count", sum(1 for e in evs if "bytes" in e),
                         experiment="connect"),
                # streams istiod refused (its request rate limit) and the proxy retried
                self.row("stream_retries", "count", int(load.status().get("retries", 0)),
                         experiment="connect")]
        for k, v in cpu1.items():
            rows.append(self.row("cpu", "s", v - cpu0.get(k, 0.0), entity=k,
                                 experiment="connect"))
            rows.append(self.row("rss_peak", "bytes", usage.peak.get(k, 0), entity=k,
                                 experiment="connect"))
        for (role, t), b in by_type.items():
            rows.append(self.row("push_bytes_by_type", "bytes", b, entity=role,
                                 experiment="connect", xds_type=t))
        self.store.append(rows)
        istiod_cpu = cpu1["istiod"] - cpu0["istiod"]
        self.point.summary["connect"] = {
            "wall_s": round(wall, 2), "bytes": total, "istiod_cpu_s": round(istiod_cpu, 2),
            "client_cpu_s": round(cpu1.get("mb-xdsload", 0) - cpu0.get("mb-xdsload", 0), 2),
            "istiod_rss_peak_mib": round(usage.peak["istiod"] / 2**20, 1),
            "last_response_after_s": round(last_ms / 1000.0, 2)}
        self.say(f"  {self.mode} {self.pods} pods: {n} proxies synced in {wall:.1f} s, "
                 f"{total / 2**20:.1f} MiB, istiod {istiod_cpu:.1f} CPU-s, "
                 f"peak {usage.peak['istiod'] / 2**20:.0f} MiB")

    def _exposure(self, load: Any, px: list[proxies.Proxy], keep: set[int],
                  refs: list[PodRef], policies: list[tuple[str, str]],
                  state: str = "initial") -> dict[int, dict[str, tuple[int, int, str]]]:
        held_path = self.work / f"held-{state}.json"
        raw = load.held(held_path)
        held = {int(k): held_digest(v) for k, v in raw.items()}
        rows = []
        for i, types in held.items():
            p = px[i]
            rows.append(self.row("config_bytes", "bytes", sum(v[1] for v in types.values()),
                                 entity=p.name, role=p.role, state=state,
                                 experiment="exposure"))
            rows.append(self.row("resources", "count", sum(v[0] for v in types.values()),
                                 entity=p.name, role=p.role, state=state,
                                 experiment="exposure"))
        if state == "initial" or policies:
            dump_path = self.work / f"dump-{state}.json"
            load.dump(sorted(keep), dump_path)
            bodies = json.loads(dump_path.read_text())
            for i in sorted(keep):
                p = px[i]
                ex = exposure_of(p.role, bodies.get(str(i), {}), self.shape, refs, policies)
                for m, v in ex.items():
                    rows.append(self.row(m, "count", v, entity=p.name, role=p.role,
                                         state=state, experiment="exposure"))
            dump_path.unlink(missing_ok=True)  # bodies can be large; the counts are kept
        self.store.append(rows)
        return held

    def _change(self, cp: ControlPlane, load: Any, usage: Usage, px: list[proxies.Proxy],
                refs: list[PodRef], events: Events, exp: str,
                applied: list[tuple[str, str]]) -> None:
        from bench.controlplane import pushrules

        before = {int(k): held_digest(v) for k, v in
                  load.held(self.work / f"held-before-{exp}.json").items()}
        load.flush()
        events.read()  # everything so far belongs to earlier steps
        mark = load.mark()
        m0 = _metric_totals(cp.metrics())
        usage.reset_peak()
        cpu0 = usage.cpu()
        t0 = time.time()
        for obj in changes.objects(exp, self.shape, refs):
            assert cp.api is not None
            cp.api.create(obj)
            if obj["kind"] == "AuthorizationPolicy":
                applied.append((obj["metadata"]["namespace"], obj["metadata"]["name"]))
        seen: dict[str, float] = {"t": time.monotonic(), "count": -1}

        def settled() -> bool:
            st = load.status()
            now = time.monotonic()
            if int(st["responses"]) != seen["count"]:
                seen["count"], seen["t"] = int(st["responses"]), now
                return False
            waited = now - seen["t"]
            m = _metric_totals(cp.metrics())
            triggered = _family(m, "pilot_push_triggers") > _family(m0, "pilot_push_triggers")
            quiet = self.spec.quiet_s if triggered else self.spec.first_response_s
            return bool(waited >= quiet and int(st["synced"]) >= len(px))
        _wait(f"{exp}: istiod's pushes to settle", settled, cp, self.spec.timeout_s, 0.2)
        cpu1 = usage.cpu()
        m1 = _metric_totals(cp.metrics())
        load.flush()
        evs = [e for e in events.read() if "bytes" in e and int(e.get("mark", 0)) >= mark]
        after = {int(k): held_digest(v) for k, v in
                 load.held(self.work / f"held-after-{exp}.json").items()}
        per_proxy_bytes: dict[int, int] = {}
        per_proxy_last: dict[int, int] = {}
        by_type: dict[tuple[str, str], int] = {}
        for e in evs:
            i = int(e["p"])
            per_proxy_bytes[i] = per_proxy_bytes.get(i, 0) + int(e["bytes"])
            per_proxy_last[i] = max(per_proxy_last.get(i, 0), int(e["t"]))
            rt = (px[i].role, str(e["type"]))
            by_type[rt] = by_type.get(rt, 0) + int(e["bytes"])
        changed = {i for i in range(len(px)) if before.get(i) != after.get(i)}
        # whole or incremental, as istiod sent it: a proxy's responses of a type carried
        # every resource it holds of that type after the change, including some it already
        # held (whole), or fewer, or only new ones (incremental)
        sent_n: dict[tuple[int, str], int] = {}
        for e in evs:
            key = (int(e["p"]), str(e["type"]))
            sent_n[key] = sent_n.get(key, 0) + int(e.get("n", 0))

        def count(held: dict[int, dict[str, tuple[int, int, str]]], i: int, t: str) -> int:
            return next((v[0] for u, v in held.get(i, {}).items() if short_type(u) == t), 0)
        how: dict[str, dict[str, list[str]]] = {}
        for (i, t), n in sent_n.items():
            held_n, new_n = count(after, i, t), count(after, i, t) - count(before, i, t)
            how.setdefault(px[i].role, {}).setdefault(t, []).append(
                "whole" if held_n and n >= held_n and n > new_n else "incr")
        observed = {role: ",".join(f"{t}:{max(set(v), key=v.count)}"
                                   for t, v in sorted(types.items()))
                    for role, types in how.items()}
        predictions = {
            "1.27.3": self._predict(px, refs, changes.change_keys(exp, self.mode, refs),
                                    pushrules.plan),
            pushrules.MAIN_VERSION: self._predict(
                px, refs, changes.main_keys(exp, self.mode, refs), pushrules.plan_main)}
        predicted, predicted_types = predictions["1.27.3"]
        predicted_main, predicted_main_types = predictions[pushrules.MAIN_VERSION]
        total = sum(per_proxy_bytes.values())
        last_ms = ((max(per_proxy_last.values()) / 1e9 - t0) * 1000.0
                   if per_proxy_last else 0.0)
        deltas = {k: m1[k] - m0.get(k, 0.0) for k in m1 if m1[k] != m0.get(k, 0.0)}
        rows = [self.row("proxies_total", "count", len(px), experiment=exp),
                self.row("proxies_pushed", "count", len(per_proxy_bytes), experiment=exp),
                self.row("proxies_changed", "count", len(changed), experiment=exp),
                self.row("proxies_predicted", "count", len(predicted), experiment=exp,
                         source_table="pushrules"),
                self.row("predicted_and_pushed", "count",
                         len(predicted & set(per_proxy_bytes)), experiment=exp),
                self.row("push_bytes_total", "bytes", total, experiment=exp),
                self.row("time_to_last_response", "ms", last_ms, experiment=exp)]
        for role in sorted({p.role for p in px}):
            idx = [i for i, p in enumerate(px) if p.role == role]
            rows += [self.row("proxies_pushed", "count",
                              sum(1 for i in idx if i in per_proxy_bytes),
                              entity=role, experiment=exp),
                     self.row("proxies_changed", "count", sum(1 for i in idx if i in changed),
                              entity=role, experiment=exp),
                     self.row("proxies_predicted", "count",
                              sum(1 for i in idx if i in predicted), entity=role,
                              experiment=exp),
                     self.row("proxies", "count", len(idx), entity=role, experiment=exp),
                     self.row("proxies_predicted_main", "count",
                              sum(1 for i in idx if i in predicted_main), entity=role,
                              experiment=exp),
                     self.row("types_pushed", "list", 0, entity=role, experiment=exp,
                              observed=observed.get(role, ""),
                              predicted=predicted_types.get(role, ""),
                              predicted_main=predicted_main_types.get(role, ""))]
        for (role, t), b in by_type.items():
            rows.append(self.row("push_bytes_by_type", "bytes", b, entity=role,
                                 experiment=exp, xds_type=t))
        for k, v in cpu1.items():
            rows.append(self.row("cpu", "s", v - cpu0.get(k, 0.0), entity=k, experiment=exp))
            rows.append(self.row("rss_peak", "bytes", usage.peak.get(k, 0), entity=k,
                                 experiment=exp))
        for name in ("pilot_xds_pushes", "pilot_push_triggers", "pilot_xds_config_size_bytes_sum",
                     "pilot_proxy_convergence_time_count", "pilot_proxy_convergence_time_sum",
                     "pilot_total_xds_rejects"):
            v = _family(deltas, name)
            rows.append(self.row("istiod_metric_delta", "count" if "sum" not in name else (
                "s" if "time" in name else "bytes"), v, experiment=exp, metric_name=name))
        for k, v in deltas.items():
            if k.startswith("pilot_xds_pushes{"):
                rows.append(self.row("istiod_pushes_by_type", "count", v, experiment=exp,
                                     series=k))
        # two counts of one thing: the responses our proxies received, per type, and
        # istiod's own count of responses it sent (pilot_xds_pushes{type}: cds, eds, lds,
        # rds, wds for Address, wads for Authorization; pkg/model/xds.go GetMetricType)
        received: dict[str, int] = {}
        for e in evs:
            t = ISTIOD_TYPE.get(str(e["type"]), str(e["type"]))
            received[t] = received.get(t, 0) + 1
        for t in sorted(set(received) | {ISTIOD_TYPE[x] for x in XDS_SHORT}):
            rows.append(self.row("responses_received", "count", received.get(t, 0),
                                 experiment=exp, xds_type=t))
            rows.append(self.row("istiod_responses_sent", "count",
                                 _family(deltas, "pilot_xds_pushes", type=t), experiment=exp,
                                 xds_type=t))
        self.store.append(rows)
        self.point.summary[exp] = {
            "pushed": len(per_proxy_bytes), "changed": len(changed),
            "predicted": len(predicted), "bytes": total, "last_ms": round(last_ms, 1),
            "istiod_cpu_s": round(cpu1["istiod"] - cpu0["istiod"], 3)}
        self.say(f"  {self.mode} {self.pods} pods: {exp}: {len(per_proxy_bytes)}/{len(px)} "
                 f"proxies pushed ({len(changed)} changed; our table predicts "
                 f"{len(predicted)}), {total / 1024:.1f} KiB, last response after "
                 f"{last_ms:.0f} ms, istiod {cpu1['istiod'] - cpu0['istiod']:.2f} CPU-s")

    def _predict(self, px: list[proxies.Proxy], refs: list[PodRef], keys: list[Any],
                 plan: Callable[..., Any]) -> tuple[set[int], dict[str, str]]:
        """Which proxies a push table pushes, and per role "type:whole|incr" as it says."""
        from bench.controlplane import pushrules

        service = {(r.namespace, r.name): r.service for r in refs}
        pushed: set[int] = set()
        types: dict[str, dict[str, str]] = {}
        for i, p in enumerate(px):
            svc = service.get((p.namespace, p.name), "")
            meta = pushrules.NodeMeta(p.role, p.namespace,
                                      (f"{svc}.{p.namespace}.svc.cluster.local",)
                                      if p.role == "sidecar" and svc else ())
            decision = plan(meta, keys)
            sent = {short_type(t): ("whole" if how == pushrules.WHOLE else "incr")
                    for t, how in decision.types.items()
                    if decision.pushed and how in (pushrules.WHOLE, pushrules.INCREMENTAL)}
            if sent:
                pushed.add(i)
                types.setdefault(p.role, {}).update(sent)
        return pushed, {role: ",".join(f"{t}:{h}" for t, h in sorted(v.items()))
                        for role, v in types.items()}

    def _syncz(self, cp: ControlPlane, px: list[proxies.Proxy]) -> None:
        """istiod's own view, read with the kube backends' parser: every simulated proxy is
        connected and has ACKed every type istiod last sent it."""
        from bench.backends.kube.push import parse_syncz

        ids = {p.node_id.split("~")[2] for p in px}
        state = parse_syncz(cp.syncz(), lambda proxy: proxy in ids)
        acked = sum(1 for types in state.values()
                    if types and all(s == a for s, a in types.values()))
        from bench.backends.kube.measure import ISTIOD_METRICS

        # the families the kube backends read (bench/backends/kube/measure.py); a reject
        # counter exists only once something was rejected, which nothing here should be
        families = {k.partition("{")[0].removesuffix("_sum").removesuffix("_count")
                    .removesuffix("_bucket") for k in _metric_totals(cp.metrics())}
        rows = [self.row("syncz_proxies", "count", len(state), experiment="syncz"),
                self.row("syncz_acked", "count", acked, experiment="syncz")]
        rows += [self.row("istiod_metric_present", "bool", float(f in families),
                          experiment="syncz", family=f)
                 for f in ISTIOD_METRICS if f != "pilot_total_xds_rejects"]
        self.store.append(rows)
        self.point.summary["syncz"] = {"listed": len(state), "acked": acked, "ours": len(ids)}


def run_sweep(spec: SweepSpec, store: RunStore, say: Callable[[str], None]) -> int:
    """Every size, smallest first, every mode; returns 0, or 3 when a size failed."""
    paths = build.require(istio=spec.istio_version)
    commit, date = build.pseudo_commit(spec.istio_version)
    store.update(istiod={"module": "istio.io/istio", "version": spec.istio_version,
                         "commit": commit, "date": date, "compat": spec.compat or "none",
                         "kubernetes": build.KUBERNETES_VERSION, "kine": build.KINE_VERSION},
                 sweep_spec=asdict(spec), points=store.manifest.get("points") or [])
    code = 0
    for pods in sorted(spec.sizes):
        for mode in spec.modes:
            say(f"real istiod: {mode}, {pods} pods")
            pr = PointRun(spec, mode, pods, store, say, paths)
            try:
                point = pr.run()
            except BenchError as e:
                point = pr.point
                point.status, point.reason = "failed", e.one_line()
                code = 3
                say(f"  {mode} {pods} pods FAILED: {point.reason}")
            store.manifest["points"].append(asdict(point))
            store.save_manifest()
    return code


SPEC_DIR = workloads() / "istiod"
MODES = ("sidecar", "ambient", "waypoint")


def read_spec(name_or_path: str, **overrides: Any) -> SweepSpec:
    """A real-istiod sweep from workloads/istiod/<name>.yaml (or a path): unknown keys,
    modes and experiments are refused with the valid ones named."""
    import dataclasses

    import yaml

    from bench.errors import ScenarioError

    p = Path(name_or_path)
    if not p.suffix:
        p = SPEC_DIR / f"{name_or_path}.yaml"
    if not p.exists():
        known = ", ".join(sorted(x.stem for x in SPEC_DIR.glob("*.yaml")))
        raise ScenarioError(f"no real-istiod sweep {name_or_path!r}", hint=f"one of: {known}")
    raw = yaml.safe_load(p.read_text()) or {}
    raw.pop("description", None)
    raw.update({k: v for k, v in overrides.items() if v is not None})
    fields = {f.name for f in dataclasses.fields(SweepSpec)}
    unknown = sorted(set(raw) - fields)
    if unknown:
        raise ScenarioError(f"{p.name}: unknown key(s) {', '.join(unknown)}",
                            hint="known keys: " + ", ".join(sorted(fields)))
    for k in ("modes", "sizes", "experiments"):
        if k in raw:
            raw[k] = tuple(raw[k])
    if "istiod_env" in raw:
        raw["istiod_env"] = tuple((str(k), str(v)) for k, v in dict(raw["istiod_env"]).items())
    spec = SweepSpec(**raw)
    bad = [m for m in spec.modes if m not in MODES]
    if bad:
        raise ScenarioError(f"{p.name}: unknown mode(s) {', '.join(bad)}",
                            hint="modes: " + ", ".join(MODES) + " (no baseline: nothing to push)")
    bad = [e for e in spec.experiments if e not in changes.EXPERIMENTS]
    if bad:
        raise ScenarioError(f"{p.name}: unknown experiment(s) {', '.join(bad)}",
                            hint="experiments: " + ", ".join(changes.EXPERIMENTS))
    if not spec.sizes or any(int(s) < 1 for s in spec.sizes):
        raise ScenarioError(f"{p.name}: sizes must be pod counts >= 1", hint="sizes: [10, 100]")
    return spec


def into_results(spec: SweepSpec, results: Path, add_to: Path | None = None) -> tuple[Path, int]:
    """Run the sweep into a new results/<id>-fanout-istiod/ (or, with `add_to`, more sizes
    into an earlier one: one report, one fit over all of them), then write its report;
    the directory and the exit code."""
    from analysis.istiod import write_report
    from bench.run.context import log
    from bench.store import new_run_id

    if add_to is not None:
        if not (add_to / "manifest.json").exists():
            raise UserError(f"{add_to} is not a results directory",
                            hint="--add-to results/<id>-fanout-istiod")
        store = RunStore.reopen(add_to)
        if store.manifest.get("kind") != "istiod-sweep":
            raise UserError(f"{add_to} is not a real-istiod sweep", hint="--add-to "
                            "results/<id>-fanout-istiod")
    else:
        store = RunStore.create(results, new_run_id(spec.name),
                                {"scenario": spec.name, "kind": "istiod-sweep",
                                 "backend": "istiod"})
    try:
        code = run_sweep(spec, store, log)
    finally:
        store.finalize()
    for p in write_report(store.dir):
        log(f"wrote {p}")
    return store.dir, code
