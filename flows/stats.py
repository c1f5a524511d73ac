"""Aggregates of one event-time window: count, average, minimum, maximum and p99.

Pure numpy, no I/O. The p99 is exactly what ``numpy.percentile(values, 99)``
returns (its default ``linear`` method, Hyndman & Fan type 7), for any number
of values: the window's values are kept and sorted, and numpy's own
interpolation formula is applied to the two neighbouring order statistics.

Why exact rather than a sketch: a window holds what one device reports in at
most a minute (hundreds to tens of thousands of values), which costs little to
keep; sorting makes every aggregate a function of the window's *set* of values,
independent of arrival order and of how the values were batched, so 1 worker,
2 workers and a replay give bit-identical results; and the sliding windows are
assembled from shared panes, so each value is stored once.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

P99_QUANTILE = 99 / 100
"""numpy computes ``true_divide(99, 100)`` first; the same float64."""


@dataclass(frozen=True, slots=True)
class Summary:
    """Aggregates of one window of one series (values in the metric's unit)."""

    count: int
    avg: float
    min: float
    max: float
    p99: float


def _p99_neighbours(n: int) -> tuple[int, int, float]:
    """(lower index, upper index, weight) of the 99th percentile in a sorted sample of `n`."""
    virtual = (n - 1) * P99_QUANTILE
    if virtual >= n - 1:
        # numpy clamps to the last element, with both neighbours -1 and weight virtual - (-1).
        return n - 1, n - 1, virtual + 1.0
    lower = math.floor(virtual)
    return lower, lower + 1, virtual - lower


def _lerp(a: float, b: float, t: float) -> float:
    # numpy's _lerp: the two one-sided forms keep the result monotonic and exact at t=0 and t=1.
    diff = b - a
    return b - diff * (1 - t) if t >= 0.5 else a + diff * t


def p99_sorted(sorted_values: np.ndarray) -> float:
    """``numpy.percentile(values, 99)`` given the values already sorted ascending (1-D, non-empty)."""
    lower, upper, weight = _p99_neighbours(sorted_values.shape[0])
    return _lerp(float(sorted_values[lower]), float(sorted_values[upper]), weight)


def p99(values: np.ndarray) -> float:
    """``numpy.percentile(values, 99)`` of a non-empty 1-D array."""
    return p99_sorted(np.sort(values))


def summarize_sorted(sorted_values: np.ndarray) -> Summary:
    """Aggregates of one window from its values sorted ascending (1-D, non-empty)."""
    n = int(sorted_values.shape[0])
    if n == 0:
        raise ValueError("an empty window has no aggregates")
    return Summary(
        count=n,
        avg=float(sorted_values.sum() / n),
        min=float(sorted_values[0]),
        max=float(sorted_values[-1]),
        p99=p99_sorted(sorted_values),
    )


def summarize(values: np.ndarray) -> Summary:
    """Aggregates of one window's values (1-D, any order, non-empty)."""
    return summarize_sorted(np.sort(np.asarray(values, dtype=np.float64)))


Aggregates = tuple[int, float, float, float, float]
"""(count, avg, min, max, p99) of one series of one window: `Summary`'s fields, as a tuple."""


def summarize_blocks(blocks: Sequence[np.ndarray]) -> list[list[Aggregates]]:
    """Aggregates of every row of every block: ``out[i][r]`` is row `r` of ``blocks[i]``.

    Each block is a non-empty (series, values) array of one window; all blocks
    have the same number of series. Blocks with the same number of values are
    stacked and done in one sort and one sum (a backlog closes dozens of windows
    at once, and a numpy call per window costs more than its work). Each result
    equals `summarize` of that row alone, bit for bit: every row is sorted alone
    and summed as a contiguous row (numpy reduces the last axis of a C-ordered
    array row by row, pairwise, as it does a 1-D array), and the p99 applies
    numpy's interpolation elementwise with the same float operations as `_lerp`.
    """
    out: list[list[Aggregates]] = [[] for _ in blocks]
    by_count: dict[int, list[int]] = {}
    for i, block in enumerate(blocks):
        if block.ndim != 2 or block.shape[1] == 0:
            raise ValueError("expected non-empty (series, values) arrays")
        by_count.setdefault(int(block.shape[1]), []).append(i)
    for n, members in by_count.items():
        stacked = np.stack([blocks[i] for i in members]) if len(members) > 1 else blocks[members[0]][None]
        # C order: each row contiguous, so its sum is the 1-D pairwise sum (not so a strided row).
        ordered = np.ascontiguousarray(np.sort(stacked, axis=2))
        lower, upper, weight = _p99_neighbours(n)
        a = ordered[:, :, lower]
        b = ordered[:, :, upper]
        diff = b - a
        # numpy's _lerp with a scalar weight: the same two one-sided forms, elementwise.
        p99s = (b - diff * (1 - weight) if weight >= 0.5 else a + diff * weight).tolist()
        avgs = (ordered.sum(axis=2) / n).tolist()
        mins = ordered[:, :, 0].tolist()
        maxs = ordered[:, :, -1].tolist()
        for j, i in enumerate(members):
            out[i] = [
                (n, avg, lo, hi, p) for avg, lo, hi, p in zip(avgs[j], mins[j], maxs[j], p99s[j], strict=True)
            ]
    return out
