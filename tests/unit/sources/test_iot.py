"""The IoT simulator is realistic in its statistics, deterministic, and honest about what it injected."""

from __future__ import annotations

import dataclasses
import json
import math
import statistics

import pytest

from sources.clock import simulated_times
from sources.iot import DEFAULT_PROFILES, METRICS, IotConfig, IotSimulator, SimulatedReading
from sources.models import Metric, SensorReading
from sources.truth import AnomalyKind, ChangeKind

T0 = 1_700_000_000_000
QUIET = {"anomaly_rate": 0.0, "shift_rate_per_hour": 0.0, "drift_rate_per_hour": 0.0}
"""No injected events: only levels, cycles and noise."""


def simulate(config: IotConfig, seed: int = 1, rate: float = 20.0, count: int = 12_000) -> IotSimulator:
    sim = IotSimulator(config, seed)
    sim.readings = list(sim.run(simulated_times(T0, rate, count)))  # type: ignore[attr-defined]
    return sim


def readings_of(sim: IotSimulator) -> list[SimulatedReading]:
    return sim.readings  # type: ignore[attr-defined]


def flat_profiles(**changes: object) -> dict[Metric, object]:
    """Profiles without a cycle, so drifts and shifts are the only movement."""
    return {m: dataclasses.replace(p, amplitude=(0.0, 0.0), **changes) for m, p in DEFAULT_PROFILES.items()}


def test_same_seed_and_times_give_identical_readings_and_ground_truth():
    a = simulate(
        IotConfig(anomaly_rate=0.02, drift_rate_per_hour=6, shift_rate_per_hour=6), seed=7, count=3000
    )
    b = simulate(
        IotConfig(anomaly_rate=0.02, drift_rate_per_hour=6, shift_rate_per_hour=6), seed=7, count=3000
    )
    assert readings_of(a) == readings_of(b)
    assert a.truth.anomalies == b.truth.anomalies
    assert a.truth.changes == b.truth.changes
    assert a.truth.baselines == b.truth.baselines


def test_different_seeds_give_different_devices_and_readings():
    a = simulate(IotConfig(), seed=1, count=100)
    b = simulate(IotConfig(), seed=2, count=100)
    assert a.truth.baselines != b.truth.baselines
    assert [r.reading for r in readings_of(a)] != [r.reading for r in readings_of(b)]


def test_a_device_behaves_the_same_whatever_the_number_of_devices():
    small = IotSimulator(IotConfig(devices=2), seed=3)
    large = IotSimulator(IotConfig(devices=50), seed=3)
    assert (
        small.truth.baselines["device-001", Metric.HUMIDITY]
        == large.truth.baselines["device-001", Metric.HUMIDITY]
    )


def test_devices_report_in_turn_at_the_simulated_times():
    readings = readings_of(simulate(IotConfig(devices=3), rate=4.0, count=7))
    assert [r.key for r in readings] == ["device-000", "device-001", "device-002"] * 2 + ["device-000"]
    assert [r.reading.event_time - T0 for r in readings] == [0, 250, 500, 750, 1000, 1250, 1500]


def test_each_device_has_its_own_levels_within_the_profile():
    sim = IotSimulator(IotConfig(devices=10), seed=5)
    for metric in METRICS:
        levels = [sim.truth.baselines[d, metric].level for d in sim.device_ids]
        low, high = DEFAULT_PROFILES[metric].level
        assert all(low <= level <= high for level in levels)
        assert len({round(level, 6) for level in levels}) == 10


def test_means_match_each_devices_level_over_whole_cycles():
    # 20 readings/s for 600 s: two whole 300 s cycles, 1200 readings per device.
    sim = simulate(IotConfig(**QUIET), count=12_000)
    readings = readings_of(sim)
    for device in sim.device_ids:
        mine = [r.reading for r in readings if r.key == device]
        for metric in METRICS:
            baseline = sim.truth.baselines[device, metric]
            mean = statistics.fmean(r.value(metric) for r in mine)
            tolerance = 4 * baseline.noise_sigma / math.sqrt(len(mine)) + 0.005  # + rounding to 0.01
            assert mean == pytest.approx(baseline.level, abs=tolerance), (device, metric)


@pytest.mark.parametrize("noise_scale", [1.0, 2.5])
def test_noise_level_matches_the_profile(noise_scale):
    sim = simulate(IotConfig(noise_scale=noise_scale, **QUIET), count=6000)
    for metric in METRICS:
        residuals = [
            r.reading.value(metric) - sim.truth.signal(r.key, metric, r.reading.event_time)
            for r in readings_of(sim)
        ]
        expected = DEFAULT_PROFILES[metric].noise_sigma * noise_scale
        # 6000 residuals estimate a standard deviation to within ~1 %.
        assert statistics.pstdev(residuals) == pytest.approx(expected, rel=0.05), metric
        assert abs(statistics.fmean(residuals)) < 4 * expected / math.sqrt(len(residuals))


