"""The ground truth answers a benchmark's questions exactly: which alert is right, which trend is real."""

from __future__ import annotations

import pytest

from sources.models import Metric
from sources.truth import AnomalyKind, Baseline, ChangeKind, GroundTruth, InjectedAnomaly, RegimeChange

T = Metric.TEMPERATURE
MIN = 60_000


def flat_truth(level: float = 20.0) -> GroundTruth:
    truth = GroundTruth(period_ms=300_000)
    truth.baselines["d", T] = Baseline(level=level, amplitude=0.0, phase=0.0, noise_sigma=0.1)
    return truth


def test_a_drift_adds_nothing_before_rises_linearly_during_and_keeps_its_delta_after():
    drift = RegimeChange("d", T, ChangeKind.DRIFT, start_ms=10 * MIN, end_ms=20 * MIN, delta=2.0)
    assert drift.offset_at(9 * MIN) == 0.0
    assert drift.offset_at(15 * MIN) == pytest.approx(1.0)
    assert drift.offset_at(20 * MIN) == 2.0
    assert drift.offset_at(99 * MIN) == 2.0
    assert drift.slope_per_min == pytest.approx(0.2)


def test_a_level_shift_is_a_step_with_no_slope():
    shift = RegimeChange("d", T, ChangeKind.LEVEL_SHIFT, start_ms=MIN, end_ms=MIN, delta=-3.0)
    assert shift.offset_at(MIN - 1) == 0.0
    assert shift.offset_at(MIN) == -3.0
    assert shift.slope_per_min == 0.0


def test_signal_sums_level_cycle_drifts_and_shifts():
    truth = GroundTruth(period_ms=240_000)
    truth.baselines["d", T] = Baseline(level=20.0, amplitude=2.0, phase=0.0, noise_sigma=0.1)
    truth.add_change(RegimeChange("d", T, ChangeKind.DRIFT, 0, 10 * MIN, 5.0))
    truth.add_change(RegimeChange("d", T, ChangeKind.LEVEL_SHIFT, 2 * MIN, 2 * MIN, 1.0))
    # A quarter period in: the sine is at its peak; the drift has added 0.5; no shift yet.
    assert truth.signal("d", T, MIN) == pytest.approx(20.0 + 2.0 + 0.5)
    # Half a period: the sine is back at zero; drift 1.0 and the shift, from this instant on, 1.0.
    assert truth.signal("d", T, 2 * MIN) == pytest.approx(20.0 + 1.0 + 1.0, abs=1e-9)
    # Three quarters: the sine's trough.
    assert truth.signal("d", T, 3 * MIN) == pytest.approx(20.0 - 2.0 + 1.5 + 1.0)


def test_slope_per_min_recovers_a_drift_and_is_zero_when_flat():
    truth = flat_truth()
    assert truth.slope_per_min("d", T, 0, 10 * MIN) == pytest.approx(0.0, abs=1e-12)
    truth.add_change(RegimeChange("d", T, ChangeKind.DRIFT, 0, 10 * MIN, -3.0))
    assert truth.slope_per_min("d", T, 0, 10 * MIN) == pytest.approx(-0.3)
    assert truth.slope_per_min("d", T, 20 * MIN, 30 * MIN) == pytest.approx(0.0, abs=1e-12)


def test_slope_per_min_of_a_whole_cycle_is_small_but_of_its_rising_half_is_large():
    truth = GroundTruth(period_ms=4 * MIN)
    truth.baselines["d", T] = Baseline(level=0.0, amplitude=1.0, phase=0.0, noise_sigma=0.0)
    rising = truth.slope_per_min("d", T, -MIN, MIN)  # sine from -1 to +1 over 2 minutes
    assert rising > 0.9
    assert truth.slope_per_min("d", T, MIN, 3 * MIN) == pytest.approx(-rising)


def test_slope_per_min_refuses_an_empty_span():
    with pytest.raises(ValueError):
        flat_truth().slope_per_min("d", T, 5, 5)


def test_anomaly_at_finds_the_covering_anomaly_with_a_tolerance():
    truth = flat_truth()
    for start in (1_000, 5_000, 9_000):
        index = truth.begin_anomaly(InjectedAnomaly("d", T, AnomalyKind.SPIKE, start, start, 1, 5.0))
        truth.extend_anomaly(index, start + 500)
    hit = truth.anomaly_at("d", T, 5_250)
    assert hit is not None
    assert (hit.start_ms, hit.end_ms, hit.readings) == (5_000, 5_500, 2)
    assert truth.anomaly_at("d", T, 5_600) is None
    assert truth.anomaly_at("d", T, 5_600, tolerance_ms=100) == hit
    assert truth.anomaly_at("d", T, 4_950, tolerance_ms=100) == hit
    assert truth.anomaly_at("d", T, 0) is None
    assert truth.anomaly_at("d", T, 20_000) is None
    assert truth.anomaly_at("d", Metric.PRESSURE, 5_250) is None
    assert truth.anomaly_at("other", T, 5_250) is None


def test_changes_of_filters_by_signal_and_kind_in_time_order():
    truth = flat_truth()
    truth.add_change(RegimeChange("d", T, ChangeKind.DRIFT, 0, MIN, 1.0))
    truth.add_change(RegimeChange("e", T, ChangeKind.DRIFT, 0, MIN, 1.0))
    truth.add_change(RegimeChange("d", T, ChangeKind.LEVEL_SHIFT, 2 * MIN, 2 * MIN, 1.0))
    truth.add_change(RegimeChange("d", T, ChangeKind.DRIFT, 3 * MIN, 4 * MIN, 1.0))
    assert [c.start_ms for c in truth.changes_of("d", T)] == [0, 2 * MIN, 3 * MIN]
    assert [c.start_ms for c in truth.changes_of("d", T, ChangeKind.DRIFT)] == [0, 3 * MIN]
    assert truth.changes_of("d", Metric.HUMIDITY) == []
