"""The load generator's arrival schedules and the coordinated-omission maths, on synthetic
data (workloads/locustfiles/arrivals.py is plain Python: no Locust, no gevent)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "workloads" / "locustfiles"))

from arrivals import Schedule, timings_us, user_slot  # noqa: E402

from bench.probes.client_latency import schedule_spread  # noqa: E402


def _sends(model: str, users: int, rate: float, n: int, now: float = 1000.123) -> np.ndarray:
    """Every user's first n intended times, merged (all users start at `now`)."""
    out = []
    for k in range(users):
        s = Schedule(model, k, users, rate, seed=7)
        out += [s.next(now) for _ in range(n)]
    return np.sort(np.array(out))


def test_uniform_users_are_spread_evenly_over_the_period() -> None:
    t = _sends("uniform", users=4, rate=500.0, n=200)
    gaps = np.diff(t)
    # 4 users at 500 rps: one request every 2 ms, whichever user sends it
    assert gaps == pytest.approx(np.full(len(gaps), 0.002), abs=1e-9)
    spread = schedule_spread(t, 500.0)
    assert spread["burst_share"] == 0.0 and spread["gap_cv"] < 1e-6


def test_burst_users_fire_together() -> None:
    t = _sends("burst", users=4, rate=500.0, n=200)
    spread = schedule_spread(t, 500.0)
    assert spread["burst_share"] == pytest.approx(0.75, abs=0.01)


def test_poisson_users_add_up_to_a_poisson_process_at_the_rate() -> None:
    t = _sends("poisson", users=4, rate=500.0, n=2500)
    t = t[t < t[0] + 15.0]  # every user still active over this span
    assert len(t) / (t[-1] - t[0]) == pytest.approx(500.0, rel=0.05)
    spread = schedule_spread(t, 500.0)
    assert spread["gap_cv"] == pytest.approx(1.0, abs=0.1)
    assert spread["burst_share"] == pytest.approx(1 - np.exp(-0.25), abs=0.03)


def test_schedules_of_users_in_different_processes_line_up() -> None:
    """Two processes that start at different moments still share one grid (anchored at the
    Unix epoch), so their users interleave instead of colliding."""
    a = Schedule("uniform", user_slot(0, 0, 2, 2), 2, 100.0)
    b = Schedule("uniform", user_slot(0, 1, 2, 2), 2, 100.0)
    ta = [a.next(50.0) for _ in range(10)]
    tb = [b.next(50.3371) for _ in range(10)]
    phases = sorted({round((x % 0.02) * 1e6) for x in ta + tb})
    assert phases == [0, 10000]


def test_a_late_user_keeps_its_schedule() -> None:
    s = Schedule("uniform", 1, 4, 400.0)
    first = s.next(10.0)
    # whatever the clock says when the next one is asked for, it is one period later
    assert s.next(first + 5.0) == pytest.approx(first + 0.01)


@pytest.mark.parametrize("users,processes", [(4, 1), (4, 2), (8, 4), (6, 3)])
def test_user_slots_are_unique(users: int, processes: int) -> None:
    slots = [user_slot(k, w, processes, users) for w in range(processes)
             for k in range(users // processes)]
    assert sorted(slots) == list(range(users))


def test_bad_schedules_are_refused() -> None:
    with pytest.raises(ValueError, match="arrival model"):
        Schedule("constant", 0, 1, 10.0)
    with pytest.raises(ValueError):
        Schedule("uniform", 4, 4, 10.0)


def test_latency_from_intended_time_charges_a_stall_to_every_request_it_delayed() -> None:
    """A closed-loop user (one connection) on a 10 ms schedule meets a 200 ms server stall:
    from the actual send only the stalled request is slow; from the intended time every
    request queued behind it is, as wrk2 counts them."""
    sched = Schedule("uniform", 0, 1, 100.0)
    now, actual, intended = 0.0, [], []
    for i in range(300):
        due = sched.next(now)
        sent = max(now, due)
        service = 0.2 if i == 100 else 0.001
        done = sent + service
        a, f, lag = timings_us(due, done, service * 1000)
        assert f is not None and lag is not None and f >= a and lag == f - a
        actual.append(a)
        intended.append(f)
        now = done
    assert sum(v > 10_000 for v in actual) == 1
    assert sum(v > 10_000 for v in intended) >= 15
    assert np.percentile(intended, 99) > 10 * np.percentile(actual, 99)


def test_without_an_intended_time_only_the_actual_latency_is_known() -> None:
    assert timings_us(None, 5.0, 1.5) == (1500, None, None)
    # clock jitter can put completion a hair before intended + response time: never below
    assert timings_us(1.0, 1.0014, 1.5) == (1500, 1500, 0)
