"""The IoT simulator: devices measuring temperature (°C), humidity (%) and pressure (hPa).

Each device has its own level per metric, a sinusoidal cycle (humidity moving
against temperature, as relative humidity does), Gaussian noise, occasional slow
drifts and level shifts, and injected short spikes and dips. Everything is drawn
from a per-device random stream seeded from the simulator's seed, so the same
seed and the same event times give the same readings, whatever the pace.

The simulator is driven by event time: `IotSimulator.emit(t_ms)` makes the next
device (round-robin) report at `t_ms`. Feed it wall-clock times for a live feed,
or `sources.clock.simulated_times` to generate hours of data instantly. What it
injected is recorded in `IotSimulator.truth` (see `sources.truth`), never in the
readings themselves.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np

from sources.models import Metric, SensorReading
from sources.truth import AnomalyKind, Baseline, ChangeKind, GroundTruth, InjectedAnomaly, RegimeChange

MS_PER_HOUR = 3_600_000
MS_PER_MINUTE = 60_000


@dataclass(frozen=True, slots=True)
class MetricProfile:
    """How one metric behaves on a typical device; (low, high) pairs are uniform ranges.

    Magnitudes are absolute values in the metric's unit; signs are drawn at random.
    """

    level: tuple[float, float]
    """Range of a device's base level."""
    amplitude: tuple[float, float]
    """Range of a device's cycle amplitude."""
    noise_sigma: float
    """Standard deviation of the Gaussian noise (times `IotConfig.noise_scale`)."""
    drift_slope_per_min: tuple[float, float]
    drift_minutes: tuple[float, float]
    shift: tuple[float, float]
    spike: tuple[float, float]
    """Size of a spike or dip."""
    limits: tuple[float, float]
    """What the sensor can report (the wire model's physical range); readings are clamped to it."""
    decimals: int = 2

    @property
    def max_drift_offset(self) -> float:
        """Bound on the level all drifts together may move a signal: it wanders, but stays plausible."""
        return 2 * self.drift_slope_per_min[1] * self.drift_minutes[1]

    @property
    def max_shift_offset(self) -> float:
        """Bound on the level all shifts together may move a signal."""
        return 2 * self.shift[1]


DEFAULT_PROFILES: Mapping[Metric, MetricProfile] = MappingProxyType(
    {
        # An indoor climate: a cycle of a few degrees (HVAC, sun), a sensor good to ~0.15 °C.
        Metric.TEMPERATURE: MetricProfile(
            level=(18.0, 26.0),
            amplitude=(1.0, 3.0),
            noise_sigma=0.15,
            drift_slope_per_min=(0.05, 0.25),
            drift_minutes=(5.0, 20.0),
            shift=(1.5, 4.0),
            spike=(4.0, 9.0),
            limits=(-90.0, 150.0),
        ),
        Metric.HUMIDITY: MetricProfile(
            level=(35.0, 60.0),
            amplitude=(3.0, 8.0),
            noise_sigma=0.5,
            drift_slope_per_min=(0.1, 0.6),
            drift_minutes=(5.0, 20.0),
            shift=(4.0, 10.0),
            spike=(12.0, 25.0),
            limits=(0.0, 100.0),
        ),
        # Around sea-level pressure; weather moves it slowly and little.
        Metric.PRESSURE: MetricProfile(
            level=(995.0, 1030.0),
            amplitude=(0.5, 2.0),
            noise_sigma=0.2,
            drift_slope_per_min=(0.05, 0.2),
            drift_minutes=(5.0, 20.0),
            shift=(2.0, 6.0),
            spike=(6.0, 15.0),
            limits=(300.0, 1200.0),
        ),
    }
)

METRICS: tuple[Metric, ...] = (Metric.TEMPERATURE, Metric.HUMIDITY, Metric.PRESSURE)


@dataclass(frozen=True, slots=True)
class IotConfig:
    """Shape of the simulation (the producer builds it from `ProducerSettings`)."""

    devices: int = 10
    cycle_period_s: float = 300.0
    noise_scale: float = 1.0
    anomaly_rate: float = 0.005
    """Probability that a reading starts a spike or dip, per metric."""
    anomaly_max_readings: int = 3
    """An anomaly lasts 1 to this many consecutive readings of its device."""
    shift_rate_per_hour: float = 0.5
    """Level shifts per device-metric per hour of event time."""
    drift_rate_per_hour: float = 1.0
    """Drift episodes per device-metric per hour of event time (one at a time)."""
    profiles: Mapping[Metric, MetricProfile] = field(default_factory=lambda: DEFAULT_PROFILES)

    def __post_init__(self) -> None:
        if self.devices < 1:
            raise ValueError("devices must be at least 1")
        if self.cycle_period_s <= 0:
            raise ValueError("cycle_period_s must be positive")
        if not 0 <= self.anomaly_rate <= 1:
            raise ValueError("anomaly_rate must be a probability")
        if self.anomaly_max_readings < 1:
            raise ValueError("anomaly_max_readings must be at least 1")
        if min(self.noise_scale, self.shift_rate_per_hour, self.drift_rate_per_hour) < 0:
            raise ValueError("noise_scale and the rates must not be negative")
        if set(self.profiles) != set(METRICS):
            raise ValueError(f"profiles must cover exactly {[m.value for m in METRICS]}")


