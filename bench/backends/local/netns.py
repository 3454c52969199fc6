"""Network namespaces, routed veths and iptables: the host-side plumbing of the local mesh.

Everything created here lives inside namespaces named with the harness prefix, so deleting
those namespaces removes every link, address, route and iptables rule with them; nothing is
changed in the host's own namespace.
"""

from __future__ import annotations

import ctypes
import errno
import http.client
import os
import socket
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from bench import PREFIX
from bench.errors import ProvisionError

NETNS_DIR = Path("/var/run/netns")
CLONE_NEWNET = 0x40000000
GATEWAY = "169.254.1.1"  # link-scope address of every node-side pod veth (Calico-style)
R = TypeVar("R")


def run(cmd: list[str], input: str | None = None) -> str:
    """Run a host command; a failure raises ProvisionError naming the command and its stderr."""
    try:
        proc = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=60)
    except FileNotFoundError as e:
        raise ProvisionError(f"command not found: {cmd[0]}", hint="run `make setup`") from e
    if proc.returncode != 0:
        err = (proc.stderr or proc.stdout).strip().splitlines()
        raise ProvisionError(f"`{' '.join(cmd)}` failed: {err[-1] if err else proc.returncode}")
    return proc.stdout


def ns_name(name: str) -> str:
    return f"{PREFIX}{name}"


def list_ours() -> list[str]:
    """Every network namespace carrying the harness prefix."""
    out = run(["ip", "netns", "list"])
    names = [line.split()[0] for line in out.splitlines() if line.strip()]
    return [n for n in names if n.startswith(PREFIX)]


def add(ns: str, lo_up: bool = True) -> None:
    """A new namespace; without lo_up the caller brings lo up in its own batch (one
    process less per namespace)."""
    run(["ip", "netns", "add", ns])
    if lo_up:
        run(["ip", "-n", ns, "link", "set", "lo", "up"])


def delete(ns: str) -> None:
    """What `ip netns delete` does (lazy unmount of the bind mount, then unlink), without a
    process per namespace; the kernel frees the namespace once nothing holds it."""
    path = NETNS_DIR / ns
    if _libc.umount2(str(path).encode(), MNT_DETACH) != 0:
        err = ctypes.get_errno()
        if err != errno.EINVAL:  # EINVAL: not a mount point (a half-created one): unlink it
            raise ProvisionError(f"umount {path}: {os.strerror(err)}")
    try:
        path.unlink()
    except OSError as e:
        raise ProvisionError(f"removing {path}: {e.strerror}") from e


def _ns_id(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:  # gone meanwhile (a process that exited)
        return None
    return st.st_dev, st.st_ino


def pids_by_ns(names: list[str]) -> dict[str, list[int]]:
    """The processes inside each named namespace, from one pass over /proc (what
    `ip netns pids` does for one name: same device and inode as the namespace's file)."""
    ids = {i: n for n in names if (i := _ns_id(NETNS_DIR / n)) is not None}
    out: dict[str, list[int]] = {n: [] for n in names}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            ns = ids.get(_ns_id(Path(entry.path) / "ns" / "net"))  # type: ignore[arg-type]
            if ns is not None:
                out[ns].append(int(entry.name))
    return out


def sysctl(ns: str, key: str, value: str) -> None:
    run(["ip", "netns", "exec", ns, "sysctl", "-qw", f"{key}={value}"])


def batch(ns: str, commands: list[str]) -> None:
    """Several `ip` commands in one process, all inside `ns`."""
    if commands:
        run(["ip", "-n", ns, "-batch", "-"], input="\n".join(commands) + "\n")


def veth(ns_a: str, if_a: str, ns_b: str, if_b: str) -> None:
    run(["ip", "link", "add", "name", if_a, "netns", ns_a, "type", "veth",
         "peer", "name", if_b, "netns", ns_b])


def iptables_restore(ns: str, rules: str) -> None:
    """Apply an iptables-restore text (nat table etc.) inside the namespace."""
    run(["ip", "netns", "exec", ns, "iptables-restore", "--noflush"], input=rules)


_libc = ctypes.CDLL(None, use_errno=True)
MNT_DETACH = 2


def in_netns(ns: str, fn: Callable[[], R]) -> R:
    """Call fn in a fresh thread that has joined `ns`: its sockets live in that namespace,
    while the rest of the process stays where it was (setns of a net ns is per thread)."""
    result: dict[str, object] = {}

    def target() -> None:
        try:
            fd = os.open(NETNS_DIR / ns, os.O_RDONLY)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns({ns}): {os.strerror(err)}")
            finally:
                os.close(fd)
            result["value"] = fn()
        except BaseException as e:  # handed to the caller's thread below
            result["error"] = e

    t = threading.Thread(target=target, name=f"netns-{ns}", daemon=True)
    t.start()
    t.join()
    if "error" in result:
        raise result["error"]  # type: ignore[misc]
    return result["value"]  # type: ignore[return-value]


def http_get(ns: str, host: str, port: int, path: str = "/", timeout: float = 2.0,
             ) -> tuple[int, bytes]:
    """One HTTP GET made from inside `ns` (so iptables capture applies as for the app)."""
    def get() -> tuple[int, bytes]:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()
    return in_netns(ns, get)


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float = 5.0) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self._path)
        self.sock = s


def admin_get(socket_path: Path, path: str, timeout: float = 5.0) -> tuple[int, str]:
    """GET on an Envoy admin endpoint served on a Unix socket."""
    status, body = admin_get_bytes(socket_path, path, timeout)
    return status, body.decode(errors="replace")


def admin_get_bytes(socket_path: Path, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
    """admin_get, the body as sent (its size without decoding it)."""
    conn = UnixHTTPConnection(str(socket_path), timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()
