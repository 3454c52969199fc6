"""Fault injection points for the fault tests: a named point raises when MB_INJECT asks.

Faults of real processes (a proxy, the control plane, an app, Locust, the resource sampler)
are injected by killing them by PID. The BPF probes (per-hop, push-wire) are loaded inside
the runner's own process, so there is no process of theirs to kill: these points stand in
for their failures (a failed attach, a failed read). MB_INJECT is a comma-separated list of
`point` or `point@key` (key: a cell id such as r1-sidecar-100rps, or a mode); each entry
fires every time its point is reached with a matching key. Unset in normal runs.

    MB_INJECT=hops.attach@sidecar,hops.read@r1-ambient-100rps,push_kernel.attach
"""

from __future__ import annotations

import os

POINTS = ("hops.attach", "hops.read", "push_kernel.attach", "push_kernel.read")


class InjectedFault(RuntimeError):
    """Raised at an injection point MB_INJECT names."""


def inject(point: str, *keys: str) -> None:
    spec = os.environ.get("MB_INJECT", "")
    if not spec:
        return
    for entry in spec.split(","):
        name, _, key = entry.strip().partition("@")
        if name == point and (not key or key in keys):
            raise InjectedFault(f"injected fault at {point}" + (f"@{key}" if key else ""))
