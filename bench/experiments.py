"""Config-push experiments: change the mesh once, and measure who received it, how many
bytes it cost, and how long until every proxy applied it.

Which proxies a change reaches, which xDS types and whether whole or incremental, is
Istio 1.27's push decision (bench/controlplane/pushrules.py, applied by the control plane
after istiod's debounce): the experiment names the ConfigKeys istiod would see
(pushrules.change_keys), the changed mesh is rendered for every proxy by the same builders
(bench/controlplane/envoy_config.py; wds.py for the ztunnel's WDS), and the control plane
sends what the decision says. Bytes, sends, ACK times and NACKs come from the control
plane's own accounting; the proxies' view from Envoy's counters (sidecars, waypoints) and
the ztunnel WDS client's ACKs (ztunnels).

The ztunnel role has two configs: its WDS resources (Istio's shapes; what the claims use)
and the Envoy data path of this emulation (accounted apart as `datapath`).
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable
from typing import Any

from bench.backends.base import Abilities, ServesXds
from bench.changes import CHANGES, EXPOSURE, L4_AUTHZ, L7_ROUTE, NEW_SERVICE
from bench.controlplane.resources import (
    ADDRESS_TYPE,
    AUTHORIZATION_TYPE,
    CLUSTER_TYPE,
    ENDPOINT_TYPE,
    LISTENER_TYPE,
    ROUTE_TYPE,
    WDS_TYPES,
)
from bench.errors import ModeBroken, UserError
from bench.faults import inject
from bench.mesh import VIP_NET, AuthorizationPolicy, Mesh, Service
from bench.outcomes import PushOutcome
from bench.probes.pushwire import KernelPush, PushWireProbe
from bench.store import Cell, Sample

EXPERIMENTS = {c.name: c.description for c in CHANGES.values()}
INTRUDER = "spiffe://cluster.local/ns/intruder/sa/default"  # an identity no workload has
SHORT = {CLUSTER_TYPE: "cds", ENDPOINT_TYPE: "eds", LISTENER_TYPE: "lds", ROUTE_TYPE: "rds",
         ADDRESS_TYPE: "wds_address", AUTHORIZATION_TYPE: "wds_authorization"}
# Envoy's own count of applied updates (delta and SotW alike): CDS, LDS, each RDS
# subscription, each EDS cluster
APPLIED = (r"^(cluster_manager\.cds|listener_manager\.lds)\.update_(success|rejected)$"
           r"|\.rds\..*\.update_(success|rejected)$|^cluster\..*\.update_(success|rejected)$")


def changed_mesh(mesh: Mesh, experiment: str) -> Mesh:
    """The mesh after the change named `experiment`."""
    if experiment == NEW_SERVICE.name:
        base = mesh.services[0]
        n = len(mesh.services)
        new = Service(f"svc-{n}", base.namespace, str(VIP_NET.network_address + 10 + n),
                      base.endpoints, waypoint=base.waypoint)
        return dataclasses.replace(mesh, services=(*mesh.services, new))
    if experiment == L4_AUTHZ.name:
        first = mesh.services[0]
        policy = AuthorizationPolicy(f"deny-intruder-{len(mesh.policies)}", first.namespace,
                                     first.name, (INTRUDER,), action="DENY")
        return dataclasses.replace(mesh, policies=(*mesh.policies, policy))
    if experiment == L7_ROUTE.name:
        first = mesh.services[0]
        changed = dataclasses.replace(first, route_timeout_s=first.route_timeout_s / 2)
        return dataclasses.replace(mesh, services=(changed, *mesh.services[1:]))
    raise UserError(f"unknown experiment '{experiment}'",
                    hint=f"experiments are: {', '.join(EXPERIMENTS)}")


def change_keys(mesh: Mesh, experiment: str) -> list[dict[str, str]]:
    """The ConfigKeys istiod would see for `experiment` on `mesh` (pushrules.change_keys)."""
    from bench.controlplane.pushrules import change_keys as keys

    after = changed_mesh(mesh, experiment)
    if experiment == NEW_SERVICE.name:
        svc, policy = after.services[-1], ""
    elif experiment == L4_AUTHZ.name:
        pol = after.policies[-1]
        svc, policy = next(s for s in mesh.services if s.name == pol.selector), pol.name
    else:
        svc, policy = mesh.services[0], ""
    return [dataclasses.asdict(k) for k in keys(experiment, mesh.mode, svc.namespace,
                                                  svc.fqdn, policy)]




def _counters(backend: ServesXds, proxies: tuple[str, ...]) -> dict[str, float]:
    """Per proxy, the sum of its applied-update counters (APPLIED); for a ztunnel, the ACKs
    of its WDS client (what the ztunnel role applied)."""
    wds = backend.wds_state()
    out = {}
    for name in proxies:
        if name in wds:
            out[name] = float(wds[name].get("acks", 0))
        else:
            out[name] = sum(backend.stats(name, filter=APPLIED).values())
    return out


def _cpu_seconds(pids: dict[str, int]) -> float:
    """CPU of the processes, whole-process scheduler clocks in ns (utime + stime tick at
    10 ms: a small push would read as 0); a process that is gone counts as 0."""
    from bench.probes.resources import process_cpu_ns

    total = 0
    for pid in pids.values():
        try:
            total += process_cpu_ns(pid)
        except OSError:
            continue
    return total / 1e9


def _wait_acked(cp: Any, timeout_s: float, broken: Callable[[], list[str]] | None
                ) -> dict[str, Any]:
    """cp.wait_acked, but in slices of a second with `broken()` asked between them: a
    proxy that died never ACKs, and waiting out the whole timeout for it helps no one."""
    if broken is None:
        return cp.wait_acked(timeout_s=timeout_s)  # type: ignore[no-any-return]
    deadline = time.monotonic() + timeout_s
    while True:
        left = deadline - time.monotonic()
        waited: dict[str, Any] = cp.wait_acked(timeout_s=max(0.1, min(1.0, left)))
        if not waited.get("stragglers") or left <= 1.0:
            return waited
        dead = broken()
        if dead:
            raise ModeBroken(f"process died during the push: {dead[0]}")


def run_push(abilities: Abilities, mesh: Mesh, experiment: str, timeout_s: float = 60.0,
             wire: PushWireProbe | None = None, wire_skip: str = "",
             broken: Callable[[], list[str]] | None = None) -> PushOutcome:
    """Apply `experiment` to the running deployment of `mesh` (config source xds) and wait
    until every proxy has ACKed; returns what each view saw. With `wire` (attached to the
    control plane's process), also the kernel's view, from the change to the last ACK.
    With `broken` (the backend's check of the deployment), a process dying while the
    ACKs are awaited raises ModeBroken at once instead of waiting out timeout_s."""
    if abilities.istiod is not None:  # kind / cluster: real istiod
        return abilities.istiod.push_experiment(mesh, experiment, timeout_s=timeout_s, wire=wire)
    backend = abilities.xds
    if backend is None:
        raise UserError("this backend cannot push config changes",
                        hint="remove `experiments` from the scenario")
    cp = backend.controlplane
    if cp is None:
        raise UserError("push experiments need proxy.config_source: xds",
                        hint="set proxy.config_source: xds in the scenario")
    proxies = tuple(p.name for p in mesh.proxies)
    before = _counters(backend, proxies)
    cursor = cp.event_cursor()
    pids = backend.proxy_pids()
    proxy_cpu0 = _cpu_seconds(pids)
    cpu0 = cp.cpu_seconds()
    after_mesh = changed_mesh(mesh, experiment)
    keys = change_keys(mesh, experiment)
    if wire is not None:
        wire.reset()
    calls0 = len(cp.replies)
    t0 = time.time()
    answer = backend.reconfigure(after_mesh, change=keys) or {}
    waited = _wait_acked(cp, timeout_s, broken)
    kernel, kernel_skip = None, wire_skip
    if wire is not None:
        try:
            inject("push_kernel.read", mesh.mode, experiment)
            kernel = KernelPush.of(wire.read(), cp.replies[calls0:], wire.overflowed())
        except Exception as err:  # the kernel view is lost for this push, on record (caller)
            kernel_skip = f"kernel probe read failed: {type(err).__name__}: {err}"
    cpu1 = cp.cpu_seconds()
    proxy_cpu = _cpu_seconds(pids) - proxy_cpu0 if pids else None
    events, _ = cp.events(cursor)
    after = _counters(backend, proxies)
    roles = {p.name: p.role for p in mesh.proxies}
    sends = [e for e in events if e["event"] == "send" and not e.get("stale")]
    bytes_by: dict[str, int] = {}
    datapath: dict[str, int] = {}
    count_by: dict[str, int] = {}
    by_type: dict[str, dict[str, int]] = {}
    istio_nonces = set()
    for e in sends:
        node, t = e["node"], e["type"]
        role = roles.get(node, "")
        kind = SHORT.get(t, t)
        if role == "ztunnel" and t not in WDS_TYPES:
            datapath[node] = datapath.get(node, 0) + int(e["bytes"])
            kind = "datapath_" + kind
        else:
            bytes_by[node] = bytes_by.get(node, 0) + int(e["bytes"])
            count_by[node] = count_by.get(node, 0) + 1
            istio_nonces.add(e["nonce"])
        by_type.setdefault(role, {})
        by_type[role][kind] = by_type[role].get(kind, 0) + int(e["bytes"])
    last_ack: dict[str, float] = {}
    for e in events:
        if e["event"] == "ack" and e["nonce"] in istio_nonces:
            last_ack[e["node"]] = max(last_ack.get(e["node"], 0.0), float(e["ts"]))
    applied = {n: int(after[n] - before[n]) for n in proxies}
    first_send = min((float(e["ts"]) for e in sends if e["nonce"] in istio_nonces),
                     default=0.0)
    differs = answer.get("differs") or {}
    # a proxy's config "changed" when what it holds differs (the ztunnel role: its WDS)
    changed = tuple(sorted(n for n, ts in differs.items()
                           if roles.get(n) != "ztunnel" or set(ts) & set(WDS_TYPES)))
    pushed = tuple(sorted(answer.get("pushed") or ()))
    return PushOutcome(
        experiment=experiment, mode=mesh.mode, proxies=proxies, roles=roles,
        updated=tuple(sorted(bytes_by)), bytes_by_proxy=bytes_by, sends_by_proxy=count_by,
        converge_ms={n: (ts - t0) * 1000.0 for n, ts in last_ack.items()},
        nacks=tuple(f"{e['node']}: {e.get('detail', '')}" for e in events
                    if e["event"] == "nack"),
        stragglers=dict(waited.get("stragglers") or {}), cp_cpu_s=cpu1 - cpu0, applied=applied,
        changed=changed, scoped=tuple(n for n in pushed if n not in changed and n in bytes_by),
        pushed=pushed, bytes_by_type=by_type, datapath_bytes_by_proxy=datapath,
        unplanned=dict(answer.get("unplanned") or {}),
        debounce_ms=float(answer.get("debounce_s", 0.0)) * 1000.0,
        kernel=kernel, kernel_skip=kernel_skip, proxies_cpu_s=proxy_cpu,
        render_s=float(answer.get("render_s", 0.0)), convert_s=float(answer.get("convert_s", 0.0)),
        send_to_ack_ms=((max(last_ack.values()) - first_send) * 1000.0
                        if last_ack and first_send else 0.0))


def to_samples(outcome: PushOutcome, cell: Cell) -> list[Sample]:
    """Tidy rows, source "xds": totals per experiment and per-proxy bytes and convergence."""
    labels = {"experiment": outcome.experiment, "view": outcome.view}

    def row(metric: str, unit: str, value: float, entity: str = "mesh",
            **extra: Any) -> Sample:
        return Sample.for_cell(cell, source="xds", metric=metric, unit=unit, value=float(value),
                               entity=entity, labels={**labels, **extra})

    conv = list(outcome.converge_ms.values())
    rows = [row("proxies_total", "count", len(outcome.proxies)),
            row("proxies_updated", "count", len(outcome.updated)),
            row("proxies_changed", "count", len(outcome.changed)),
            row("push_bytes_total", "bytes", outcome.bytes_total),
            row("nacks", "count", len(outcome.nacks)),
            row("stragglers", "count", len(outcome.stragglers)),
            row("controlplane_cpu", "s", outcome.cp_cpu_s),
            *([row("proxies_cpu", "s", outcome.proxies_cpu_s, view="proxies")]
              if outcome.proxies_cpu_s is not None else []),
            row("proxies_applied", "count", sum(1 for v in outcome.applied.values() if v > 0),
                view="proxies")]
    if not outcome.istiod:
        rows += [row("proxies_pushed", "count", len(outcome.pushed)),
                 row("unplanned_sends", "count", sum(len(v) for v in outcome.unplanned.values())),
                 row("debounce_time", "ms", outcome.debounce_ms)]
        for role, types in outcome.bytes_by_type.items():
            for kind, b in types.items():
                rows.append(row("push_bytes_by_type", "bytes", b, entity=role, xds_type=kind))
        for role in sorted({r for r in outcome.roles.values()}):
            names = [n for n, r in outcome.roles.items() if r == role]
            per = [outcome.bytes_by_proxy.get(n, 0) for n in names]
            rows.append(row("push_bytes_per_proxy_max", "bytes", max(per, default=0),
                            entity=role))
            if role == "ztunnel":
                rows.append(row("push_bytes_per_proxy_max", "bytes",
                                max((outcome.datapath_bytes_by_proxy.get(n, 0) for n in names),
                                    default=0), entity=role, config="envoy-datapath"))
    if outcome.kernel is not None:
        k = outcome.kernel
        rows += [row("kernel_sockets_written", "count", k.sockets, view="kernel",
                     control_calls_subtracted=str(k.control_calls),
                     small_sockets=str(k.small_sockets),
                     unexplained_control=str(k.unexplained_control)),
                 row("kernel_bytes_written", "bytes", k.bytes, view="kernel",
                     control_bytes_subtracted=str(k.control_bytes))]
    if outcome.istiod:
        n = outcome.istiod.get("convergence_to_send_count", 0.0)
        rows.append(row("istiod_pushes", "count", outcome.istiod.get("pushes", 0.0)))
        if n > 0:
            rows.append(row("istiod_convergence_to_send_mean", "ms",
                            1000.0 * outcome.istiod.get("convergence_to_send_sum_s", 0.0) / n))
    else:
        rows += [row("render_time", "ms", outcome.render_s * 1000.0),
                 row("convert_time", "ms", outcome.convert_s * 1000.0)]
    if conv and not outcome.istiod:
        rows.append(row("send_to_last_ack", "ms", outcome.send_to_ack_ms))
    if conv:
        rows += [row("convergence_p50", "ms", statistics.median(conv)),
                 row("convergence_max", "ms", max(conv))]
    for name in outcome.updated:
        if name in outcome.bytes_by_proxy:  # istiod's metrics have no per-proxy bytes
            rows.append(row("push_bytes", "bytes", outcome.bytes_by_proxy[name], entity=name))
        if name in outcome.converge_ms:
            rows.append(row("convergence", "ms", outcome.converge_ms[name], entity=name))
    return rows


def exposure_samples(mesh: Mesh, configs: dict[str, Any], cell: Cell,
                     state: str = "initial", dump_bytes: Any = None,
                     sizes: dict[str, Any] | None = None) -> list[Sample]:
    """Per proxy: how many of the mesh's services, workloads and policies its config names,
    and its config size in bytes of serialised xDS resources (the same bytes a full push
    would send; `sizes`, name -> {type: (bytes, resources)} or (bytes, resources), when
    the control plane already knows them); a ztunnel's figures are its WDS (Istio's
    shapes), its Envoy data path apart (datapath_config_bytes); with `dump_bytes` (proxy
    name -> bytes), also the size of what the Envoy itself reports holding (/config_dump,
    JSON, so larger than the protobuf). `state`
    labels the mesh: "initial", or "after_changes" (the experiments applied, so that the
    policies they add are counted)."""
    import json
    import re

    from bench.controlplane.resources import snapshot_dict
    from bench.controlplane.snapshot import Converter

    converter = Converter()

    rows = []
    roles = {p.name: p.role for p in mesh.proxies}
    from bench.controlplane import wds

    wds_snap = wds.ztunnel_snapshot(mesh)
    for name, cfg in configs.items():
        role = roles.get(name, "")
        datapath: tuple[int, int] | None = None
        by_type = sizes.get(name) if sizes is not None else None
        if role == "ztunnel":
            # what istiod serves the ztunnel role: its WDS (every workload and service
            # address, every ambient policy); the Envoy data path is reported apart
            uids = {a["workload"]["uid"] for a in wds_snap["addresses"] if "workload" in a}
            hosts = {a["service"]["hostname"] for a in wds_snap["addresses"]
                     if "service" in a}
            known = sum(1 for svc in mesh.services if svc.fqdn in hosts)
            workloads = sum(1 for pod in mesh.pods
                            if f"{wds.CLUSTER_ID}//Pod/{pod.namespace}/{pod.name}" in uids)
            held = {f"{a['namespace']}/{a['name']}" for a in wds_snap["authorizations"]}
            policies = sum(1 for pol in mesh.policies
                           if f"{pol.namespace}/{pol.name}" in held)
        else:
            text = json.dumps([cfg.listeners, cfg.clusters])
            known = sum(1 for svc in mesh.services if svc.vip in text or svc.fqdn in text)
            ips = set(re.findall(r"\d+\.\d+\.\d+\.\d+", text))
            workloads = sum(1 for pod in mesh.pods if pod.ip in ips)
            policies = sum(1 for pol in mesh.policies if f'"{pol.key}"' in text)
        if isinstance(by_type, dict):  # the control plane's serialised snapshot, per type
            istio = {t: v for t, v in by_type.items()
                     if role != "ztunnel" or t in WDS_TYPES}
            size, count = (sum(v[0] for v in istio.values()),
                           sum(v[1] for v in istio.values()))
            if role == "ztunnel":
                rest = [v for t, v in by_type.items() if t not in WDS_TYPES]
                datapath = (sum(v[0] for v in rest), sum(v[1] for v in rest))
        elif by_type is not None:
            size, count = by_type
        else:
            # the same measure as the control plane's: resources packed as a push sends them
            envoy = converter.snapshot(snapshot_dict(cfg))
            served = converter.snapshot(
                {k: v for k, v in wds_snap.items()}) if role == "ztunnel" else envoy
            size = sum(r.size for t, r in served.by_type.items()
                       if role != "ztunnel" or t in WDS_TYPES)
            count = sum(len(r.names) for t, r in served.by_type.items()
                        if role != "ztunnel" or t in WDS_TYPES)
            if role == "ztunnel":
                datapath = (envoy.size, sum(len(r.names) for r in envoy.by_type.values()))
        labels = {"view": EXPOSURE, "role": role, "state": state}
        rows += [Sample.for_cell(cell, source="xds", metric=m, unit=u, value=float(v),
                                 entity=name, labels=labels)
                 for m, u, v in (("services_known", "count", known),
                                 ("services_total", "count", len(mesh.services)),
                                 ("workloads_known", "count", workloads),
                                 ("workloads_total", "count", len(mesh.pods)),
                                 ("policies_known", "count", policies),
                                 ("policies_total", "count", len(mesh.policies)),
                                 ("config_bytes", "bytes", size),
                                 ("resources", "count", count))]
        if datapath is not None:
            rows += [Sample.for_cell(cell, source="xds", metric=m, unit=u, value=float(v),
                                     entity=name, labels={**labels, "config": "envoy-datapath"})
                     for m, u, v in (("datapath_config_bytes", "bytes", datapath[0]),
                                     ("datapath_resources", "count", datapath[1]))]
        if dump_bytes is not None:  # the proxy's own view: its /config_dump
            rows.append(Sample.for_cell(cell, source="xds", metric="config_dump_bytes",
                                        unit="bytes", value=float(dump_bytes(name)), entity=name,
                                        labels={**labels, "view": "exposure-envoy"}))
    return rows
