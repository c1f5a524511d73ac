"""The API's public JSON shapes (response models, hence the OpenAPI schema at /docs).

They are built from the records of `sinks.records`, never from Redis directly.
Times are UTC epoch milliseconds; values are in the metric's unit (°C, %, hPa).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from sinks.records import CircuitState, EventType, Metric, Severity, Trend


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True, frozen=True)


class ReadingOut(_Out):
    """A device's latest reading."""

    device_id: str
    event_time: int = Field(description="Event time, UTC epoch ms.")
    temperature: float = Field(description="°C")
    humidity: float = Field(description="Relative humidity, %")
    pressure: float = Field(description="hPa")


class WindowOut(_Out):
    """Aggregates of one metric over one event-time window."""

    start_ms: int
    end_ms: int
    count: int
    avg: float
    min: float
    max: float
    p99: float


class HistoryOut(_Out):
    """A device's window series of one metric."""

    device_id: str
    metric: Metric
    window: str
    points: list[WindowOut] = Field(description="Oldest first.")


class TrendOut(_Out):
    """Least-squares trend of one metric of a device."""

    device_id: str
    metric: Metric
    slope_per_min: float = Field(description="Metric units per minute.")
    direction: Trend
    r2: float
    points: int
    updated_ms: int


class AlertOut(_Out):
    """An anomaly episode with its peak reading."""

    alert_id: str
    device_id: str
    metric: Metric
    value: float = Field(description="The episode's peak reading.")
    mean: float = Field(description="Expected value at the peak: the baseline's least-squares line there.")
    std: float = Field(description="Standard error of that expectation; z = (value - mean) / std.")
    z: float
    severity: Severity
    event_time_ms: int = Field(description="Event time of the peak, UTC epoch ms.")


class ActivityOut(_Out):
    """Website activity over one window."""

    window: str
    start_ms: int
    end_ms: int
    counts: dict[EventType, int]
    events_per_s: float
    revenue: float
    distinct_users: int


class PageOut(_Out):
    """A page's all-time purchases and its rank (1 = most)."""

    rank: int
    page: str
    purchases: int


class StatsOut(BaseModel):
    """The pipeline's counters and its Redis writer's state."""

    events_in: int
    dead_letters: int
    late_events: int
    last_event_ms: int | None
    last_write_ms: int | None
    circuit_state: CircuitState | None


class Health(BaseModel):
    """Liveness or readiness."""

    status: str
    detail: str | None = None


class Problem(BaseModel):
    """An error response."""

    detail: str