@dataclass(frozen=True, slots=True)
class SimulatedReading:
    """A reading as sent, plus what the simulator knows about it (never sent)."""

    reading: SensorReading
    anomalous: frozenset[Metric]
    """Metrics carrying an injected spike or dip in this reading."""

    @property
    def key(self) -> str:
        """The Kafka key (DESIGN.md): the device id."""
        return self.reading.device_id


class _Signal:
    """Running state of one metric of one device (hot path: plain slots, no validation)."""

    __slots__ = (
        "anomaly_index",
        "anomaly_left",
        "anomaly_magnitude",
        "baseline",
        "drift",
        "drift_done",
        "metric",
        "profile",
        "shift_total",
    )

    def __init__(self, metric: Metric, profile: MetricProfile, baseline: Baseline) -> None:
        self.metric = metric
        self.profile = profile
        self.baseline = baseline
        self.drift: RegimeChange | None = None
        self.drift_done = 0.0  # level reached by finished drifts
        self.shift_total = 0.0
        self.anomaly_left = 0  # readings of the current anomaly still to come
        self.anomaly_magnitude = 0.0
        self.anomaly_index = -1


class _Device:
    __slots__ = ("device_id", "last_ms", "rng", "signals")

    def __init__(self, device_id: str, rng: random.Random, signals: list[_Signal]) -> None:
        self.device_id = device_id
        self.rng = rng
        self.signals = signals
        self.last_ms: int | None = None


def device_rng(seed: int, index: int) -> random.Random:
    """The random stream of device `index`: independent of other devices and of their number."""
    # SeedSequence hashes (seed, index) into well-mixed state, so neighbouring
    # seeds or devices don't give correlated streams.
    state = np.random.SeedSequence(entropy=seed, spawn_key=(index,)).generate_state(4, dtype=np.uint32)
    return random.Random(int.from_bytes(state.tobytes(), "little"))


def _uniform(rng: random.Random, bounds: tuple[float, float]) -> float:
    return rng.uniform(bounds[0], bounds[1])


def _sign(rng: random.Random) -> float:
    return 1.0 if rng.random() < 0.5 else -1.0


