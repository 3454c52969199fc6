"""Ctrl-C and SIGTERM held off during teardown, also with other threads running."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from bench.run import signals


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def test_a_sigterm_mid_teardown_waits_for_the_teardown(monkeypatch: pytest.MonkeyPatch) -> None:
    # another thread alive, as the sampler's and the load driver's are: a signal mask on
    # the main thread alone would let the kernel hand the signal to it (seen: half a mode
    # left behind)
    stop = threading.Event()
    other = threading.Thread(target=stop.wait, daemon=True)
    other.start()
    old = signal.signal(signal.SIGTERM, _interrupt)
    steps: list[int] = []
    try:
        with pytest.raises(KeyboardInterrupt):
            with signals.deferred() as got:
                for i in range(5):
                    if i == 1:
                        os.kill(os.getpid(), signal.SIGTERM)
                        deadline = time.monotonic() + 30
                        while not got and time.monotonic() < deadline:
                            time.sleep(0.01)  # the signal is handled by now
                    steps.append(i)
        assert steps == [0, 1, 2, 3, 4] and got == [signal.SIGTERM]
    finally:
        signal.signal(signal.SIGTERM, old)
        stop.set()
    assert signal.getsignal(signal.SIGTERM) is old


def test_without_a_signal_nothing_is_raised() -> None:
    before = signal.getsignal(signal.SIGINT)
    with signals.deferred() as got:
        pass
    assert got == [] and signal.getsignal(signal.SIGINT) is before
