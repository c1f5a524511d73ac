"""The analytics results the dataflow emits and the dashboard reads.

These are the values of the Redis contract (DESIGN.md): the dataflow builds them,
`sinks.layout` encodes them into keys and members, and `sinks.reader` decodes
them back for the dashboard. Frozen, slotted dataclasses: cheap to create on the
hot path and to pickle into Bytewax recovery snapshots.

Times are UTC epoch milliseconds; values are in the metric's unit (°C, %, hPa).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from sources.models import EventType, Metric

__all__ = [
    "ActivityWindow",
    "Alert",
    "CircuitState",
    "EventType",
    "Metric",
    "PageTotal",
    "PipelineCounters",
    "Severity",
    "Trend",
    "TrendState",
    "WindowStats",
]


class Severity(StrEnum):
    """How far a reading is from its baseline."""

    NONE = "none"
    WARNING = "warning"
    CRITICAL = "critical"


class Trend(StrEnum):
    """Direction of a metric over the trend span."""

    RISING = "rising"
    FALLING = "falling"
    STABLE = "stable"


class CircuitState(StrEnum):
    """State of the circuit breaker in front of Redis."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True, slots=True)
class WindowStats:
    """Aggregates of one metric of one device over one closed event-time window."""

    window: str
    """Window name, e.g. ``10s`` (tumbling) or ``60s`` (sliding)."""
    device_id: str
    metric: Metric
    start_ms: int
    end_ms: int
    count: int
    avg: float
    min: float
    max: float
    p99: float


@dataclass(frozen=True, slots=True)
class Alert:
    """An anomaly episode of one metric of one device, carrying its peak reading."""

    alert_id: str
    """Deterministic: the same episode always gets the same id, so replays overwrite."""
    device_id: str
    metric: Metric
    value: float
    mean: float
    """Expected value at the peak's time: the baseline's least-squares line there (`flows.zscore`)."""
    std: float
    """Standard error of that expectation for one new reading; ``z == (value - mean) / std``."""
    z: float
    severity: Severity
    event_time_ms: int
    """Event time of the episode's peak reading."""
    started_ms: int | None = None
    """Event time the episode began. Alerts are ordered (and the newest N kept) by it: it never
    changes as the peak grows, so what is kept doesn't depend on when updates were written."""

    @property
    def order_ms(self) -> int:
        """Where the alert sorts among alerts: its episode's start, else its peak."""
        return self.started_ms if self.started_ms is not None else self.event_time_ms


@dataclass(frozen=True, slots=True)
class TrendState:
    """Least-squares trend of one metric of one device over the trend span."""

    device_id: str
    metric: Metric
    slope_per_min: float
    """Units of the metric per minute."""
    direction: Trend
    r2: float
    """Coefficient of determination of the fit, 0..1."""
    points: int
    updated_ms: int
    """Event time of the newest reading in the fit."""


@dataclass(frozen=True, slots=True)
class ActivityWindow:
    """Website activity over one closed event-time window."""

    window: str
    start_ms: int
    end_ms: int
    counts: dict[EventType, int] = field(hash=False)
    """Events per type; every type is present, zero included."""
    events_per_s: float
    revenue: float
    distinct_users: int


@dataclass(frozen=True, slots=True)
class PageTotal:
    """A page's all-time purchase count: an absolute total, safe to rewrite."""

    page: str
    purchases: int


@dataclass(frozen=True, slots=True)
class PipelineCounters:
    """Absolute totals since the pipeline's first start (restored from snapshots)."""

    events_in: int
    dead_letters: int
    late_events: int
    last_event_ms: int | None
