"""End-to-end latency timed in the kernel at the load generator's own sockets.

Locust's own response times include whatever its gevent loop did between the response's
arrival and the read: other users' requests, Python parsing. On 2 cores, with several users
in one process, that is most of a mesh hop. This probe times every request at the load
generator's TCP sockets instead (see `client_latency.c` beside this file): from the request's
send entering TCP to the last response bytes queued on that socket before the connection's
next request. One event per request crosses to user space (a ring buffer), so percentiles
are exact; `summary()` gives the same `LatencySummary` as Locust's HDR files.

    probe = ClientLatencyProbe(service_port=8080)
    probe.start()               # PrerequisiteError (reason + hint) when BCC cannot run
    load = run_locust(...)
    probe.watch(load.pid)       # right after the start: before Locust has opened a socket
    ...
    s = probe.summary(w0, w1)   # requests completed in [w0, w1) (wall clock)
    probe.stop()

`python -m bench.probes.client_latency --print-bpf --port 8080` prints the filled program.
"""

from __future__ import annotations

import argparse
import re
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import numpy as np

from bench.errors import PrerequisiteError
from bench.load.hdr import LatencySummary, latency_values
from bench.probes.hops import BPF_CFLAGS, TRACEFS, _check, sock_port_offsets
from bench.store import Cell, Sample

SOURCE = "load_kernel"
C_TEMPLATE = Path(__file__).with_suffix(".c")
PLACEHOLDER = re.compile(r"__[A-Z][A-Z0-9_]*__")
COUNTERS = ("emitted", "lost", "continued", "other_port")
RINGBUF_PAGES = 256  # 1 MiB: ~30 s of events at 1,000 rps if user space stalls
POLL_MS = 100
BURST_FRACTION = 0.25  # a gap shorter than this share of 1/rate is part of a burst


@dataclass(frozen=True)
class Requests:
    """Per request, in completion order within a window: send and completion (wall clock, s),
    the kernel-timed latency (us) and the socket it used."""

    t_send: np.ndarray
    t_done: np.ndarray
    latency_us: np.ndarray
    sk: np.ndarray

    def __len__(self) -> int:
        return len(self.latency_us)


def window(req: Requests, t0: float, t1: float) -> Requests:
    """The requests completed in [t0, t1)."""
    keep = (req.t_done >= t0) & (req.t_done < t1)
    return Requests(req.t_send[keep], req.t_done[keep], req.latency_us[keep], req.sk[keep])


def summarize_requests(req: Requests, t0: float, t1: float, errors: int = 0) -> LatencySummary:
    """Exact percentiles (numpy, linear interpolation) of requests completed in [t0, t1)."""
    lat = req.latency_us
    n = len(lat)

    def pct(q: float) -> float:
        return float(np.percentile(lat, q)) if n else 0.0

    return LatencySummary(
        p50_us=pct(50), p90_us=pct(90), p99_us=pct(99), p999_us=pct(99.9),
        max_us=float(lat.max()) if n else 0.0, mean_us=float(lat.mean()) if n else 0.0,
        count=n, errors=errors, achieved_rps=n / (t1 - t0) if t1 > t0 else 0.0,
        t0=t0, t1=t1, seconds_covered=t1 - t0)


def schedule_spread(t_send: np.ndarray, target_rps: float) -> dict[str, float]:
    """How evenly requests left, from their measured send times (all connections merged):
    `burst_share` = share of gaps between consecutive sends shorter than a quarter of the
    mean interval 1/target_rps (evenly spread schedules: ~0; users firing together: about
    (users-1)/users, once a single process's serial sends are allowed for; Poisson
    arrivals: 1-e^-0.25 = 0.22), and `gap_cv` = std/mean of the gaps
    (evenly spread: ~0; Poisson: 1)."""
    if len(t_send) < 3 or target_rps <= 0:
        return {}
    gaps = np.diff(np.sort(t_send))
    mean = float(gaps.mean())
    return {"burst_share": float((gaps < BURST_FRACTION / target_rps).mean()),
            "gap_cv": float(gaps.std() / mean) if mean > 0 else 0.0}


