"""Website activity: event-time tumbling windows and the all-time purchase leaderboard.

Each window reports counts per event type, events per second, revenue and
distinct users. Windows are global (all users), but event order is only
guaranteed within a Kafka partition, so lateness is judged per partition
(each has its own `Watermark`) and a window closes when *every* partition of the
topic has been heard from (events, or "at its end") and has passed its end; a
partition at its end that never had an event holds nothing back. Which events
count is then a function of each partition's own order, not of how the
partitions happened to interleave, so 1 worker, 2 workers and a replay agree.
Revenue is summed with ``math.fsum`` (exactly rounded, so independent of order
too).

The leaderboard counts every valid purchase (a late one too: it has no window
to miss) as absolute totals per page, safe to rewrite after a replay.
Pure Python and numpy, no I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from flows.watermark import NO_TIME, Watermark
from sinks.records import EventType

EVENT_TYPES: tuple[EventType, ...] = tuple(EventType)
PURCHASE_CODE = EVENT_TYPES.index(EventType.PURCHASE)


@dataclass(slots=True)
class WindowAccumulator:
    """What one open activity window has seen so far."""

    counts: list[int] = field(default_factory=lambda: [0] * len(EVENT_TYPES))
    amounts: list[float] = field(default_factory=list)
    users: set[str] = field(default_factory=set)

    @property
    def events(self) -> int:
        """Events in the window."""
        return sum(self.counts)


@dataclass(frozen=True, slots=True)
class ActivitySummary:
    """A closed window's figures."""

    start_ms: int
    end_ms: int
    counts: dict[EventType, int]
    events_per_s: float
    revenue: float
    distinct_users: int


@dataclass(frozen=True, slots=True)
class ActivityUpdate:
    """What one block of events changed."""

    late: int
    """Events of the block that were late (per-partition watermark)."""
    pages: dict[str, int]
    """Pages whose purchase total changed -> their new absolute total."""


class ActivityWindows:
    """Tumbling activity windows with per-partition watermarks, and the leaderboard."""

    __slots__ = (
        "closed_below_ms",
        "expected_partitions",
        "late_events",
        "lateness_ms",
        "leaderboard",
        "length_ms",
        "watermarks",
        "windows",
    )

    def __init__(self, *, length_ms: int, lateness_ms: int, expected_partitions: int = 1) -> None:
        self.length_ms = length_ms
        self.lateness_ms = lateness_ms
        self.expected_partitions = expected_partitions
        """Partitions of the activity topic. Until each has been heard from (events, or an empty
        block saying it is at its end), no window closes: the silent one may still hold the oldest
        events, and Bytewax interleaves partitions in no fixed order. No timer replaces this: a
        partition's worker may be slow to start or starved, and waiting for it is what keeps the
        result independent of scheduling."""
        self.closed_below_ms = NO_TIME
        """Every window ending at or before this has been emitted; its stragglers are late."""
        self.watermarks: dict[int, Watermark] = {}
        self.windows: dict[int, WindowAccumulator] = {}
        self.leaderboard: dict[str, int] = {}
        self.late_events = 0

    def __getstate__(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in self.__slots__}

    def __setstate__(self, state: dict[str, object]) -> None:
        # Defaults first, so a snapshot from before a field existed still restores; fields that
        # no longer exist (first_seen_ms) are skipped.
        self.expected_partitions, self.closed_below_ms = 1, NO_TIME
        for name, value in state.items():
            if name in self.__slots__:
                setattr(self, name, value)

    def resume(self, now_ms: int) -> None:
        """Restart the partitions' idle timers after a restore."""
        for wm in self.watermarks.values():
            wm.resume(now_ms)

    def add(
        self,
        partition: int,
        times: np.ndarray,
        types: np.ndarray,
        amounts: np.ndarray,
        users: tuple[str, ...],
        pages: tuple[str, ...],
        now_ms: int,
        at_end: bool = True,
    ) -> ActivityUpdate:
        """Take one partition's events (arrival order; none: just its word on `at_end`)."""
        wm = self.watermarks.get(partition)
        if wm is None:
            wm = self.watermarks[partition] = Watermark(self.lateness_ms)
        late = wm.observe(times, now_ms) | (
            times - times % self.length_ms + self.length_ms <= self.closed_below_ms
        )
        wm.caught_up(at_end, now_ms)
        n_late = int(late.sum())
        self.late_events += n_late
        purchases = np.flatnonzero(types == PURCHASE_CODE).tolist()
        changed: dict[str, int] = {}
        for i in purchases:
            page = pages[i]
            total = self.leaderboard.get(page, 0) + 1
            self.leaderboard[page] = total
            changed[page] = total
        keep = np.flatnonzero(~late)
        if keep.shape[0]:
            starts = times[keep] - times[keep] % self.length_ms
            for start in np.unique(starts).tolist():
                idx = keep[starts == start]
                acc = self.windows.get(start)
                if acc is None:
                    acc = self.windows[start] = WindowAccumulator()
                kinds = np.bincount(types[idx], minlength=len(EVENT_TYPES))
                for code, count in enumerate(kinds.tolist()):
                    acc.counts[code] += count
                bought = idx[types[idx] == PURCHASE_CODE]
                acc.amounts.extend(amounts[bought].tolist())
                acc.users.update(users[j] for j in idx.tolist())
        return ActivityUpdate(n_late, changed)

    def _bounding(self) -> list[Watermark]:
        """The partitions that bound the global watermark; empty until every one was heard from."""
        if len(self.watermarks) < self.expected_partitions:
            return []
        # A partition at its end that never had an event holds nothing back.
        return [
            wm for wm in self.watermarks.values() if wm.max_event_ms != NO_TIME or wm.caught_up_ms is None
        ]

    def watermark(self, now_ms: int) -> int | None:
        """The global watermark: the lowest of the partitions' (None before they allow one)."""
        bounding = self._bounding()
        if not bounding:
            return None
        return min(wm.tick(now_ms) for wm in bounding)

    def close(self, now_ms: int) -> list[ActivitySummary]:
        """Close every window whose end the global watermark has reached, oldest first."""
        watermark = self.watermark(now_ms)
        if watermark is None:
            return []
        due = sorted(s for s in self.windows if s + self.length_ms <= watermark)
        self.closed_below_ms = max(self.closed_below_ms, watermark)
        return [self._summary(s, self.windows.pop(s)) for s in due]

    def pending(self) -> list[ActivitySummary]:
        """Every open window as if closed now; the state is not changed (end of input)."""
        return [self._summary(s, self.windows[s]) for s in sorted(self.windows)]

    def next_close_due_ms(self) -> int | None:
        """Clock time at which idleness alone closes the oldest open window."""
        bounding = self._bounding()
        if not self.windows or not bounding:
            return None
        end = min(self.windows) + self.length_ms
        dues = [wm.due_at_ms(end) for wm in bounding]
        # A partition not caught up (or without events) moves only with its data, not the clock.
        return None if None in dues else max(d for d in dues if d is not None)

    def _summary(self, start: int, acc: WindowAccumulator) -> ActivitySummary:
        events = acc.events
        return ActivitySummary(
            start_ms=start,
            end_ms=start + self.length_ms,
            counts=dict(zip(EVENT_TYPES, acc.counts, strict=True)),
            events_per_s=events / (self.length_ms / 1000),
            revenue=math.fsum(acc.amounts),
            distinct_users=len(acc.users),
        )
