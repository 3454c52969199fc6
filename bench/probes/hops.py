"""Per-hop latency: how long each proxy on the request path holds a request and a response.

For every proxy process on the path (client sidecar, server sidecar; client ztunnel,
[waypoint], server ztunnel) and each direction, the residence time is

    request:  first request bytes arrive in a downstream socket of the proxy
              -> the proxy's send of them on an upstream socket enters TCP
    response: first response bytes arrive in that upstream socket
              -> the proxy's send of them on that downstream socket enters TCP

measured in the kernel with BCC from tracepoints only (`sock:sk_data_ready`,
`sock:sock_recv_length`, `sock:sock_send_length`, `sock:inet_sock_set_state`,
`tcp:tcp_sendmsg_locked`; no syscall tracepoint: enabling one slows every syscall of every
process), aggregated into log-linear histograms
in BPF maps and read once per measurement window: nothing crosses to user space per
request. Between two hops lies the kernel's transmit path of the sender (send syscall,
TCP/IP, veths, bridge, iptables, up to the next socket's receive queue): that is the
"network and kernel" remainder of the end-to-end overhead, in no hop.

A request is measured only when its response comes back through the same two sockets of
the proxy (pair confirmation: see the header of `hops.c`), so concurrent requests on one
proxy thread do not borrow each other's times; what cannot be attributed is counted
(`unmatched`), never guessed.

The BPF program is `hops.c` beside this file, a template whose placeholders are
filled from the run (`HopProbe.generate_c`); see its header for the matching rules and
`python -m bench.probes.hops --print-bpf --target PID:ENTITY:ROLE` to see the filled text.

Usage (the runner attaches the probe before load starts, then per window):

    probe = HopProbe(targets_for(deployment))
    probe.start()               # PrerequisiteError with a one-line reason and hint
    ... warm-up ...
    probe.reset()               # window starts
    ... measure ...
    rows = summarize(probe.read(), cell)
    probe.stop()

Known limits:
- a request whose response never comes back (timeout, reset) is not measured, nor counted;
- a response that two outstanding upstream answers could belong to is `unmatched`
  (HTTP/1 downstreams make this rare: one request at a time per connection);
- on a proxy with HTTP/2 on both sides (the waypoint), overlapping streams share one socket
  pair: only one of them is measured per overlap, the others are not counted;
- at most PENDING arrivals per thread and FLIGHT unconfirmed requests per upstream socket
  are kept; beyond that requests are `unmatched` (evicted);
- the first request on a new TLS connection may include handshake round trips, end at the
  ClientHello, or be lost (payload bytes are never read);
- sockets are classified by ports only (a proxy's own listeners and upstream ports).
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import re
import struct
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from bench.errors import PrerequisiteError
from bench.mesh import APP_PORT, HBONE_PORT, INBOUND_PORT, OUTBOUND_PORT
from bench.store import Cell, Sample

SOURCE = "hops"
C_TEMPLATE = Path(__file__).with_suffix(".c")
# headers shared by the BPF programs (hops.c, client_latency.c): `#include "sendstamp.h"`
BPF_INCLUDE = Path(__file__).with_name("bpf")
BPF_CFLAGS = ["-Wno-unused-function", f"-I{BPF_INCLUDE}"]
TRACEFS = Path("/sys/kernel/tracing")
BTF_VMLINUX = Path("/sys/kernel/btf/vmlinux")
TRACEPOINTS = (
    "sock/sk_data_ready", "sock/sock_recv_length", "sock/sock_send_length",
    "sock/inet_sock_set_state", "tcp/tcp_sendmsg_locked",
)
DIRECTIONS = ("request", "response")
# counter slots per (target, direction) in the BPF map; keep in step with C_* in hops.c
COUNTERS = ("matched", "unmatched", "ambiguous", "control", "sum_ns", "unclassified", "evicted",
            "no_arrival")
PLACEHOLDER = re.compile(r"__[A-Z][A-Z0-9_]*__")

# ---- histogram layout: log-linear, microseconds --------------------------------------------
LINEAR_BITS = 6
LINEAR_US = 1 << LINEAR_BITS        # 1 us buckets below 64 us
SUB_BITS = 3
SUB = 1 << SUB_BITS                 # 8 buckets per power of two above
MAX_EXP = 20                        # up to 2^20 us = 1.05 s; above: one overflow bucket
NBUCKETS = LINEAR_US + (MAX_EXP - LINEAR_BITS) * SUB + 1
OVERFLOW = NBUCKETS - 1
LAYOUT = (f"log-linear: 1 us below {LINEAR_US} us, {SUB} per power of two up to "
          f"{(1 << MAX_EXP) / 1e6:.2f} s")

# ---- sizes of the BPF maps ------------------------------------------------------------------
PENDING = 8                 # arrivals waiting per thread and direction (power of two)
FLIGHT = 8                  # unconfirmed requests remembered per upstream socket (power of two)
MAX_THREADS = 4096          # per-thread state entries (all targets together)
MAX_SOCKS = 65536           # LRU of arrival times per socket
MAX_AGE_NS = 60_000_000_000  # an arrival older than this is never matched (route timeout 15 s)

# Ports per proxy role on the local backend: local listener ports of accepted (downstream)
# sockets, remote ports of upstream sockets. 8080 (APP_PORT) is both the app behind a server
# sidecar or ztunnel and the server pod port the client sidecar connects to (redirected to
# 15006 on the server pod, but the client's socket keeps remote port 8080).
ROLE_PORTS: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "sidecar": ((OUTBOUND_PORT, INBOUND_PORT), (APP_PORT,)),
    "ztunnel": ((OUTBOUND_PORT, HBONE_PORT), (HBONE_PORT, APP_PORT)),
    "waypoint": ((HBONE_PORT,), (HBONE_PORT,)),
}
# connections on these ports carry several streams (HTTP/2 CONNECT, i.e. HBONE)
MULTIPLEXED_PORTS = (HBONE_PORT,)


@dataclass(frozen=True)
class HopTarget:
    """One proxy process to watch.

    downstream_ports: local ports that mark an accepted downstream socket (its listeners);
    upstream_ports: remote ports that mark an upstream socket; multiplexed_ports: ports
    (local for downstream, remote for upstream) whose connections carry HTTP/2 streams;
    side: where it sits on the path ("client", "server", "waypoint"), for labels.
    """

    pid: int
    entity: str
    role: str
    downstream_ports: tuple[int, ...]
    upstream_ports: tuple[int, ...]
    multiplexed_ports: tuple[int, ...] = MULTIPLEXED_PORTS
    side: str = ""

    @classmethod
    def for_role(cls, pid: int, entity: str, role: str, side: str = "") -> HopTarget:
        down, up = ROLE_PORTS[role]
        return cls(pid, entity, role, down, up, MULTIPLEXED_PORTS, side)


@dataclass(frozen=True)
class HopHistogram:
    """One proxy, one direction, one window: bucket counts and the attribution counters.

    matched: requests measured (= sum of counts; request and response hops of a request are
    confirmed together, so both directions match the same requests). unmatched: requests
    seen but not attributable: ambiguous (two upstream answers could belong to the
    downstream), evicted (more unconfirmed requests than the maps keep), or too many arrivals
    waiting on one thread. control: arrivals dropped as protocol exchanges plus TLS control
    records sent. unclassified: socket events of this proxy on ports in neither list
    (entity-wide: the same number in both directions). no_arrival: arrivals whose start fell
    back to the proxy's read (their sk_data_ready was not seen, e.g. before attach).
    """

    entity: str
    role: str
    side: str
    direction: str
    counts: tuple[int, ...]
    matched: int
    unmatched: int
    unclassified: int
    ambiguous: int = 0
    evicted: int = 0
    control: int = 0
    no_arrival: int = 0
    sum_ns: int = 0

    @property
    def count(self) -> int:
        return sum(self.counts)

    @property
    def mean_us(self) -> float:
        return self.sum_ns / 1000.0 / self.matched if self.matched else math.nan

    def percentile(self, q: float) -> float:
        return percentile(self.counts, q)[0]


# ---- bucket <-> value (pure; the C side computes the same) -----------------------------------

def bucket_of(us: float) -> int:
    """Bucket index of a duration in microseconds (the kernel floors ns/1000 first)."""
    v = int(us)
    if v < 0:
        raise ValueError(f"negative duration {us}")
    if v < LINEAR_US:
        return v
    k = v.bit_length() - 1
    if k >= MAX_EXP:
        return OVERFLOW
    sub = (v >> (k - SUB_BITS)) & (SUB - 1)
    return LINEAR_US + ((k - LINEAR_BITS) << SUB_BITS) + sub


def bucket_bounds(i: int) -> tuple[float, float]:
    """[lo, hi) of bucket i in microseconds; the overflow bucket's hi is inf."""
    if not 0 <= i < NBUCKETS:
        raise IndexError(i)
    if i < LINEAR_US:
        return float(i), float(i + 1)
    if i == OVERFLOW:
        return float(1 << MAX_EXP), math.inf
    k = LINEAR_BITS + ((i - LINEAR_US) >> SUB_BITS)
    sub = (i - LINEAR_US) & (SUB - 1)
    width = 1 << (k - SUB_BITS)
    lo = (1 << k) + sub * width
    return float(lo), float(lo + width)


