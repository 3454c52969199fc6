"""Raw traffic for tests that must see what the mesh refuses (not a product path)."""

from __future__ import annotations

import socket

from bench.backends.local.netns import in_netns


def tcp_send(ns: str, host: str, port: int, data: bytes, timeout: float = 2.0) -> bytes:
    """Send raw bytes from inside `ns` and return what comes back before the peer closes
    or the timeout passes (used to show that plaintext is refused)."""
    def send() -> bytes:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(data)
            chunks = []
            try:
                while chunk := s.recv(65536):
                    chunks.append(chunk)
            except (TimeoutError, ConnectionResetError):
                pass  # a reset or silence is the answer we are looking for; the caller checks
            return b"".join(chunks)
    return in_netns(ns, send)
