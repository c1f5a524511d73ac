"""Website activity: event-time tumbling windows and the all-time purchase leaderboard.

Each window reports counts per event type, events per second, revenue and
distinct users. Windows are global (all users), but event order is only
guaranteed within a Kafka partition, so lateness is judged per partition
(each has its own `Watermark`) and a window closes when *every* partition seen
has passed its end. Which events count is then a function of each partition's
own order, not of how the partitions happened to interleave, so 1 worker,
2 workers and a replay agree. Revenue is summed with ``math.fsum`` (exactly
rounded, so independent of order too).

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
        "first_seen_ms",
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
        """Partitions of the activity topic. Until each has been heard from (or the allowed lateness
        has passed on the clock since the first event), no window closes: the silent one may still
        hold the oldest events, and Bytewax interleaves partitions in no fixed order."""
        self.first_seen_ms: int | None = None
        """Clock time of the first event of any partition."""
        self.closed_below_ms = NO_TIME
        """Every window ending at or before this has been emitted; its stragglers are late."""
        self.watermarks: dict[int, Watermark] = {}
        self.windows: dict[int, WindowAccumulator] = {}
        self.leaderboard: dict[str, int] = {}
        self.late_events = 0

    def __getstate__(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in self.__slots__}

    def __setstate__(self, state: dict[str, object]) -> None:
        # Defaults first, so a snapshot from before a field existed still restores.
        self.expected_partitions, self.first_seen_ms, self.closed_below_ms = 1, None, NO_TIME
        for name, value in state.items():
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
    ) -> ActivityUpdate:
        """Take one partition's events (arrival order)."""
        wm = self.watermarks.get(partition)
        if wm is None:
            wm = self.watermarks[partition] = Watermark(self.lateness_ms)
        if self.first_seen_ms is None and times.shape[0]:
            self.first_seen_ms = now_ms
        late = wm.observe(times, now_ms) | (
            times - times % self.length_ms + self.length_ms <= self.closed_below_ms
        )
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

    def watermark(self, now_ms: int) -> int | None:
        """The global watermark: the lowest of the partitions' (None before any event)."""
        if not self.watermarks:
            return None
        low = min(wm.tick(now_ms) for wm in self.watermarks.values())
        if len(self.watermarks) < self.expected_partitions and not self._waited_for_silent(now_ms):
            return None
        return low

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
        if not self.windows or not self.watermarks:
            return None
        end = min(self.windows) + self.length_ms
        dues = [wm.due_at_ms(end) for wm in self.watermarks.values()]
        if len(self.watermarks) < self.expected_partitions and self.first_seen_ms is not None:
            dues.append(self.first_seen_ms + self.lateness_ms)
        return max(d for d in dues if d is not None)

    def _waited_for_silent(self, now_ms: int) -> bool:
        return self.first_seen_ms is not None and now_ms - self.first_seen_ms >= self.lateness_ms

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