def percentile(counts: Sequence[int], q: float) -> tuple[float, float]:
    """(value, bucket width) of quantile q in (0, 1], interpolated linearly inside the bucket
    that holds rank q*N (a value in the overflow bucket is reported as its lower bound and
    width inf). nan for an empty histogram."""
    if not 0 < q <= 1:
        raise ValueError(f"quantile {q} not in (0, 1]")
    n = sum(counts)
    if n == 0:
        return math.nan, math.nan
    rank = q * n
    cum = 0
    for i, c in enumerate(counts):
        if c <= 0:
            continue
        if cum + c >= rank:
            lo, hi = bucket_bounds(i)
            if math.isinf(hi):
                return lo, math.inf
            return lo + (rank - cum) / c * (hi - lo), hi - lo
        cum += c
    raise AssertionError("unreachable: rank <= n")


# ---- paths -----------------------------------------------------------------------------------

def path_order(mode: str) -> list[tuple[str, str]]:
    """The proxies a request crosses, in order, as (role, side); baseline has none."""
    orders = {
        "baseline": [],
        "sidecar": [("sidecar", "client"), ("sidecar", "server")],
        "ambient": [("ztunnel", "client"), ("ztunnel", "server")],
        "waypoint": [("ztunnel", "client"), ("waypoint", "waypoint"), ("ztunnel", "server")],
    }
    if mode not in orders:
        raise ValueError(f"unknown mode {mode!r}")
    return list(orders[mode])


