"""Ground truth of the IoT simulation: what was injected, where, and when.

The simulator records here every spike and dip it injects and every drift or
level shift it starts, together with each device's noise-free signal. None of it
goes on the wire: a benchmark reads it from the simulator's Python API to score
the pipeline's anomaly detection (precision and recall against
`GroundTruth.anomalies`) and its trend classification (against
`GroundTruth.slope_per_min`, the least-squares slope of the noise-free signal,
the quantity the pipeline's trend fit estimates).

Times are UTC epoch ms; values are in the metric's unit (°C, %, hPa).
"""

from __future__ import annotations

import bisect
import math
from collections import defaultdict
from dataclasses import dataclass, field, replace
from enum import StrEnum

import numpy as np

from sources.models import Metric

MS_PER_MINUTE = 60_000


class AnomalyKind(StrEnum):
    """Direction of an injected short anomaly."""

    SPIKE = "spike"
    DIP = "dip"


class ChangeKind(StrEnum):
    """A lasting change of a signal's level."""

    DRIFT = "drift"
    """A linear trend from `start_ms` to `end_ms`; the level it reached stays afterwards."""
    LEVEL_SHIFT = "level_shift"
    """A step of `delta` at `start_ms` that stays."""


@dataclass(frozen=True, slots=True)
class InjectedAnomaly:
    """A spike or dip added to one metric of one device over consecutive readings."""

    device_id: str
    metric: Metric
    kind: AnomalyKind
    start_ms: int
    """Event time of the first anomalous reading."""
    end_ms: int
    """Event time of the last anomalous reading so far (inclusive)."""
    readings: int
    """Number of anomalous readings so far."""
    magnitude: float
    """Offset added to the signal, metric units; positive for spikes, negative for dips."""

    def covers(self, event_time_ms: int, tolerance_ms: int = 0) -> bool:
        """True if `event_time_ms` lies in the anomaly, widened by `tolerance_ms` on both sides."""
        return self.start_ms - tolerance_ms <= event_time_ms <= self.end_ms + tolerance_ms


@dataclass(frozen=True, slots=True)
class RegimeChange:
    """A drift episode or a level shift of one metric of one device."""

    device_id: str
    metric: Metric
    kind: ChangeKind
    start_ms: int
    end_ms: int
    """Drift: when the linear trend stops (planned at its start). Shift: equal to `start_ms`."""
    delta: float
    """Total change of level, metric units (a drift reaches it at `end_ms`)."""

    @property
    def slope_per_min(self) -> float:
        """A drift's slope in units per minute while it lasts; 0 for a level shift."""
        if self.kind is ChangeKind.LEVEL_SHIFT or self.end_ms == self.start_ms:
            return 0.0
        return self.delta * MS_PER_MINUTE / (self.end_ms - self.start_ms)

    def offset_at(self, t_ms: float) -> float:
        """What this change adds to the signal at `t_ms`."""
        if t_ms < self.start_ms:
            return 0.0
        if self.kind is ChangeKind.LEVEL_SHIFT or t_ms >= self.end_ms:
            return self.delta
        return self.delta * (t_ms - self.start_ms) / (self.end_ms - self.start_ms)


@dataclass(frozen=True, slots=True)
class Baseline:
    """One metric's steady behaviour on one device: level plus a sinusoidal cycle."""

    level: float
    amplitude: float
    phase: float
    """Radians."""
    noise_sigma: float
    """Standard deviation of the Gaussian noise, metric units."""

    def at(self, t_ms: float, period_ms: float) -> float:
        """Level plus cycle at `t_ms`, before drifts, shifts, anomalies and noise."""
        # The modulo keeps the sine's argument small, so epoch-sized times lose no precision.
        return self.level + self.amplitude * math.sin(
            2 * math.pi * (t_ms % period_ms) / period_ms + self.phase
        )


