"""A free TCP port on loopback, for tests that start a server or an Envoy listener.

The harness's own chooser: outside the kernel's ephemeral range and never the same port
twice in a process. Envoy binds listeners with SO_REUSEPORT, so two Envoys handed the same
port would both bind it and share its connections (seen: a request to one node's listener
answered by another's when a bare bind-to-0 chooser returned a port twice)."""

from __future__ import annotations

from bench.istiod.controlplane import free_port

__all__ = ["free_port"]