class IotSimulator:
    """N devices reporting in turn; deterministic for a seed and a sequence of event times.

    Example:
        >>> from sources.clock import simulated_times
        >>> sim = IotSimulator(IotConfig(devices=3), seed=7)
        >>> readings = list(sim.run(simulated_times(1_700_000_000_000, rate=10.0, count=30)))
        >>> len(readings), readings[0].key
        (30, 'device-000')
    """

    def __init__(self, config: IotConfig, seed: int) -> None:
        """Draw every device's levels, cycles and phases from `seed`."""
        self.config = config
        self.seed = seed
        self._period_ms = config.cycle_period_s * 1000
        self._anomaly_rate = config.anomaly_rate
        self._shift_per_ms = config.shift_rate_per_hour / MS_PER_HOUR
        self._drift_per_ms = config.drift_rate_per_hour / MS_PER_HOUR
        self.truth = GroundTruth(period_ms=self._period_ms)
        width = max(3, len(str(config.devices - 1)))
        self._devices = [self._make_device(f"device-{i:0{width}d}", i) for i in range(config.devices)]
        self._cursor = 0

    def _make_device(self, device_id: str, index: int) -> _Device:
        rng = device_rng(self.seed, index)
        # Humidity swings against temperature (warmer air, lower relative humidity).
        temperature_phase = rng.uniform(0, 2 * math.pi)
        phases = {
            Metric.TEMPERATURE: temperature_phase,
            Metric.HUMIDITY: temperature_phase + math.pi,
            Metric.PRESSURE: rng.uniform(0, 2 * math.pi),
        }
        signals = []
        for metric in METRICS:
            profile = self.config.profiles[metric]
            baseline = Baseline(
                level=_uniform(rng, profile.level),
                amplitude=_uniform(rng, profile.amplitude),
                phase=phases[metric],
                noise_sigma=profile.noise_sigma * self.config.noise_scale,
            )
            self.truth.baselines[device_id, metric] = baseline
            signals.append(_Signal(metric, profile, baseline))
        return _Device(device_id, rng, signals)

    @property
    def device_ids(self) -> list[str]:
        """Every device id, in reporting order."""
        return [d.device_id for d in self._devices]

    def run(self, times: Iterable[int]) -> Iterator[SimulatedReading]:
        """One reading per event time, devices in turn."""
        for t_ms in times:
            yield self.emit(t_ms)

    def emit(self, t_ms: int) -> SimulatedReading:
        """The next device's reading at event time `t_ms` (UTC epoch ms)."""
        device = self._devices[self._cursor]
        self._cursor = (self._cursor + 1) % len(self._devices)
        # A wall clock stepping back must not make negative elapsed time.
        elapsed = 0 if device.last_ms is None else max(0, t_ms - device.last_ms)
        device.last_ms = t_ms
        values: list[float] = []
        anomalous: list[Metric] = []
        for signal in device.signals:
            value, is_anomalous = self._step(device, signal, t_ms, elapsed)
            values.append(value)
            if is_anomalous:
                anomalous.append(signal.metric)
        reading = SensorReading(
            device_id=device.device_id,
            event_time=t_ms,
            temperature=values[0],
            humidity=values[1],
            pressure=values[2],
        )
        return SimulatedReading(reading, frozenset(anomalous))

    def _step(self, device: _Device, s: _Signal, t_ms: int, elapsed: int) -> tuple[float, bool]:
        rng = device.rng
        p = s.profile
        if s.drift is not None and t_ms >= s.drift.end_ms:
            s.drift_done += s.drift.delta
            s.drift = None
        # Lasting changes arrive as Poisson processes in event time, so their
        # frequency per hour does not depend on how often devices report.
        if elapsed:
            if s.drift is None and rng.random() < -math.expm1(-self._drift_per_ms * elapsed):
                self._begin_drift(device, s, t_ms)
            if rng.random() < -math.expm1(-self._shift_per_ms * elapsed):
                self._shift(device, s, t_ms)
        value = s.baseline.at(t_ms, self._period_ms) + s.drift_done + s.shift_total
        if s.drift is not None:
            value += s.drift.offset_at(t_ms)
        value += rng.gauss(0.0, s.baseline.noise_sigma)
        is_anomalous = True
        if s.anomaly_left:
            s.anomaly_left -= 1
            self.truth.extend_anomaly(s.anomaly_index, t_ms)
        elif rng.random() < self._anomaly_rate:
            self._begin_anomaly(device, s, t_ms)
        else:
            is_anomalous = False
        if is_anomalous:
            value += s.anomaly_magnitude
        low, high = p.limits
        return round(min(max(value, low), high), p.decimals), is_anomalous

    def _begin_drift(self, device: _Device, s: _Signal, t_ms: int) -> None:
        rng = device.rng
        p = s.profile
        minutes = _uniform(rng, p.drift_minutes)
        delta = _sign(rng) * _uniform(rng, p.drift_slope_per_min) * minutes
        if abs(s.drift_done + delta) > p.max_drift_offset:
            delta = -delta  # turn back towards the device's own level
        s.drift = RegimeChange(
            device.device_id, s.metric, ChangeKind.DRIFT, t_ms, t_ms + round(minutes * MS_PER_MINUTE), delta
        )
        self.truth.add_change(s.drift)

    def _shift(self, device: _Device, s: _Signal, t_ms: int) -> None:
        rng = device.rng
        delta = _sign(rng) * _uniform(rng, s.profile.shift)
        if abs(s.shift_total + delta) > s.profile.max_shift_offset:
            delta = -delta
        s.shift_total += delta
        self.truth.add_change(
            RegimeChange(device.device_id, s.metric, ChangeKind.LEVEL_SHIFT, t_ms, t_ms, delta)
        )

    def _begin_anomaly(self, device: _Device, s: _Signal, t_ms: int) -> None:
        rng = device.rng
        kind = AnomalyKind.SPIKE if rng.random() < 0.5 else AnomalyKind.DIP
        magnitude = _uniform(rng, s.profile.spike) * (1.0 if kind is AnomalyKind.SPIKE else -1.0)
        s.anomaly_left = rng.randint(1, self.config.anomaly_max_readings) - 1
        s.anomaly_magnitude = magnitude
        s.anomaly_index = self.truth.begin_anomaly(
            InjectedAnomaly(device.device_id, s.metric, kind, t_ms, t_ms, 1, magnitude)
        )