@dataclass
class GroundTruth:
    """Everything the IoT simulator injected so far; grows as it runs.

    Attributes:
        period_ms: period of every device's cycle.
        baselines: (device id, metric) -> that signal's `Baseline`.
        anomalies: every injected spike and dip, in the order they began.
        changes: every drift and level shift, in the order they began.
    """

    period_ms: float
    baselines: dict[tuple[str, Metric], Baseline] = field(default_factory=dict)
    anomalies: list[InjectedAnomaly] = field(default_factory=list)
    changes: list[RegimeChange] = field(default_factory=list)
    _anomalies_by_signal: dict[tuple[str, Metric], list[int]] = field(
        default_factory=lambda: defaultdict(list), repr=False
    )
    _changes_by_signal: dict[tuple[str, Metric], list[int]] = field(
        default_factory=lambda: defaultdict(list), repr=False
    )

    # --- recording (the simulator's side) -----------------------------------

    def begin_anomaly(self, anomaly: InjectedAnomaly) -> int:
        """Record a new anomaly; returns its index for `extend_anomaly`."""
        index = len(self.anomalies)
        self.anomalies.append(anomaly)
        self._anomalies_by_signal[anomaly.device_id, anomaly.metric].append(index)
        return index

    def extend_anomaly(self, index: int, event_time_ms: int) -> None:
        """One more reading of anomaly `index` at `event_time_ms`."""
        a = self.anomalies[index]
        self.anomalies[index] = replace(a, end_ms=event_time_ms, readings=a.readings + 1)

    def add_change(self, change: RegimeChange) -> None:
        """Record a drift or level shift."""
        self._changes_by_signal[change.device_id, change.metric].append(len(self.changes))
        self.changes.append(change)

    # --- queries (the benchmark's side) -------------------------------------

    @property
    def device_ids(self) -> list[str]:
        """Every simulated device, in device order."""
        return list(dict.fromkeys(device for device, _ in self.baselines))

    def anomalies_of(self, device_id: str, metric: Metric) -> list[InjectedAnomaly]:
        """The anomalies of one signal, in time order."""
        return [self.anomalies[i] for i in self._anomalies_by_signal.get((device_id, metric), [])]

    def changes_of(
        self, device_id: str, metric: Metric, kind: ChangeKind | None = None
    ) -> list[RegimeChange]:
        """The drifts and shifts of one signal (optionally one kind), in time order."""
        found = [self.changes[i] for i in self._changes_by_signal.get((device_id, metric), [])]
        return found if kind is None else [c for c in found if c.kind is kind]

    def anomaly_at(
        self, device_id: str, metric: Metric, event_time_ms: int, tolerance_ms: int = 0
    ) -> InjectedAnomaly | None:
        """The injected anomaly covering `event_time_ms` (± `tolerance_ms`), if any.

        Scoring an alert: it is a true positive when this returns an anomaly. Event
        times identify readings when each device's readings have distinct times, as
        with the simulated clock at up to 1000 readings/s per device.
        """
        candidates = self.anomalies_of(device_id, metric)
        # Anomalies of one signal never overlap, so they are sorted by both start and end.
        i = bisect.bisect_left(candidates, event_time_ms - tolerance_ms, key=lambda a: a.end_ms)
        if i < len(candidates) and candidates[i].covers(event_time_ms, tolerance_ms):
            return candidates[i]
        return None

    def signal(self, device_id: str, metric: Metric, t_ms: float) -> float:
        """Noise-free, anomaly-free value at `t_ms`: level + cycle + drifts + shifts.

        Emitted readings equal this plus noise plus any injected anomaly (clamped to
        the physically possible range and rounded).
        """
        baseline = self.baselines[device_id, metric]
        offset = sum(c.offset_at(t_ms) for c in self.changes_of(device_id, metric))
        return baseline.at(t_ms, self.period_ms) + offset

    def slope_per_min(
        self, device_id: str, metric: Metric, start_ms: int, end_ms: int, samples: int = 120
    ) -> float:
        """Least-squares slope of the noise-free signal over [start_ms, end_ms], units per minute.

        This is what a trend fit over that span would find without noise and
        anomalies: compare its sign and size with the pipeline's trend direction.

        Raises:
            ValueError: if the span is empty or `samples` < 2.
        """
        if end_ms <= start_ms or samples < 2:
            raise ValueError("need end_ms > start_ms and at least 2 samples")
        times = np.linspace(start_ms, end_ms, samples)
        values = [self.signal(device_id, metric, float(t)) for t in times]
        slope, _ = np.polyfit((times - start_ms) / MS_PER_MINUTE, values, 1)
        return float(slope)
