"""Event-time progress of one ordered stream (a device, or an activity partition).

The watermark is the newest event time seen minus the allowed lateness. An
event older than the watermark is *late*: its windows may already be closed,
so it is counted and left out. While the stream is idle the watermark also
advances with the clock, as Bytewax's `EventClock` does, so windows of a
silent key still close: ``newest - lateness + idle time``.

Idle time only counts while the stream is *caught up*: its Kafka partition said
it had nothing more (`flows.kafka_input.KafkaBatch.at_end`). Silence alone
proves nothing: during a backlog a busy worker may deliver a partition's data
late, and a watermark moved on meanwhile would close windows early and make
on-time events late, so results would depend on scheduling. Idle time is
``now - max(when the newest was seen, when the stream was last caught up)``.
A new stream is not caught up; the flag is kept in snapshots.

Everything is integer epoch milliseconds, so the vectorised form here is exact
and gives the same answer however the events were batched.
"""

from __future__ import annotations

import numpy as np

NO_TIME = -(2**62)
"""Before any event: lower than every real time, and far from int64 overflow."""


class Watermark:
    """Watermark of one stream, advanced by its events and, when idle, by the clock."""

    __slots__ = ("caught_up_ms", "lateness_ms", "max_event_ms", "seen_at_ms", "value_ms")

    def __init__(self, lateness_ms: int) -> None:
        self.lateness_ms = lateness_ms
        self.max_event_ms = NO_TIME
        """Newest event time seen."""
        self.seen_at_ms = 0
        """Clock time when `max_event_ms` was seen."""
        self.value_ms = NO_TIME
        """The watermark; never goes back."""
        self.caught_up_ms: int | None = None
        """Clock time since when the stream's partition has been at its end; None: it is not."""

    def __getstate__(self) -> tuple[int, int, int, int, int | None]:
        return (self.lateness_ms, self.max_event_ms, self.seen_at_ms, self.value_ms, self.caught_up_ms)

    def __setstate__(self, state: tuple[int, ...]) -> None:
        self.lateness_ms, self.max_event_ms, self.seen_at_ms, self.value_ms = state[:4]
        # A snapshot from before the flag advanced on idleness alone: it keeps doing so.
        self.caught_up_ms = state[4] if len(state) > 4 else self.seen_at_ms

    def caught_up(self, at_end: bool, now_ms: int) -> None:
        """Take the partition's word: at its end (idle time counts from now on) or not (it stops)."""
        if not at_end:
            self.caught_up_ms = None
        elif self.caught_up_ms is None:
            self.caught_up_ms = now_ms

    def resume(self, now_ms: int) -> None:
        """Restart the idle timer at `now_ms` (after a restore).

        Without this, the downtime of a crash would count as idle time and make
        every replayed event late.
        """
        if self.max_event_ms != NO_TIME:
            self.seen_at_ms = now_ms
        if self.caught_up_ms is not None:
            self.caught_up_ms = now_ms

    def tick(self, now_ms: int) -> int:
        """Advance by idle time up to `now_ms`; return the watermark."""
        if self.max_event_ms != NO_TIME and self.caught_up_ms is not None:
            idle = now_ms - max(self.seen_at_ms, self.caught_up_ms)
            if idle > 0:
                self.value_ms = max(self.value_ms, self.max_event_ms - self.lateness_ms + idle)
        return self.value_ms

    def observe(self, times: np.ndarray, now_ms: int) -> np.ndarray:
        """Take a batch of event times (int64 ms, arrival order); return which were late.

        Each event is judged against the watermark just before it, as if the
        events had come one at a time. Idle time not yet taken by a `tick` does
        not count against them: events arriving now prove the stream was not idle
        but the flow was busy or stalled (a blocked sink, a restart), and Bytewax
        hands a step its new items before its due notifications.
        """
        watermark = self.value_ms
        if times.shape[0] == 0:
            return np.zeros(0, dtype=bool)
        newest = np.maximum.accumulate(times)
        before = np.empty_like(times)
        before[0] = self.max_event_ms
        np.maximum(newest[:-1], self.max_event_ms, out=before[1:])
        late = times < np.maximum(before - self.lateness_ms, watermark)
        top = int(newest[-1])
        if top > self.max_event_ms:
            self.max_event_ms = top
            self.seen_at_ms = now_ms
            self.value_ms = max(self.value_ms, top - self.lateness_ms)
        return late

    def due_at_ms(self, event_ms: int) -> int | None:
        """Clock time at which idleness alone brings the watermark to `event_ms`.

        None when idleness cannot: no events yet, or the stream is not caught up.
        """
        if self.max_event_ms == NO_TIME:
            return None
        if self.value_ms >= event_ms:
            return self.seen_at_ms
        if self.caught_up_ms is None:
            return None
        return max(self.seen_at_ms, self.caught_up_ms) + (event_ms - (self.max_event_ms - self.lateness_ms))
