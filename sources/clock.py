"""Event time and sending pace: the two clocks of a producer, kept apart.

*Event time* is what a simulated event says happened (UTC epoch ms): the wall
clock for a live feed, or a simulated clock that starts anywhere and advances
exactly ``1/rate`` per event, so hours of data take seconds and the same run
gives the same times. *Pace* is when events are sent: steadily at a rate, or as
fast as possible. Both take their time source as an argument, for tests.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from itertools import count as counter


def wall_ms() -> int:
    """Now, UTC epoch milliseconds."""
    return time.time_ns() // 1_000_000


class SimulatedClock:
    """Event times ``start_ms + k * 1000 / rate`` for k = 0, 1, 2, ... (whole ms)."""

    def __init__(self, start_ms: int, rate: float) -> None:
        """Start at `start_ms`, `rate` events per simulated second.

        Raises:
            ValueError: if `rate` is not positive.
        """
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.start_ms = start_ms
        self.rate = rate
        self._k = 0

    def __call__(self) -> int:
        """The next event's time."""
        # Computed from k, not accumulated: no rounding drift over millions of events.
        t = self.start_ms + int(self._k * 1000 / self.rate)
        self._k += 1
        return t


def simulated_times(start_ms: int, rate: float, count: int | None = None) -> Iterator[int]:
    """`count` (or endless) event times of a `SimulatedClock`."""
    clock = SimulatedClock(start_ms, rate)
    steps = counter() if count is None else range(count)
    for _ in steps:
        yield clock()


class Pacer:
    """Tells when the next event is due, for a steady `rate` (None: always due).

    Events are due at ``t0 + k / rate``. A producer that fell behind (a slow broker,
    a paused process) catches up at full speed, but by at most `max_lag_s` worth of
    events: a long stall then resumes at the rate instead of bursting.
    """

    def __init__(
        self, rate: float | None, max_lag_s: float = 1.0, now: Callable[[], float] = time.monotonic
    ) -> None:
        """Pace at `rate` events/s from the first call on.

        Raises:
            ValueError: if `rate` is given and not positive.
        """
        if rate is not None and rate <= 0:
            raise ValueError("rate must be positive (None for full speed)")
        self.rate = rate
        self._max_lag_s = max_lag_s
        self._now = now
        self._t0: float | None = None
        self._k = 0

    def due_in(self) -> float:
        """Seconds until the next event is due; 0 when it is due now."""
        if self.rate is None:
            return 0.0
        now = self._now()
        if self._t0 is None:
            self._t0 = now
        due = self._t0 + self._k / self.rate
        if now - due > self._max_lag_s:
            # Forget the backlog beyond max_lag_s: move the schedule, not the count.
            self._t0 = now - self._max_lag_s - self._k / self.rate
            return 0.0
        return max(0.0, due - now)

    def sent(self) -> None:
        """One event went out."""
        self._k += 1