def targets_for(deployment: Any) -> list[HopTarget]:
    """HopTargets for the data-plane proxies of a local-backend Deployment, in path order.

    A ztunnel on a node with both the client and a server is one process on two hops; it
    gets side "client" (its histograms then mix both hops)."""
    mesh = deployment.mesh
    client = mesh.pod(mesh.client)
    out: list[HopTarget] = []
    for p in deployment.processes:
        if p.role not in ROLE_PORTS or getattr(p, "process", "") == "pilot-agent":
            continue  # pilot-agent is part of a proxy's cost, not of its traffic
        if p.role == "sidecar":
            side = "client" if p.pod == client.name else "server"
        elif p.role == "ztunnel":
            side = "client" if p.node == client.node else "server"
        else:
            side = "waypoint"
        out.append(HopTarget.for_role(p.pid, p.entity, p.role, side))
    order = {k: i for i, k in enumerate(path_order(mesh.mode))}
    return sorted(out, key=lambda t: order.get((t.role, t.side), len(order)))


# ---- prerequisites -----------------------------------------------------------------------------

def _check() -> tuple[str, str] | None:
    """(reason, hint) of the first missing prerequisite, or None. Loads nothing."""
    if os.geteuid() != 0:
        return ("BPF probes need root", "run as root (sudo)")
    try:
        import bcc  # noqa: F401  (Debian's python3-bpfcc, linked into the venv by make setup)
    except Exception as e:  # noqa: BLE001 - an ImportError, or a broken libbcc (OSError, ...)
        return (f"import bcc failed ({e.__class__.__name__}: {e})",
                "make setup (apt python3-bpfcc; links bcc into .venv)")
    build = Path("/lib/modules") / platform.release() / "build"
    if not build.exists():
        return (f"kernel headers missing ({build})",
                "make setup (links /lib/modules/$(uname -r)/build to Debian's linux-headers)")
    if not (TRACEFS / "events").is_dir():
        return (f"tracefs not mounted at {TRACEFS}",
                "mount -t tracefs tracefs /sys/kernel/tracing (make setup does it)")
    missing = [tp for tp in TRACEPOINTS if not (TRACEFS / "events" / tp).is_dir()]
    if missing:
        return (f"tracepoints missing: {', '.join(missing)}",
                "needs Linux 6.3+ (sock_send_length/sock_recv_length) with syscall tracepoints")
    return None


