"""Sample analytics records and a Redis dump, shared by the sink's tests and benchmark."""

from __future__ import annotations

from typing import Any

import redis

from sinks.records import (
    ActivityWindow,
    Alert,
    EventType,
    Metric,
    PageTotal,
    PipelineCounters,
    Severity,
    Trend,
    TrendState,
    WindowStats,
)
from sinks.writer import SinkRecord
from sources.models import SensorReading

T0 = 1_700_000_000_000
"""A round event time (ms) the samples start at."""


def reading(device: str, t: int, temperature: float = 21.5) -> SensorReading:
    return SensorReading(
        device_id=device, event_time=t, temperature=temperature, humidity=45.0, pressure=1013.2
    )


def window(
    device: str,
    metric: Metric,
    start: int,
    avg: float = 21.0,
    window_name: str = "10s",
    size_ms: int = 10_000,
) -> WindowStats:
    return WindowStats(
        window_name, device, metric, start, start + size_ms, 10, avg, avg - 1, avg + 1, avg + 0.9
    )


def alert(
    device: str, t: int, z: float = 4.2, metric: Metric = Metric.TEMPERATURE, alert_id: str = ""
) -> Alert:
    severity = Severity.CRITICAL if z >= 4 else Severity.WARNING
    return Alert(
        alert_id or f"{device}:{metric.value}:{t}", device, metric, 30.0 + z, 21.0, 2.0, z, severity, t
    )


def trend(device: str, metric: Metric, updated: int, slope: float = 0.5) -> TrendState:
    direction = Trend.RISING if slope > 0.1 else Trend.FALLING if slope < -0.1 else Trend.STABLE
    return TrendState(device, metric, slope, direction, 0.8, 30, updated)


def activity(start: int, views: int = 100, window_name: str = "10s") -> ActivityWindow:
    counts = {
        EventType.PAGE_VIEW: views,
        EventType.CLICK: views // 2,
        EventType.ADD_TO_CART: 5,
        EventType.PURCHASE: 2,
    }
    return ActivityWindow(window_name, start, start + 10_000, counts, sum(counts.values()) / 10, 59.9, 17)


def live_batch(t: int, devices: int = 3, pages: int = 4) -> list[SinkRecord]:
    """What the dataflow emits around event time `t` (ms): a bit of every record kind."""
    start = t - t % 10_000
    items: list[SinkRecord] = []
    for d in range(devices):
        device = f"dev-{d:03d}"
        # Within the model's bounds for any number of devices and batches.
        items.append(reading(device, t + d, temperature=20.0 + d % 50 + (t - T0) / 1e5 % 50))
        for metric in Metric:
            items.append(window(device, metric, start, avg=20.0 + d))
            items.append(window(device, metric, start - 50_000, window_name="60s", size_ms=60_000))
            items.append(trend(device, metric, t, slope=0.01 * d))
    items.append(alert("dev-000", t, z=4.0 + (t - T0) / 1e6))
    items.append(activity(start))
    items += [PageTotal(f"/p/{p}", p + (t - T0) // 1000) for p in range(pages)]
    items.append(PipelineCounters(events_in=(t - T0) // 100, dead_letters=1, late_events=2, last_event_ms=t))
    return items


def dump(client: redis.Redis, prefix: str) -> dict[str, Any]:
    """Everything under `prefix`, keyed without it, in a comparable form."""
    out: dict[str, Any] = {}
    for raw in client.scan_iter(match=f"{prefix}*", count=1000):
        key = raw.decode()
        kind = client.type(raw)
        if kind == b"hash":
            value: Any = client.hgetall(raw)
        elif kind == b"zset":
            value = client.zrange(raw, 0, -1, withscores=True)
        else:
            raise AssertionError(f"unexpected {kind!r} at {key}")
        out[key.removeprefix(prefix)] = value
    return out
