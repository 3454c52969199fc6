"""Ctrl-C and SIGTERM held off while the harness takes down what it built.

A signal mask cannot do it in a process with threads (the load driver's, the resource
sampler's): the kernel hands a process-directed signal to a thread that does not block
it, and Python then runs the handler in the main thread at its next bytecode, in the
middle of the teardown (seen: a SIGTERM during the last mode's teardown left its network
namespaces and control plane behind). Swapping the Python-level handlers holds the signal
whichever thread the kernel picked; it is raised again once the block is done.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

HELD = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def deferred() -> Iterator[list[int]]:
    """Run the block with SIGINT and SIGTERM recorded instead of handled; then restore the
    handlers and deliver the first one recorded (its handler raises as it would have).
    Yields the list of signals recorded so far. Outside the main thread, where handlers
    cannot be set, the block runs unprotected."""
    got: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield got
        return

    def hold(signum: int, frame: object) -> None:
        got.append(signum)

    old = {s: signal.signal(s, hold) for s in HELD}
    try:
        yield got
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
        if got:
            signal.raise_signal(got[0])