def probe_status() -> dict[str, Any]:
    """{"status": "ok"|"skipped", "reason": ..., "hint": ...} for the manifest."""
    missing = _check()
    if missing:
        return {"status": "skipped", "reason": missing[0], "hint": missing[1]}
    dport, num, src = sock_port_offsets()
    return {"status": "ok", "reason": "", "layout": LAYOUT,
            "sock_common_offsets": {"skc_dport": dport, "skc_num": num, "source": src}}


# ---- struct sock_common port offsets, from the kernel's BTF -----------------------------------

@lru_cache(maxsize=1)
def sock_port_offsets(path: Path = BTF_VMLINUX) -> tuple[int, int, str]:
    """(offset of skc_dport, offset of skc_num, source) in struct sock_common.

    BCC compiles against Debian's headers, which need not match the running kernel, so the
    offsets come from the running kernel's BTF; 12/14 (unchanged since Linux 3.x) otherwise.
    The BPF program also checks them against inet_sock_set_state's port fields."""
    try:
        data = path.read_bytes()
        found = _btf_struct_offsets(data, "sock_common", ("skc_dport", "skc_num"))
        return found["skc_dport"], found["skc_num"], f"btf {path}"
    except (OSError, KeyError, ValueError, struct.error) as e:
        return 12, 14, f"default (BTF unreadable: {e.__class__.__name__})"