def to_samples(cell: Cell, summary: LatencySummary, spread: dict[str, float],
               lost: int) -> list[Sample]:
    """Rows of source "load_kernel" (entity "client"), latency metrics named as Locust's."""
    values = latency_values(summary)
    values += [("requests", "count", float(summary.count)),
               ("achieved_rps", "rps", summary.achieved_rps),
               ("requests_lost", "count", float(lost))]
    values += [(k, "ratio", v) for k, v in spread.items()]
    return [Sample.for_cell(cell, source=SOURCE, metric=m, unit=u, value=v, entity="client",
                            ts=summary.t1) for m, u, v in values]


TRACEPOINTS = ("sched/sched_process_fork", "tcp/tcp_sendmsg_locked", "sock/sock_send_length",
               "sock/sk_data_ready", "sock/inet_sock_set_state")


def probe_status() -> dict[str, Any]:
    """{"status": "ok"|"skipped", "reason", "hint"} for the manifest: whether the kernel
    timing can run here (root, BCC, headers, tracefs, its tracepoints). Loads nothing."""
    missing = _check()
    if missing is None:
        absent = [tp for tp in TRACEPOINTS if not (TRACEFS / "events" / tp).is_dir()]
        if absent:
            missing = (f"tracepoints missing: {', '.join(absent)}", "needs Linux 6.3+")
    if missing:
        return {"status": "skipped", "reason": missing[0], "hint": missing[1],
                "fallback": "latency is Locust's own timing (source load)"}
    return {"status": "ok", "reason": "", "timing": "request send entering TCP -> last "
            "response bytes queued on the load generator's socket"}


def generate_c(service_port: int, dport_offset: int | None = None) -> str:
    if not 0 < service_port < 65536:
        raise ValueError(f"service port {service_port}")
    values = {
        "SKC_DPORT_OFF": str(sock_port_offsets()[0] if dport_offset is None else dport_offset),
        "SERVICE_PORT": str(service_port),
        "RINGBUF_PAGES": str(RINGBUF_PAGES),
    }

    def fill(m: re.Match[str]) -> str:
        key = m.group(0)[2:-2]
        if key not in values:
            raise KeyError(f"client_latency.c: no value for placeholder {m.group(0)}")
        return values[key]

    return PLACEHOLDER.sub(fill, C_TEMPLATE.read_text())


