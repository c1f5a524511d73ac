"""Online least-squares trend of several series over a rolling span of event time.

The fit regresses each series on event time (in minutes, so the slope is in
units per minute) over the readings of the last ``span``. Readings are summed
into time buckets of ``span / 60`` (5 s for the default 5 min), each bucket
holding the count and the sums of u, u², x, u·x and x² in its own local
coordinates. Adding a reading is O(1); the rolling span drops whole buckets
(the fit covers the readings whose bucket starts after ``newest - span``); a fit
merges at most 61 buckets with Chan's parallel formulas for centred moments,
which keep cancellation error small. Memory per series is bounded by the
bucket count, not by the reading rate.

Direction: rising or falling only if the fit has ``min_points`` readings, the
slope is at least ``min_slope_per_min`` in size, and the fit supports it: the
slope's t statistic (slope over its standard error) is at least ``min_t``.
Otherwise stable. Sums are accumulated strictly in arrival order, so results
are bit-identical however the readings were batched. Pure numpy, no I/O.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sinks.records import Trend

BUCKETS_PER_SPAN = 60
_NO_TIME = -(2**62)
_MS_PER_MIN = 60_000.0


@dataclass(frozen=True, slots=True)
class Fit:
    """The trend of one series."""

    slope_per_min: float
    """Units per minute."""
    r2: float
    """Coefficient of determination, 0..1 (1 for a perfectly flat series)."""
    t_stat: float
    """Slope over its standard error (inf for a perfect non-flat line, 0 when undefined)."""
    points: int
    direction: Trend
    newest_ms: int
    """Event time of the newest reading seen."""


class RollingTrend:
    """Rolling OLS of `series` series sharing timestamps; see the module docstring."""

    __slots__ = (
        "_newest",
        "_slots",
        "_starts",
        "_table",
        "bucket_ms",
        "min_points",
        "min_slope",
        "min_t",
        "series",
        "span_ms",
    )

    def __init__(
        self,
        *,
        span_s: float = 300.0,
        series: int = 1,
        min_points: int = 10,
        min_t: float = 3.0,
        min_slope_per_min: float | Sequence[float] = 0.0,
    ) -> None:
        """Configure the fit.

        Args:
            span_s: Rolling span of event time, seconds.
            series: Number of series fed together (they share event times).
            min_points: Readings needed before a direction other than stable.
            min_t: |t| statistic of the slope needed for a direction.
            min_slope_per_min: Smallest |slope| called a direction, per series or one for all.
        """
        self.span_ms = round(span_s * 1000)
        if self.span_ms < BUCKETS_PER_SPAN:
            raise ValueError("span_s must be at least 0.06 s")
        self.bucket_ms = self.span_ms // BUCKETS_PER_SPAN
        self.series = series
        self.min_points = min_points
        self.min_t = float(min_t)
        slopes = (
            [float(min_slope_per_min)] * series
            if isinstance(min_slope_per_min, int | float)
            else [float(s) for s in min_slope_per_min]
        )
        if len(slopes) != series:
            raise ValueError("one min_slope_per_min per series")
        self.min_slope = slopes
        self._newest = _NO_TIME
        # A ring of buckets: live buckets span at most span + one bucket, so two more slots than
        # buckets per span never let a live bucket share a slot with a new one.
        self._slots = BUCKETS_PER_SPAN + 2
        self._starts = np.full(self._slots, _NO_TIME, dtype=np.int64)
        # Per slot: [n, Su, Suu, X0 (k), Sx (k), Sux (k), Sxx (k)] in the bucket's local
        # coordinates: u = (t - bucket start) in minutes, x' = x - X0 (X0: the bucket's first value).
        self._table = np.zeros((self._slots, 3 + 4 * series), dtype=np.float64)

    def __getstate__(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in self.__slots__}

    def __setstate__(self, state: dict[str, object]) -> None:
        for name, value in state.items():
            setattr(self, name, value)

    @property
    def newest_ms(self) -> int | None:
        """Newest event time seen, if any."""
        return None if self._newest == _NO_TIME else self._newest

    def update(self, event_time_ms: int, values: float | Sequence[float]) -> None:
        """Add one reading (a value per series)."""
        row = np.atleast_1d(np.asarray(values, dtype=np.float64)).reshape(self.series, 1)
        self.update_many(np.array([event_time_ms], dtype=np.int64), row)

    def update_many(self, times: np.ndarray, values: np.ndarray) -> None:
        """Add readings: `times` int64 ms (m,), `values` float64 (series, m) or (m,) for one series."""
        m = times.shape[0]
        if m == 0:
            return
        if values.ndim == 1:
            values = values.reshape(1, m)
        newest = max(self._newest, int(times.max()))
        horizon = newest - self.span_ms
        self._newest = newest
        stale = self._starts <= horizon
        if stale.any():
            self._starts[stale] = _NO_TIME
            self._table[stale] = 0.0
        bucket_of = times - times % self.bucket_ms
        if m == 1:
            if bucket_of[0] > horizon:
                self._add_one(int(bucket_of[0]), int(times[0]), values[:, 0].tolist())
            return
        keep = bucket_of > horizon
        if not keep.all():
            times, values, bucket_of = times[keep], values[:, keep], bucket_of[keep]
            m = times.shape[0]
            if m == 0:
                return
        self._add_block(times, values, bucket_of)

    def _add_one(self, bucket: int, t: int, xs: list[float]) -> None:
        """One reading with Python floats: the same operations as one step of `_add_block`."""
        k = self.series
        slot = (bucket // self.bucket_ms) % self._slots
        if self._starts[slot] != bucket:
            self._starts[slot] = bucket
            self._table[slot] = 0.0
            self._table[slot, 3 : 3 + k] = xs
        row = self._table[slot].tolist()
        u = (t - bucket) / _MS_PER_MIN
        row[0] += 1.0
        row[1] += u
        row[2] += u * u
        for i in range(k):
            dx = xs[i] - row[3 + i]
            row[3 + k + i] += dx
            row[3 + 2 * k + i] += u * dx
            row[3 + 3 * k + i] += dx * dx
        self._table[slot] = row

    def _add_block(self, times: np.ndarray, values: np.ndarray, bucket_of: np.ndarray) -> None:
        k = self.series
        m = times.shape[0]
        if bool((bucket_of[1:] >= bucket_of[:-1]).all()):
            ordered = bucket_of  # in bucket order already (in-order data): no reordering
        else:
            order = np.argsort(bucket_of, kind="stable")
            ordered, times, values = bucket_of[order], times[order], values[:, order]
        cuts = np.flatnonzero(ordered[1:] != ordered[:-1]) + 1
        bounds = [0, *cuts.tolist(), m]
        u = (times - ordered) / _MS_PER_MIN
        for a, b in itertools.pairwise(bounds):
            bucket = int(ordered[a])
            slot = (bucket // self.bucket_ms) % self._slots
            row = self._table[slot]
            if self._starts[slot] != bucket:
                self._starts[slot] = bucket
                row[:] = 0.0
                row[3 : 3 + k] = values[:, a]
            # The bucket's readings in arrival order after its sums so far: a cumulative sum along
            # each row is the same sequential accumulation as adding them one at a time.
            ug = u[a:b]
            dx = values[:, a:b] - row[3 : 3 + k, None]
            acc = np.empty((2 + 3 * k, b - a + 1), dtype=np.float64)
            acc[0:2, 0] = row[1:3]
            acc[2:, 0] = row[3 + k :]
            acc[0, 1:] = ug
            acc[1, 1:] = ug * ug
            acc[2 : 2 + k, 1:] = dx
            acc[2 + k : 2 + 2 * k, 1:] = ug * dx
            acc[2 + 2 * k :, 1:] = dx * dx
            sums = acc.cumsum(axis=1)[:, -1]
            row[0] += b - a
            row[1:3] = sums[0:2]
            row[3 + k :] = sums[2:]

    def fit(self) -> list[Fit]:
        """The current fit of each series."""
        k = self.series
        newest = self._newest
        live = np.flatnonzero(self._starts > newest - self.span_ms)
        if newest == _NO_TIME or live.shape[0] == 0:
            return [Fit(0.0, 0.0, 0.0, 0, Trend.STABLE, newest) for _ in range(k)]
        live = live[np.argsort(self._starts[live])]
        starts = self._starts[live]
        table = self._table[live]  # (B, 3 + 4k), oldest bucket first
        n_b = table[:, 0]
        n = float(n_b.sum())
        points = int(n)
        offset = (starts - starts[0]) / _MS_PER_MIN
        su, suu = table[:, 1], table[:, 2]
        x0 = table[:, 3 : 3 + k]
        sx, sux, sxx = table[:, 3 + k : 3 + 2 * k], table[:, 3 + 2 * k : 3 + 3 * k], table[:, 3 + 3 * k :]
        # Per-bucket means and centred moments, then Chan's merge across buckets.
        mu_b = su / n_b
        mx_b = sx / n_b[:, None]
        m2u_b = suu - su * mu_b
        m2x_b = sxx - sx * mx_b
        c_b = sux - su[:, None] * mx_b
        # Coordinates relative to the first bucket: a constant series then has exactly zero spread.
        u_b = offset + mu_b
        x_b = (x0 - x0[0]) + mx_b
        u_bar = float(_total(n_b * u_b) / n)
        x_bar = _total(n_b[:, None] * x_b) / n
        du = u_b - u_bar
        dx = x_b - x_bar
        m2u = float(_total(m2u_b) + _total(n_b * du * du))
        m2x = _total(m2x_b) + _total(n_b[:, None] * dx * dx)
        cov = _total(c_b) + _total(n_b[:, None] * du[:, None] * dx)
        return [
            self._fit_one(points, m2u, float(m2x[i]), float(cov[i]), self.min_slope[i], newest)
            for i in range(k)
        ]

    def _fit_one(self, points: int, m2u: float, m2x: float, cov: float, min_slope: float, newest: int) -> Fit:
        if points < 2 or m2u <= 0.0:
            return Fit(0.0, 0.0, 0.0, points, Trend.STABLE, newest)
        slope = cov / m2u
        if m2x <= 0.0:
            return Fit(0.0, 1.0, 0.0, points, Trend.STABLE, newest)
        r2 = min(max(cov * cov / (m2u * m2x), 0.0), 1.0)
        t_stat = 0.0
        if points > 2:
            ss_res = max(m2x - slope * cov, 0.0)
            se = math.sqrt(ss_res / (points - 2) / m2u)
            t_stat = slope / se if se > 0.0 else math.copysign(math.inf, slope)
        direction = Trend.STABLE
        if points >= self.min_points and abs(slope) >= min_slope and abs(t_stat) >= self.min_t and slope:
            direction = Trend.RISING if slope > 0 else Trend.FALLING
        return Fit(slope, r2, t_stat, points, direction, newest)


def _total(a: np.ndarray) -> np.ndarray:
    """Sum along the first axis strictly in order, whatever the array's shape.

    (numpy's sum switches between pairwise and row-by-row orders with the
    layout; a fixed order keeps one series' fit identical whether it is fitted
    alone or beside others.)
    """
    return np.cumsum(a, axis=0)[-1]