def test_the_cycle_has_the_configured_period_and_humidity_moves_against_temperature():
    sim = simulate(IotConfig(devices=1, noise_scale=0.0, **QUIET), rate=1.0, count=600)
    readings = [r.reading for r in readings_of(sim)]
    temperature = [r.temperature for r in readings]
    humidity = [r.humidity for r in readings]
    assert statistics.correlation(temperature, humidity) < -0.99
    # One reading per second and a 300 s period: the signal repeats every 300 readings.
    assert temperature[:300] == pytest.approx(temperature[300:], abs=0.011)
    assert max(temperature) - min(temperature) > 1.9  # twice an amplitude of at least 1 °C


def test_anomaly_rate_matches_the_setting():
    rate = 0.01
    sim = simulate(IotConfig(anomaly_rate=rate, shift_rate_per_hour=0, drift_rate_per_hour=0), count=30_000)
    for metric in METRICS:
        anomalies = [a for a in sim.truth.anomalies if a.metric is metric]
        continuing = sum(a.readings - 1 for a in anomalies)
        # Every reading not already inside an anomaly starts one with probability `rate`.
        trials = 30_000 - continuing
        tolerance = 4 * math.sqrt(rate * (1 - rate) / trials)
        assert len(anomalies) / trials == pytest.approx(rate, abs=tolerance), metric
        assert statistics.fmean(a.readings for a in anomalies) == pytest.approx(2.0, abs=0.2)  # 1..3 readings
        kinds = [a.kind for a in anomalies]
        assert 0.4 < kinds.count(AnomalyKind.SPIKE) / len(kinds) < 0.6


def test_anomalous_readings_are_flagged_and_match_the_ground_truth():
    sim = simulate(IotConfig(**{**QUIET, "anomaly_rate": 0.02}), count=6000)
    flagged = 0
    for r in readings_of(sim):
        for metric in METRICS:
            anomaly = sim.truth.anomaly_at(r.key, metric, r.reading.event_time)
            assert (anomaly is not None) == (metric in r.anomalous)
            if anomaly is None:
                continue
            flagged += 1
            deviation = r.reading.value(metric) - sim.truth.signal(r.key, metric, r.reading.event_time)
            noise = sim.truth.baselines[r.key, metric].noise_sigma
            assert deviation == pytest.approx(anomaly.magnitude, abs=5 * noise + 0.01)
            assert (anomaly.kind is AnomalyKind.SPIKE) == (deviation > 0)
    assert flagged == sum(a.readings for a in sim.truth.anomalies) > 0


def test_injected_anomalies_stand_out_from_the_signal():
    sim = IotSimulator(IotConfig(), seed=1)
    for metric in METRICS:
        profile = DEFAULT_PROFILES[metric]
        smallest_spike = profile.spike[0]
        # A spike is far beyond the noise and beyond a whole cycle's swing, so a detector can see it.
        assert smallest_spike > 20 * profile.noise_sigma
        assert smallest_spike > profile.amplitude[1]
    assert sim.truth.anomalies == []


def test_ground_truth_never_goes_on_the_wire():
    readings = readings_of(simulate(IotConfig(anomaly_rate=0.5), count=100))
    for r in readings:
        assert set(json.loads(r.reading.to_json())) == {
            "schema_version",
            "device_id",
            "event_time",
            "temperature",
            "humidity",
            "pressure",
        }
        assert SensorReading.from_json(r.reading.to_json()) == r.reading


def test_noise_free_readings_equal_the_ground_truth_signal_through_drifts_and_shifts():
    config = IotConfig(
        devices=3, noise_scale=0.0, anomaly_rate=0.0, shift_rate_per_hour=4, drift_rate_per_hour=4
    )
    sim = simulate(config, rate=3.0, count=3 * 3600)  # an hour per device
    assert {c.kind for c in sim.truth.changes} == {ChangeKind.DRIFT, ChangeKind.LEVEL_SHIFT}
    for r in readings_of(sim):
        for metric in METRICS:
            expected = sim.truth.signal(r.key, metric, r.reading.event_time)
            low, high = DEFAULT_PROFILES[metric].limits
            assert r.reading.value(metric) == pytest.approx(min(max(expected, low), high), abs=0.0051)


