"""Open-loop arrival schedules for the load generator's users (no Locust import: unit-testable).

Each user (= one keep-alive connection) follows its own list of intended send times; a user
whose response came back late sends its next request at once and keeps the schedule (the
next intended times do not move), so a stall is charged to every request it delayed
(coordinated omission corrected, as wrk2 does).

- `uniform`: a fixed rate with the users' schedules spread evenly over the period (wrk2
  staggers its connections' start times, Fortio's -uniform does the same): user k of N at a
  total rate R sends at  phase_k + j * N / R  with  phase_k = k / R, on one grid anchored at
  the Unix epoch, so that users in several processes line up without talking to each other.
- `poisson`: each user draws exponential gaps of mean N / R (its own seeded stream), so all
  users together form a Poisson process of rate R.
- `burst`: every user on the same phase (what `constant_throughput` users that start together
  do): kept only to show, and test, what unstaggered users do to latency.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

MODELS = ("uniform", "poisson", "burst")


@dataclass
class Schedule:
    """Intended send times (wall clock, s) of one user."""

    model: str
    index: int        # this user's slot, 0 <= index < users
    users: int
    rate: float       # requests per second over all users
    seed: int = 0
    _next: float | None = None
    _rng: random.Random = field(default_factory=random.Random, repr=False)

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise ValueError(f"arrival model {self.model!r}: expected one of {', '.join(MODELS)}")
        if self.rate <= 0 or self.users < 1 or not 0 <= self.index < self.users:
            raise ValueError(f"bad schedule: rate {self.rate}, user {self.index} of {self.users}")
        self._rng = random.Random(self.seed * 1_000_003 + self.index)

    @property
    def period(self) -> float:
        """Mean interval between two sends of this user."""
        return self.users / self.rate

    @property
    def phase(self) -> float:
        return 0.0 if self.model == "burst" else self.index / self.rate

    def first(self, now: float) -> float:
        """The first intended send time after `now`."""
        if self.model == "poisson":
            t = now + self._rng.expovariate(1.0 / self.period)
        else:
            j = math.floor((now - self.phase) / self.period) + 1
            t = self.phase + j * self.period
        self._next = t
        return t

    def next(self, now: float) -> float:
        """The intended time of the next request (`first` on the first call). Times stay on
        the schedule whatever `now` is: a late user catches up back to back."""
        if self._next is None:
            return self.first(now)
        gap = (self._rng.expovariate(1.0 / self.period) if self.model == "poisson"
               else self.period)
        self._next += gap
        return self._next


def user_slot(local_index: int, worker_index: int, processes: int, users: int) -> int:
    """A user's slot among all users of a run: users are handed out to processes round-robin,
    so the k-th user of worker w takes slot k * processes + w. Unique while users is a
    multiple of processes (the scenario checks it)."""
    return (local_index * processes + worker_index) % users


def timings_us(intended: float | None, done: float, response_time_ms: float
               ) -> tuple[int, int | None, int | None]:
    """One request's (latency from the actual send, latency from the intended send time,
    send lag) in whole microseconds; the last two None without an intended time.

    `done` is the wall clock at completion and `response_time_ms` Locust's own timing from
    the actual send. The intended figure is never below the actual one (a request cannot
    leave before it was due: a negative lag is clock jitter between the two clocks)."""
    actual = round(response_time_ms * 1000.0)
    if intended is None:
        return actual, None, None
    from_intended = max(round((done - intended) * 1e6), actual)
    return actual, from_intended, from_intended - actual
