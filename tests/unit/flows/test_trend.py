import pickle

import numpy as np
import pytest

from flows.trend import RollingTrend
from sinks.records import Trend
from tests.unit.flows.reference import trend_reference

T0 = 1_700_000_000_000


def _readings(n, seed, slopes=(0.05, -0.2, 0.0), noise=(0.3, 1.0, 0.2)):
    """Three series with the given slopes per minute, irregular and mildly out-of-order times."""
    rng = np.random.default_rng(seed)
    times = T0 + np.cumsum(rng.integers(100, 3000, n)).astype(np.int64)
    times = times + rng.integers(-1500, 1500, n)
    minutes = (times - T0) / 60_000
    values = np.vstack([20 + s * minutes + rng.normal(0, e, n) for s, e in zip(slopes, noise, strict=True)])
    return times, values


def test_slope_and_fit_quality_match_numpy_polyfit_over_the_span():
    times, values = _readings(3000, seed=16)
    trend = RollingTrend(span_s=300, series=3)
    for i in range(0, 3000, 97):
        trend.update_many(times[i : i + 97], values[:, i : i + 97])
    for fit, row in zip(trend.fit(), values, strict=True):
        slope, r2, points = trend_reference(times.tolist(), row.tolist(), 300_000, trend.bucket_ms)
        assert fit.points == points > 100
        assert fit.slope_per_min == pytest.approx(slope, rel=1e-9, abs=1e-12)
        assert fit.r2 == pytest.approx(r2, rel=1e-9, abs=1e-12)
        assert fit.newest_ms == int(times.max())


def test_span_drops_old_readings_in_whole_buckets():
    trend = RollingTrend(span_s=60, series=1)
    trend.update_many(np.arange(T0, T0 + 120_000, 1000, dtype=np.int64), np.arange(120.0))
    # newest = T0 + 119 s; buckets of 1 s starting after T0 + 59 s: readings 60..119
    assert trend.fit()[0].points == 60
    assert trend.fit()[0].slope_per_min == pytest.approx(60.0)


def test_any_batching_gives_bit_identical_fits():
    times, values = _readings(2500, seed=17)
    one = RollingTrend(span_s=120, series=3, min_slope_per_min=0.01)
    for i in range(2500):
        one.update(int(times[i]), values[:, i])
    blocked = RollingTrend(span_s=120, series=3, min_slope_per_min=0.01)
    rng = np.random.default_rng(18)
    i = 0
    while i < 2500:
        k = int(rng.choice([1, 3, 40, 500]))
        blocked.update_many(times[i : i + k], values[:, i : i + k])
        i += k
    assert one.fit() == blocked.fit()


def test_series_fitted_together_equal_each_fitted_alone():
    times, values = _readings(800, seed=19)
    together = RollingTrend(span_s=300, series=3)
    together.update_many(times, values)
    for row, fit in enumerate(together.fit()):
        alone = RollingTrend(span_s=300, series=1)
        alone.update_many(times, values[row])
        assert alone.fit() == [fit]


def test_clear_slopes_are_rising_and_falling_and_noise_is_stable():
    times, values = _readings(2000, seed=20, slopes=(0.5, -0.5, 0.0), noise=(0.2, 0.2, 0.2))
    trend = RollingTrend(span_s=300, series=3, min_slope_per_min=0.05, min_t=3.0)
    trend.update_many(times, values)
    assert [f.direction for f in trend.fit()] == [Trend.RISING, Trend.FALLING, Trend.STABLE]


def test_a_slope_below_the_threshold_is_stable_even_if_significant():
    minutes = np.arange(600) / 60
    trend = RollingTrend(span_s=600, series=1, min_slope_per_min=0.1)
    trend.update_many(T0 + np.arange(600, dtype=np.int64) * 1000, 5 + 0.05 * minutes)
    fit = trend.fit()[0]
    assert fit.slope_per_min == pytest.approx(0.05)
    assert fit.direction is Trend.STABLE


def test_a_slope_the_fit_does_not_support_is_stable():
    rng = np.random.default_rng(21)
    # Two points per minute of pure noise: any slope is chance.
    trend = RollingTrend(span_s=300, series=1, min_points=3, min_t=3.0)
    trend.update_many(T0 + np.arange(10, dtype=np.int64) * 30_000, rng.normal(0, 5, 10))
    fit = trend.fit()[0]
    assert abs(fit.t_stat) < 3.0 and fit.direction is Trend.STABLE


def test_too_few_points_are_stable():
    trend = RollingTrend(span_s=300, series=1, min_points=10)
    trend.update_many(T0 + np.arange(5, dtype=np.int64) * 1000, np.arange(5.0) * 100)
    assert trend.fit()[0].direction is Trend.STABLE


def test_constant_series_has_zero_slope_perfect_fit_and_is_stable():
    trend = RollingTrend(span_s=300, series=1)
    trend.update_many(T0 + np.arange(500, dtype=np.int64) * 700, np.full(500, 1013.25))
    fit = trend.fit()[0]
    assert (fit.slope_per_min, fit.r2, fit.direction) == (0.0, 1.0, Trend.STABLE)


def test_no_readings_and_one_reading_are_stable_with_no_slope():
    trend = RollingTrend(series=2)
    assert [(f.points, f.slope_per_min) for f in trend.fit()] == [(0, 0.0), (0, 0.0)]
    trend.update(T0, [1.0, 2.0])
    assert [(f.points, f.slope_per_min, f.direction) for f in trend.fit()] == [(1, 0.0, Trend.STABLE)] * 2


def test_a_restored_trend_continues_exactly():
    times, values = _readings(1000, seed=22)
    a = RollingTrend(span_s=300, series=3)
    a.update_many(times[:400], values[:, :400])
    b = pickle.loads(pickle.dumps(a))
    a.update_many(times[400:], values[:, 400:])
    b.update_many(times[400:], values[:, 400:])
    assert a.fit() == b.fit()
