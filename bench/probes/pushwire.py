"""The kernel's view of a config push: which sockets the control-plane process wrote to, and
how many bytes, between two points in time.

One BCC tracepoint, `sock:sock_send_length` (every successful send on any socket family,
Linux 6.3+), filtered in BPF to the control plane's process: per socket (`struct sock`
address) the bytes and calls are summed in a map; nothing crosses to user space per send.
`reset()` takes the map as a base and `read()` returns what was added since, per socket.

This is independent of the control plane's accounting: it counts what the process actually
wrote, framing included (gRPC's 5-byte message prefix, HTTP/2 frame headers, the control
plane's own WINDOW_UPDATE and PING frames). It cannot tell an xDS stream from another
connection of the same process; the local control plane also answers the harness's control
API, one new connection per call, so `KernelPush.of` subtracts those calls (their count and
reply bytes are known exactly on the harness side) and says so; and it leaves out sockets
written only one byte at a time (an event loop's wake-up socketpair). For istiod (kind) the same
probe would also see its Kubernetes API connections.

Struct fields are never read (BCC compiles against headers that need not match the running
kernel): only the tracepoint's own fields are used.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

from bench.errors import PrerequisiteError
from bench.probes.hops import TRACEFS
from bench.probes.hops import _check as _bcc_check

TRACEPOINT = "sock/sock_send_length"
MAP_SIZE = 16384

C_TEXT = r"""
struct sent_t { u64 bytes; u64 calls; u32 family; };
BPF_HASH(sent, u64, struct sent_t, MAP_SIZE);
BPF_ARRAY(overflow, u64, 1);

TRACEPOINT_PROBE(sock, sock_send_length) {
    u32 tgid = bpf_get_current_pid_tgid() >> 32;
    if (tgid != TARGET_TGID || args->ret <= 0 || (args->flags & 2 /* MSG_PEEK */))
        return 0;
    u64 key = (u64)args->sk;
    struct sent_t zero = {};
    struct sent_t *v = sent.lookup_or_try_init(&key, &zero);
    if (!v) {
        int i = 0;
        u64 *o = overflow.lookup(&i);
        if (o) __sync_fetch_and_add(o, 1);
        return 0;
    }
    __sync_fetch_and_add(&v->bytes, (u64)args->ret);
    __sync_fetch_and_add(&v->calls, 1);
    v->family = args->family;
    return 0;
}
"""


def check() -> tuple[str, str] | None:
    """(reason, hint) of the first missing prerequisite, or None."""
    missing = _bcc_check()
    if missing:
        return missing
    if not (TRACEFS / "events" / TRACEPOINT).is_dir():
        return (f"tracepoint {TRACEPOINT} missing", "needs Linux 6.3+")
    return None


@dataclass(frozen=True)
class SocketWrites:
    sock: int  # kernel address of the struct sock (an identity, never dereferenced)
    family: int  # AF_UNIX 1, AF_INET 2, AF_INET6 10
    bytes: int
    calls: int


class PushWireProbe:
    """Sends of one process, per socket, between reset() and read()."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._bpf: Any = None
        self._base: dict[int, tuple[int, int]] = {}

    def generate_c(self) -> str:
        return C_TEXT.replace("TARGET_TGID", str(int(self.pid))).replace(
            "MAP_SIZE", str(MAP_SIZE))

    def start(self) -> Self:
        if self._bpf is not None:
            return self
        missing = check()
        if missing:
            raise PrerequisiteError(f"push kernel probe: {missing[0]}", hint=missing[1])
        from bcc import BPF

        try:
            self._bpf = BPF(text=self.generate_c().encode())
        except Exception as e:  # compile or verifier error: one line
            raise PrerequisiteError(f"push kernel probe: BPF program failed to load ({e})",
                                    hint="run `meshbench doctor`") from e
        self.reset()
        return self

    def _snapshot(self) -> dict[int, tuple[int, int, int]]:
        return {k.value: (v.bytes, v.calls, v.family) for k, v in self._bpf[b"sent"].items()}

    def reset(self) -> None:
        """A window starts: later reads count from here."""
        if self._bpf is not None:
            self._base = {k: (b, c) for k, (b, c, _) in self._snapshot().items()}

    def overflowed(self) -> int:
        """Sends not counted because the map was full (0 unless > MAP_SIZE sockets)."""
        if self._bpf is None:
            return 0
        return int(self._bpf[b"overflow"][0].value)

    def read(self) -> list[SocketWrites]:
        """Per socket written to since reset(): bytes and calls."""
        if self._bpf is None:
            return []
        out = []
        for sock, (nbytes, calls, family) in self._snapshot().items():
            b0, c0 = self._base.get(sock, (0, 0))
            if calls > c0:
                out.append(SocketWrites(sock, family, nbytes - b0, calls - c0))
        return sorted(out, key=lambda w: -w.bytes)

    def stop(self) -> None:
        if self._bpf is not None:
            self._bpf.cleanup()
            self._bpf = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


@dataclass(frozen=True)
class KernelPush:
    """The kernel view of one change: sockets and bytes the control plane wrote, less the
    harness's own control-API calls made in the window."""

    sockets: int  # distinct sockets written, control-API connections excluded
    bytes: int
    control_calls: int  # subtracted: connections and ...
    control_bytes: int  # ... reply bytes of the harness's control calls in the window
    sockets_seen: int  # before the subtraction
    bytes_seen: int
    overflow: int = 0

    @classmethod
    def of(cls, writes: list[SocketWrites], control_replies: list[int],
           overflow: int = 0) -> KernelPush:
        # an event loop's wake-up socketpair (asyncio's self-pipe, written one byte at a time
        # by other threads) is no connection: left out
        writes = [w for w in writes if w.bytes != w.calls]
        seen = len(writes)
        total = sum(w.bytes for w in writes)
        return cls(sockets=max(0, seen - len(control_replies)),
                   bytes=max(0, total - sum(control_replies)),
                   control_calls=len(control_replies), control_bytes=sum(control_replies),
                   sockets_seen=seen, bytes_seen=total, overflow=overflow)
