"""The flow's notion of "now": an injected clock, so event-time logic is testable.

The watermark of an idle key advances with this clock (see `flows.watermark`).
Bytewax, however, schedules wake-ups on the real system clock, so a due time in
the clock's domain is converted with `Clock.wall_time_of`: the delay until it is
due, added to the real time. Returning a due time that is already past by the
runtime's clock while nothing is due by ours is the busy loop of bytewax issue
#578 (`EventClock` with its default ``to_system_utc``); converting delays avoids it.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """A source of the current time, UTC epoch milliseconds."""

    def now_ms(self) -> int:
        """The current time, UTC epoch ms."""
        ...


class SystemClock:
    """The machine's clock (production)."""

    def now_ms(self) -> int:
        """The current system time, UTC epoch ms."""
        return time.time_ns() // 1_000_000


class ManualClock:
    """A clock that only moves when told to (tests and benchmarks).

    Frozen, it makes the flow purely event-time driven and so deterministic.
    """

    def __init__(self, now_ms: int = 0) -> None:
        self._now_ms = now_ms

    def now_ms(self) -> int:
        """The time set last, UTC epoch ms."""
        return self._now_ms

    def set(self, now_ms: int) -> None:
        """Move to `now_ms` (never backwards)."""
        self._now_ms = max(self._now_ms, now_ms)

    def advance(self, ms: int) -> None:
        """Move forward by `ms` milliseconds."""
        self._now_ms += max(ms, 0)


def wall_time_of(clock: Clock, due_ms: int) -> datetime:
    """The real UTC time at which `due_ms` on `clock` will have come.

    Bytewax compares notification times with the real system clock, so the
    delay is measured on `clock` and anchored to real time. A due time already
    reached on `clock` maps to now: the runtime then calls back at once.
    """
    delay_ms = max(due_ms - clock.now_ms(), 0)
    return datetime.now(UTC) + timedelta(milliseconds=delay_ms)
