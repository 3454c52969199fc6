"""Waiting in tests on an event or a generous deadline, never on a bare sleep: the CI
machine is busier than a laptop.

    wait_until(lambda: path.exists(), 60, "the report")          # poll a condition
    lines = Lines(proc.stderr); lines.wait_for("r1 ambient: ready", 120)
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable


def wait_until(condition: Callable[[], object], timeout_s: float, what: str,
               interval_s: float = 0.05) -> None:
    """Return once `condition()` is true; AssertionError naming `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout_s:g} s")
        time.sleep(interval_s)


class Lines:
    """A process's output read on a thread, so a test can wait for a line with a deadline
    (a plain `for line in proc.stderr` blocks for ever when nothing more is written)."""

    def __init__(self, stream: Iterable[str]) -> None:
        self.seen: list[str] = []
        self._q: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: Iterable[str]) -> None:
        for line in stream:
            self._q.put(line)
        self._q.put(None)

    def wait_for(self, text: str, timeout_s: float) -> str:
        """The first line (from now on) containing `text`; AssertionError after
        `timeout_s` or when the stream ends first, with the last lines seen."""
        deadline = time.monotonic() + timeout_s
        while True:
            left = deadline - time.monotonic()
            try:
                line = self._q.get(timeout=max(left, 0.0)) if left > 0 else None
            except queue.Empty:
                line = None
            if line is None:
                tail = "".join(self.seen[-5:])
                raise AssertionError(f"no line with {text!r} within {timeout_s:g} s; "
                                     f"last lines: {tail}")
            self.seen.append(line)
            if text in line:
                return line
