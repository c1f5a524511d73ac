"""Event-time tumbling and sliding windows of several series that share timestamps.

Values are stored once, in *panes*: slices of time whose length divides every
window's length and step (their greatest common divisor), aligned to the Unix
epoch. A window is the union of its panes, so a 60 s window sliding by 10 s
reads six 10 s panes instead of keeping six copies of each value.

A window ``[start, end)`` closes when the watermark reaches ``end``; only
windows holding at least one value are reported. Pure numpy, no I/O.
"""

from __future__ import annotations

import bisect
import itertools
import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class WindowSpec:
    """One kind of window: ``[k*step, k*step + length)`` for every integer k."""

    name: str
    length_ms: int
    step_ms: int

    def first_start_containing(self, t_ms: int) -> int:
        """Start of the earliest window of this kind that contains time `t_ms`."""
        return ((t_ms - self.length_ms) // self.step_ms + 1) * self.step_ms


@dataclass(frozen=True, slots=True)
class ClosedWindow:
    """A window's bounds and its values, (series, values)."""

    spec: WindowSpec
    start_ms: int
    end_ms: int
    values: np.ndarray


class PaneWindows:
    """Open windows of several kinds over `series` series, kept as panes."""

    __slots__ = ("next_start", "pane_ms", "pane_starts", "panes", "series", "specs")

    def __init__(self, specs: tuple[WindowSpec, ...], series: int) -> None:
        if not specs:
            raise ValueError("at least one window kind is needed")
        self.specs = specs
        self.series = series
        self.pane_ms = math.gcd(*(n for s in specs for n in (s.length_ms, s.step_ms)))
        self.panes: dict[int, list[np.ndarray]] = {}
        """Pane start -> chunks of (series, k) values, in arrival order."""
        self.pane_starts: list[int] = []
        """Sorted keys of `panes`."""
        self.next_start: list[int | None] = [None] * len(specs)
        """Per kind: start of the next window to close, always one holding values (None: none)."""

    def __getstate__(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in self.__slots__}

    def __setstate__(self, state: dict[str, object]) -> None:
        for name, value in state.items():
            setattr(self, name, value)

    def is_empty(self) -> bool:
        """No values are waiting in any window."""
        return not self.panes

    def add(self, times: np.ndarray, values: np.ndarray) -> None:
        """Add values (series, n) stamped `times` (int64 ms), none of them late."""
        n = times.shape[0]
        if n == 0:
            return
        pane_of = times - times % self.pane_ms
        first = int(pane_of[0])
        if n == 1 or (pane_of[0] == pane_of[-1] and (pane_of == first).all()):
            self._add_chunk(first, values)
            return
        if bool((pane_of[1:] >= pane_of[:-1]).all()):
            # In pane order already (in-order data): each pane's values are a slice, no copies.
            cuts = np.flatnonzero(pane_of[1:] != pane_of[:-1]) + 1
            bounds = [0, *cuts.tolist(), n]
            for a, b in itertools.pairwise(bounds):
                self._add_chunk(int(pane_of[a]), values[:, a:b])
            return
        order = np.argsort(pane_of, kind="stable")
        ordered = pane_of[order]
        cuts = np.flatnonzero(ordered[1:] != ordered[:-1]) + 1
        bounds = [0, *cuts.tolist(), n]
        for a, b in itertools.pairwise(bounds):
            self._add_chunk(int(ordered[a]), values[:, order[a:b]])

    def _add_chunk(self, pane: int, chunk: np.ndarray) -> None:
        chunks = self.panes.get(pane)
        if chunks is not None:
            chunks.append(chunk)
            return
        self.panes[pane] = [chunk]
        bisect.insort(self.pane_starts, pane)
        for i, spec in enumerate(self.specs):
            first = spec.first_start_containing(pane)
            current = self.next_start[i]
            if current is None or first < current:
                self.next_start[i] = first

    def _values(self, start: int, end: int) -> np.ndarray | None:
        lo = bisect.bisect_left(self.pane_starts, start)
        hi = bisect.bisect_left(self.pane_starts, end, lo)
        if lo == hi:
            return None
        chunks = [c for p in self.pane_starts[lo:hi] for c in self.panes[p]]
        return chunks[0] if len(chunks) == 1 else np.concatenate(chunks, axis=1)

    def _next_with_values(self, spec: WindowSpec, start: int) -> int | None:
        """The first window start >= `start` of `spec` whose window holds a pane."""
        i = bisect.bisect_left(self.pane_starts, start)
        if i == len(self.pane_starts):
            return None
        return max(start, spec.first_start_containing(self.pane_starts[i]))

    def close(self, watermark_ms: int) -> list[ClosedWindow]:
        """Close and return every window with values whose end is at or before the watermark."""
        closed: list[ClosedWindow] = []
        for i, spec in enumerate(self.specs):
            start = self.next_start[i]
            while start is not None and start + spec.length_ms <= watermark_ms:
                values = self._values(start, start + spec.length_ms)
                if values is not None:
                    closed.append(ClosedWindow(spec, start, start + spec.length_ms, values))
                start = self._next_with_values(spec, start + spec.step_ms)
            self.next_start[i] = start
        self._drop_finished()
        return closed

    def pending(self) -> list[ClosedWindow]:
        """Every window still holding values, as if closed now; the state is not changed.

        For the end of the input: results so far, which a later execution may complete.
        """
        out: list[ClosedWindow] = []
        for i, spec in enumerate(self.specs):
            start = self.next_start[i]
            while start is not None:
                values = self._values(start, start + spec.length_ms)
                if values is not None:
                    out.append(ClosedWindow(spec, start, start + spec.length_ms, values))
                start = self._next_with_values(spec, start + spec.step_ms)
        return out

    def next_close_ms(self) -> int | None:
        """End of the next window that will close (the watermark it waits for), if any."""
        ends = [
            s + spec.length_ms for s, spec in zip(self.next_start, self.specs, strict=True) if s is not None
        ]
        return min(ends) if ends else None

    def _drop_finished(self) -> None:
        # A pane is done once every kind has moved past all windows that start at or before it.
        keep_from = min((s for s in self.next_start if s is not None), default=None)
        if keep_from is None:
            self.panes.clear()
            self.pane_starts.clear()
            return
        cut = bisect.bisect_left(self.pane_starts, keep_from)
        if cut:
            for pane in self.pane_starts[:cut]:
                del self.panes[pane]
            del self.pane_starts[:cut]