class ClientLatencyProbe:
    """Attach once per deployment; watch each load generator; read a window's requests."""

    def __init__(self, service_port: int) -> None:
        self.service_port = service_port
        self._bpf: Any = None
        self._lock = threading.Lock()      # the request lists
        self._rb_lock = threading.Lock()   # BCC's ring buffer is polled from one thread at a time
        self._t_send: list[int] = []
        self._t_done: list[int] = []
        self._sk: list[int] = []
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None
        self._poll_error: str | None = None
        self._counter_base: dict[str, int] = {}
        # CLOCK_MONOTONIC (bpf_ktime_get_ns) -> wall clock
        self._mono_to_wall = 0.0

    def start(self) -> Self:
        if self._bpf is not None:
            return self
        missing = _check()
        if missing:
            raise PrerequisiteError(f"kernel-timed latency: {missing[0]}", hint=missing[1])
        from bcc import BPF

        try:
            self._bpf = BPF(text=generate_c(self.service_port).encode(), cflags=BPF_CFLAGS)
        except Exception as e:  # compile or verifier error: one line
            raise PrerequisiteError(
                f"kernel-timed latency: BPF program failed to load ({e})",
                hint="python -m bench.probes.client_latency --print-bpf --port PORT; "
                     "meshbench doctor") from e
        self._mono_to_wall = _mono_to_wall_offset()
        self._bpf[b"events"].open_ring_buffer(self._on_event)
        self._stop.clear()
        self._poller = threading.Thread(target=self._poll, name="client-latency", daemon=True)
        self._poller.start()
        return self

    def watch(self, pid: int) -> None:
        """Time the sockets of this process and of every process it forks from now on."""
        if self._bpf is None:
            raise RuntimeError("ClientLatencyProbe.watch before start")
        import ctypes

        self._bpf[b"tgids"][ctypes.c_uint32(pid)] = ctypes.c_uint8(1)

    def unwatch_all(self) -> None:
        if self._bpf is not None:
            self._bpf[b"tgids"].clear()

    def requests(self, t0: float, t1: float) -> Requests:
        """Requests completed in [t0, t1) (wall clock), after draining the ring buffer."""
        self._drain()
        with self._lock:
            send = np.asarray(self._t_send, dtype=np.int64)
            done = np.asarray(self._t_done, dtype=np.int64)
            sk = np.asarray(self._sk, dtype=np.uint64)
        done_wall = done / 1e9 + self._mono_to_wall
        keep = (done_wall >= t0) & (done_wall < t1)
        return Requests(t_send=send[keep] / 1e9 + self._mono_to_wall, t_done=done_wall[keep],
                        latency_us=(done[keep] - send[keep]) / 1e3, sk=sk[keep])

    def reset(self) -> None:
        """A window starts (the shape of a runner's per-mode probe): nothing to do, every
        request carries its own times; `clear()` empties the probe between cells."""

    def read(self) -> tuple[Requests, int]:
        """Every request since the last `clear()`, and how many the ring buffer lost
        meanwhile; raises when the ring buffer's reader failed."""
        if self._poll_error:
            raise RuntimeError(f"ring buffer reader failed: {self._poll_error}")
        return self.requests(float("-inf"), float("inf")), self.counters().get("lost", 0)

    def summary(self, t0: float, t1: float, errors: int = 0) -> LatencySummary:
        return summarize_requests(self.requests(t0, t1), t0, t1, errors)

    def counters(self) -> dict[str, int]:
        """The program's counters since the last `clear()` (since start before that)."""
        if self._bpf is None:
            return {}
        values = [int(v.value) for v in self._bpf[b"counters"].values()]
        now = dict(zip(COUNTERS, values))
        return {k: v - self._counter_base.get(k, 0) for k, v in now.items()}

    def clear(self) -> None:
        """Forget the requests seen so far (between cells: keeps memory bounded)."""
        self._drain()
        with self._lock:
            self._t_send.clear()
            self._t_done.clear()
            self._sk.clear()
        if self._bpf is not None:
            values = [int(v.value) for v in self._bpf[b"counters"].values()]
            self._counter_base = dict(zip(COUNTERS, values))

    def stop(self) -> None:
        self._stop.set()
        if self._poller is not None:
            self._poller.join(timeout=5)
            self._poller = None
        b, self._bpf = self._bpf, None
        if b is not None:
            b.cleanup()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # ---- internals -----------------------------------------------------------------------
    def _on_event(self, _ctx: Any, data: Any, _size: int) -> None:
        e = self._bpf[b"events"].event(data)
        with self._lock:
            self._t_send.append(int(e.t_send))
            self._t_done.append(int(e.t_done))
            self._sk.append(int(e.sk))

    def _drain(self) -> None:
        if self._bpf is not None:
            with self._rb_lock:
                self._bpf.ring_buffer_consume()

    def _poll(self) -> None:
        while not self._stop.is_set():
            try:
                with self._rb_lock:
                    self._bpf.ring_buffer_poll(POLL_MS)
            except Exception as e:  # recorded: the runner reports the source as failed
                self._poll_error = f"{type(e).__name__}: {e}"
                return


def _mono_to_wall_offset() -> float:
    """time.time() - CLOCK_MONOTONIC, from the closest of a few paired reads."""
    best = None
    for _ in range(5):
        a = time.monotonic_ns()
        w = time.time()
        b = time.monotonic_ns()
        if best is None or b - a < best[0]:
            best = (b - a, w - (a + b) / 2e9)
    assert best is not None
    return best[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m bench.probes.client_latency", description=__doc__.split("\n")[0],
        epilog="example: python -m bench.probes.client_latency --print-bpf --port 8080")
    ap.add_argument("--print-bpf", action="store_true", help="print the filled BPF C and exit")
    ap.add_argument("--port", type=int, required=True, help="the service port the load targets")
    args = ap.parse_args(argv)
    if args.print_bpf:
        sys.stdout.write(generate_c(args.port))
        return 0
    ap.error("nothing to do: use --print-bpf")
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
