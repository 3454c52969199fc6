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
API, one new connection per call, so `KernelPush.of` finds and leaves out the sockets that
carried those replies (their sizes are known exactly on the harness side), leaves out sockets
written only one byte at a time (an event loop's wake-up socketpair), and counts as reached
only sockets with at least MIN_PUSH_BYTES (HTTP/2 window updates and pings that follow the
previous change's ACKs are counted apart). For istiod (kind) the same
probe would also see its Kubernetes API connections.

Struct fields are never read (BCC compiles against headers that need not match the running
kernel): only the tracepoint's own fields are used.
"""

from __future__ import annotations

import itertools
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


MIN_PUSH_BYTES = 64  # below: HTTP/2 control frames only (WINDOW_UPDATE 13, PING 17, SETTINGS 9)


def _control_sockets(writes: list[SocketWrites], replies: list[int]) -> set[int]:
    """The sockets that carried the harness's control-API replies: each reply is one write
    on its own connection, but a closed connection's struct sock can be reused by the next
    one, so a socket may carry several replies (calls = their number, bytes = their sum).
    Assigned by exact sizes; what cannot be explained stays counted."""
    out: set[int] = set()
    left = list(replies)
    for w in sorted(writes, key=lambda w: w.calls):  # single replies first
        if w.calls > len(left) or w.bytes > sum(left):
            continue
        for combo in itertools.combinations(range(len(left)), w.calls):
            if sum(left[i] for i in combo) == w.bytes:
                out.add(w.sock)
                left = [r for i, r in enumerate(left) if i not in combo]
                break
    return out


@dataclass(frozen=True)
class KernelPush:
    """The kernel view of one change: sockets and bytes the control plane wrote, less the
    harness's own control-API replies in the window."""

    sockets: int  # distinct sockets written with at least MIN_PUSH_BYTES, control API excluded
    bytes: int  # bytes written on all of them, small ones included
    control_calls: int  # subtracted: the harness's control calls in the window ...
    control_bytes: int  # ... and their reply bytes
    sockets_seen: int  # before the subtraction
    bytes_seen: int
    overflow: int = 0
    small_sockets: int = 0  # sockets with only a few bytes (HTTP/2 window updates, pings)
    unexplained_control: int = 0  # control replies no socket's sizes matched

    @classmethod
    def of(cls, writes: list[SocketWrites], control_replies: list[int],
           overflow: int = 0) -> KernelPush:
        # an event loop's wake-up socketpair (asyncio's self-pipe, written one byte at a time
        # by other threads) is no connection: left out
        writes = [w for w in writes if w.bytes != w.calls]
        control = _control_sockets(writes, control_replies)
        data = [w for w in writes if w.sock not in control]
        matched = sum(w.bytes for w in writes if w.sock in control)
        pushed = [w for w in data if w.bytes >= MIN_PUSH_BYTES]
        return cls(sockets=len(pushed), bytes=sum(w.bytes for w in data),
                   control_calls=len(control_replies), control_bytes=matched,
                   sockets_seen=len(writes), bytes_seen=sum(w.bytes for w in writes),
                   overflow=overflow, small_sockets=len(data) - len(pushed),
                   unexplained_control=len(control_replies) - sum(
                       w.calls for w in writes if w.sock in control))