def test_a_drift_moves_the_level_at_its_slope_and_the_level_stays():
    config = IotConfig(
        devices=1, noise_scale=0.0, anomaly_rate=0.0, shift_rate_per_hour=0, drift_rate_per_hour=3,
        profiles=flat_profiles(),
    )  # fmt: skip
    sim = simulate(config, rate=1.0, count=4 * 3600)
    readings = {r.reading.event_time: r.reading for r in readings_of(sim)}
    drifts = sim.truth.changes_of("device-000", Metric.TEMPERATURE, ChangeKind.DRIFT)
    assert drifts
    for drift in drifts:
        if drift.end_ms > max(readings):
            continue
        assert sim.truth.slope_per_min("device-000", Metric.TEMPERATURE, drift.start_ms, drift.end_ms) == (
            pytest.approx(drift.slope_per_min, rel=1e-6)
        )
        before = readings[drift.start_ms].temperature
        after = readings[drift.end_ms - drift.end_ms % 1000 + 1000].temperature
        assert after - before == pytest.approx(drift.delta, abs=0.011)
        low, high = DEFAULT_PROFILES[Metric.TEMPERATURE].drift_slope_per_min
        assert low <= abs(drift.slope_per_min) <= high * 1.001


def test_a_level_shift_is_a_step_that_stays():
    config = IotConfig(
        devices=1, noise_scale=0.0, anomaly_rate=0.0, shift_rate_per_hour=2, drift_rate_per_hour=0,
        profiles=flat_profiles(),
    )  # fmt: skip
    sim = simulate(config, rate=1.0, count=3 * 3600)
    readings = {r.reading.event_time: r.reading for r in readings_of(sim)}
    shifts = sim.truth.changes_of("device-000", Metric.PRESSURE, ChangeKind.LEVEL_SHIFT)
    assert shifts
    for shift in shifts:
        step = readings[shift.start_ms].pressure - readings[shift.start_ms - 1000].pressure
        assert step == pytest.approx(shift.delta, abs=0.011)
        assert shift.slope_per_min == 0.0


def test_lasting_changes_arrive_at_the_configured_rate_per_hour():
    # Rates are in event time: 2 devices reporting every 10 s for 50 hours.
    hours = 50
    config = IotConfig(devices=2, anomaly_rate=0.0, shift_rate_per_hour=2.0, drift_rate_per_hour=1.0)
    sim = simulate(config, rate=0.2, count=int(0.2 * 3600 * hours))
    end = T0 + hours * 3_600_000
    signal_hours = 2 * 3 * hours
    shifts = [c for c in sim.truth.changes if c.kind is ChangeKind.LEVEL_SHIFT]
    expected = 2.0 * signal_hours
    assert len(shifts) == pytest.approx(expected, abs=4 * math.sqrt(expected))
    # Drifts come one at a time per signal: the rate applies to the time spent not drifting.
    drifts = [c for c in sim.truth.changes if c.kind is ChangeKind.DRIFT]
    drifting_hours = sum(min(d.end_ms, end) - d.start_ms for d in drifts) / 3_600_000
    expected = 1.0 * (signal_hours - drifting_hours)
    assert len(drifts) == pytest.approx(expected, abs=4 * math.sqrt(expected))


def test_levels_wander_but_stay_plausible_over_days():
    config = IotConfig(devices=2, anomaly_rate=0.0, shift_rate_per_hour=3.0, drift_rate_per_hour=3.0)
    sim = simulate(config, rate=0.05, count=int(0.05 * 3600 * 48))
    for (device, metric), baseline in sim.truth.baselines.items():
        profile = DEFAULT_PROFILES[metric]
        changes = sim.truth.changes_of(device, metric)
        assert len(changes) > 100
        # Offsets are piecewise linear, so their extremes are at the changes' starts and ends.
        for t in {c.start_ms for c in changes} | {c.end_ms for c in changes}:
            offset = sim.truth.signal(device, metric, t) - baseline.at(t, sim.truth.period_ms)
            assert abs(offset) <= profile.max_drift_offset + profile.max_shift_offset


def test_a_wall_clock_stepping_back_draws_no_changes_and_keeps_going():
    sim = IotSimulator(IotConfig(devices=1, shift_rate_per_hour=1e6, drift_rate_per_hour=1e6), seed=1)
    sim.emit(T0)
    sim.emit(T0 - 5000)  # the clock went back: no elapsed time, no change
    assert sim.truth.changes == []
    sim.emit(T0 + 1000)
    assert sim.truth.changes


@pytest.mark.parametrize(
    "bad",
    [
        {"devices": 0},
        {"cycle_period_s": 0},
        {"anomaly_rate": 1.5},
        {"noise_scale": -1},
        {"anomaly_max_readings": 0},
    ],
)
def test_an_impossible_config_is_refused(bad):
    with pytest.raises(ValueError):
        IotConfig(**bad)