def _btf_struct_offsets(data: bytes, struct_name: str, fields: Iterable[str]) -> dict[str, int]:
    """Byte offsets of named members (looking through anonymous unions/structs) of a struct
    in a raw BTF blob. Raises KeyError when the struct or a field is absent."""
    magic, _ver, _flags, hdr_len, type_off, type_len, str_off, _str_len = struct.unpack_from(
        "<HBBIIIII", data, 0)
    if magic != 0xEB9F:
        raise ValueError("not BTF")
    tbase, sbase = hdr_len + type_off, hdr_len + str_off
    name_bytes = struct_name.encode()

    def name_at(off: int) -> bytes:
        return data[sbase + off:data.index(b"\0", sbase + off)]

    # first pass: where each type's record starts (type ids start at 1)
    starts = [0]
    p, end = tbase, tbase + type_len
    extra = {1: 4, 3: 12, 14: 4, 17: 4}
    per_member = {4: 12, 5: 12, 6: 8, 13: 8, 15: 12, 19: 12}
    target = -1
    while p < end:
        name_off, info, _size = struct.unpack_from("<III", data, p)
        kind, vlen = (info >> 24) & 0x1F, info & 0xFFFF
        starts.append(p)
        if target < 0 and kind == 4 and name_at(name_off) == name_bytes:
            target = len(starts) - 1
        p += 12 + extra.get(kind, 0) + per_member.get(kind, 0) * vlen
    if target < 0:
        raise KeyError(struct_name)

    out: dict[str, int] = {}

    def walk(tid: int, base_bits: int) -> None:
        p = starts[tid]
        _n, info, _size = struct.unpack_from("<III", data, p)
        kind, vlen, kflag = (info >> 24) & 0x1F, info & 0xFFFF, info >> 31
        if kind not in (4, 5):
            return
        for m in range(vlen):
            mname, mtype, moff = struct.unpack_from("<III", data, p + 12 + 12 * m)
            bits = (moff & 0xFFFFFF) if kflag else moff
            if mname:
                out.setdefault(name_at(mname).decode(), (base_bits + bits) // 8)
            else:
                walk(mtype, base_bits + bits)

    walk(target, 0)
    return {f: out[f] for f in fields}


# ---- the probe ---------------------------------------------------------------------------------

class HopProbe:
    """Attach, read per window, detach. Also a context manager (start/stop)."""

    def __init__(self, targets: list[HopTarget], template: Path | None = None) -> None:
        """`template`: another hops.c to fill (a benchmark compares versions with it)."""
        self.template = template or C_TEMPLATE
        seen_pid: set[int] = set()
        seen_entity: set[str] = set()
        for t in targets:
            if t.pid <= 0:
                raise ValueError(f"{t.entity}: pid {t.pid}")
            if t.pid in seen_pid or t.entity in seen_entity:
                raise ValueError(f"duplicate target {t.entity} (pid {t.pid})")
            if not t.downstream_ports or not t.upstream_ports:
                raise ValueError(f"{t.entity}: needs downstream and upstream ports")
            for port in (*t.downstream_ports, *t.upstream_ports, *t.multiplexed_ports):
                if not 0 < port < 65536:
                    raise ValueError(f"{t.entity}: port {port}")
            seen_pid.add(t.pid)
            seen_entity.add(t.entity)
        self.targets = list(targets)
        self._bpf: Any = None
        self._base_hist: list[int] | None = None
        self._base_counts: list[int] | None = None
        self.started_at: float | None = None
        self.window_start: float | None = None

    # ---- code generation -----------------------------------------------------------------
    def generate_c(self, offsets: tuple[int, int] | None = None) -> str:
        """The BPF program with every placeholder filled. `offsets` (skc_dport, skc_num)
        defaults to the running kernel's (from BTF)."""
        if not self.targets:
            raise ValueError("no targets: nothing to probe (baseline has no proxies)")
        dport_off, num_off = offsets or sock_port_offsets()[:2]
        cases, classify = [], []
        watch_local: set[int] = set()
        watch_remote: set[int] = set()
        for i, t in enumerate(self.targets):
            cases.append(f"    case {t.pid}: return {i};  // {t.entity} ({t.role})")
            down = " || ".join(f"lport == {p}" for p in t.downstream_ports)
            up = " || ".join(f"rport == {p}" for p in t.upstream_ports)
            mux_down = " || ".join(f"lport == {p}" for p in t.multiplexed_ports) or "0"
            mux_up = " || ".join(f"rport == {p}" for p in t.multiplexed_ports) or "0"
            classify.append(
                f"    case {i}:  // {t.entity}\n"
                f"        if ({down}) {{ *mux = ({mux_down}); return CLS_DOWN; }}\n"
                f"        if ({up}) {{ *mux = ({mux_up}); return CLS_UP; }}\n"
                f"        return CLS_UNKNOWN;")
            watch_local.update(t.downstream_ports)
            watch_remote.update(t.upstream_ports)
        watched = " || ".join(
            [f"lport == {p}" for p in sorted(watch_local)]
            + [f"rport == {p}" for p in sorted(watch_remote)])
        values = {
            "MAX_TARGETS": str(len(self.targets)),
            "NBUCKETS": str(NBUCKETS),
            "LINEAR_US": str(LINEAR_US),
            "LINEAR_BITS": str(LINEAR_BITS),
            "SUB_BITS": str(SUB_BITS),
            "MAX_EXP": str(MAX_EXP),
            "PENDING": str(PENDING),
            "FLIGHT": str(FLIGHT),
            "NCOUNTERS": str(len(COUNTERS)),
            "MAX_AGE_NS": f"{MAX_AGE_NS}ULL",
            "SKC_DPORT_OFF": str(dport_off),
            "SKC_NUM_OFF": str(num_off),
            "MAX_THREADS": str(MAX_THREADS),
            "MAX_SOCKS": str(MAX_SOCKS),
            "TARGET_CASES": "\n".join(cases),
            "CLASSIFY_CASES": "\n".join(classify),
            "WATCHED_EXPR": watched,
        }
        text = self.template.read_text()

        def fill(m: re.Match[str]) -> str:
            key = m.group(0)[2:-2]
            if key not in values:
                raise KeyError(f"hops.c: no value for placeholder {m.group(0)}")
            return values[key]

        out = PLACEHOLDER.sub(fill, text)
        header = "// generated for: " + ", ".join(
            f"{t.entity}={t.pid}" for t in self.targets) + "\n"
        return header + out

    # ---- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        """Compile and attach (BCC attaches TRACEPOINT_PROBEs on load, ~0.5 s). Attach
        before the load starts: arrivals on connections opened earlier are still seen,
        but only from their next message on."""
        if self._bpf is not None:
            return
        missing = _check()
        if missing:
            raise PrerequisiteError(f"per-hop probe: {missing[0]}", hint=missing[1])
        if not self.targets:
            self.started_at = time.time()
            return
        from bcc import BPF

        text = self.generate_c()
        try:
            self._bpf = BPF(text=text.encode(), cflags=BPF_CFLAGS)
        except Exception as e:  # compile or verifier error: one line, the log is on stderr
            raise PrerequisiteError(
                f"per-hop probe: BPF program failed to load ({e})",
                hint="run `python -m bench.probes.hops --print-bpf ...` and `meshbench doctor`",
            ) from e
        self.started_at = time.time()
        self.reset()

    def reset(self) -> None:
        """Start a window: later reads count from here (the maps are not written)."""
        if self._bpf is None:
            self.window_start = time.time()
            return
        self._base_hist = self._values("hist")
        self._base_counts = self._values("counts")
        self.window_start = time.time()

    def read(self) -> list[HopHistogram]:
        """Per target and direction, the window's histogram and counters (since reset)."""
        if self._bpf is None:
            return []
        hist = self._values("hist")
        counts = self._values("counts")
        if self._base_hist is not None and self._base_counts is not None:
            hist = [a - b for a, b in zip(hist, self._base_hist)]
            counts = [a - b for a, b in zip(counts, self._base_counts)]
        nc = len(COUNTERS)
        out = []
        for i, t in enumerate(self.targets):
            ent = counts[(i * 3 + 2) * nc:(i * 3 + 3) * nc]
            for d, direction in enumerate(DIRECTIONS):
                c = dict(zip(COUNTERS, counts[(i * 3 + d) * nc:(i * 3 + d + 1) * nc]))
                base = (i * 2 + d) * NBUCKETS
                out.append(HopHistogram(
                    entity=t.entity, role=t.role, side=t.side, direction=direction,
                    counts=tuple(hist[base:base + NBUCKETS]),
                    matched=c["matched"], unmatched=c["unmatched"],
                    unclassified=ent[COUNTERS.index("unclassified")],
                    ambiguous=c["ambiguous"], evicted=c["evicted"], control=c["control"],
                    no_arrival=c["no_arrival"], sum_ns=c["sum_ns"]))
        return out

    def selfcheck(self) -> tuple[int, int]:
        """(connections whose ports were compared, mismatches) between the struct offsets
        used and inet_sock_set_state's own fields, since start. Mismatches mean the
        classification cannot be trusted."""
        if self._bpf is None:
            return 0, 0
        v = self._values("selfcheck")
        return v[0], v[1]

    def stop(self) -> None:
        """Detach and free the maps; safe to call twice."""
        b, self._bpf = self._bpf, None
        if b is not None:
            b.cleanup()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def _values(self, name: str) -> list[int]:
        """All values of a BPF array, in index order (one batch syscall where supported)."""
        table = self._bpf[name.encode()]
        try:
            pairs = sorted((int(k.value), int(v.value)) for k, v in table.items_lookup_batch())
        except Exception:  # noqa: BLE001 - BCC raises a bare Exception without batch support
            pairs = []
        if pairs and len(pairs) == len(table):
            return [v for _k, v in pairs]
        return [int(v.value) for v in table.values()]  # one lookup per element


# ---- rows ----------------------------------------------------------------------------------------

def summarize(hists: Iterable[HopHistogram], cell: Cell, ts: float | None = None) -> list[Sample]:
    """Tidy rows per proxy and direction: hop_p50/p90/p99/hop_mean (us, only when something
    was matched), hop_count, hop_unmatched, hop_unclassified (count)."""
    ts = ts or time.time()
    rows: list[Sample] = []

    def row(h: HopHistogram, metric: str, unit: str, value: float, **extra: Any) -> Sample:
        labels = {"direction": h.direction, "role": h.role, "side": h.side, **extra}
        return Sample.for_cell(cell, source=SOURCE, metric=metric, unit=unit,
                               value=float(value), entity=h.entity, ts=ts, labels=labels)

    for h in hists:
        if h.count:
            for q, name in ((0.5, "hop_p50"), (0.9, "hop_p90"), (0.99, "hop_p99")):
                value, width = percentile(h.counts, q)
                rows.append(row(h, name, "us", value, buckets=LAYOUT,
                                bucket_width_us=width if math.isfinite(width) else "overflow"))
            rows.append(row(h, "hop_mean", "us", h.mean_us if h.matched else math.nan,
                            exact="sum of ns in kernel / matched"))
        rows.append(row(h, "hop_count", "count", h.count))
        rows.append(row(h, "hop_unmatched", "count", h.unmatched))
        rows.append(row(h, "hop_unclassified", "count", h.unclassified, scope="entity"))
    return [r for r in rows if math.isfinite(r.value)]


# ---- command line: print the program, or watch for a while ---------------------------------------

def print_bpf(targets: list[HopTarget], file: Any = None) -> None:
    """Print the generated BPF C for these targets, without loading it."""
    print(HopProbe(targets).generate_c(), file=file or sys.stdout)


def _parse_target(spec: str) -> HopTarget:
    """PID:ENTITY:ROLE[:SIDE]"""
    parts = spec.split(":")
    if len(parts) not in (3, 4) or not parts[0].isdigit() or parts[2] not in ROLE_PORTS:
        raise argparse.ArgumentTypeError(
            f"{spec!r}: expected PID:ENTITY:ROLE[:SIDE], ROLE one of {', '.join(ROLE_PORTS)}")
    return HopTarget.for_role(int(parts[0]), parts[1], parts[2], parts[3] if len(parts) == 4 else "")


def format_table(hists: Iterable[HopHistogram]) -> str:
    lines = [(f"{'entity':<20} {'dir':<8} {'n':>6} {'p50':>8} {'p90':>8} {'p99':>8} "
              f"{'mean':>8} {'unmat':>5} {'ambig':>5} {'uncl':>5} {'noarr':>5}")]
    for h in hists:
        p = [percentile(h.counts, q)[0] for q in (0.5, 0.9, 0.99)]
        lines.append(f"{h.entity:<20} {h.direction:<8} {h.count:>6} {p[0]:>8.1f} {p[1]:>8.1f} "
                     f"{p[2]:>8.1f} {h.mean_us:>8.1f} {h.unmatched:>5} {h.ambiguous:>5} "
                     f"{h.unclassified:>5} {h.no_arrival:>5}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.probes.hops", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--target", action="append", type=_parse_target, default=[],
                    metavar="PID:ENTITY:ROLE[:SIDE]", help="a proxy to watch (repeatable)")
    ap.add_argument("--print-bpf", action="store_true", help="print the generated C and exit")
    ap.add_argument("--watch", type=float, metavar="SECONDS",
                    help="attach, wait, print the per-hop table")
    ap.add_argument("--status", action="store_true", help="print probe_status() and exit")
    a = ap.parse_args(argv)
    if a.status:
        print(probe_status())
        return 0
    targets = a.target or [HopTarget.for_role(1, "example-sidecar", "sidecar", "client")]
    if a.print_bpf:
        print_bpf(targets)
        return 0
    if a.watch:
        with HopProbe(targets) as probe:
            time.sleep(a.watch)
            print(format_table(probe.read()))
            checked, bad = probe.selfcheck()
            print(f"port offsets checked on {checked} connections, {bad} mismatches")
        return 0
    ap.print_usage()
    return 2


if __name__ == "__main__":
    sys.exit(main())
