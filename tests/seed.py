"""Test data seeding: fills a real Redis with analytics records through the product's own writer.

`Seeder` hands records to `sinks.writer.RedisWriter` (the dataflow's writer), so tests
see exactly the keys, scores and encodings the pipeline produces; only the pub/sub
notification and corrupt members (to test decoding failures) are written by hand.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable
from dataclasses import dataclass, field

import redis

from sinks.layout import Layout, SinkStatus, Update, encode_update
from sinks.records import (
    ActivityWindow,
    Alert,
    CircuitState,
    EventType,
    Metric,
    PageTotal,
    PipelineCounters,
    Severity,
    Trend,
    TrendState,
    WindowStats,
)
from sinks.settings import SinkSettings
from sinks.writer import RedisWriter, SinkRecord
from sources.models import SensorReading

T0_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
WINDOW_MS = 10_000
BASELINE = {Metric.TEMPERATURE: 21.5, Metric.HUMIDITY: 45.0, Metric.PRESSURE: 1013.0}
SPREAD = {Metric.TEMPERATURE: 1.5, Metric.HUMIDITY: 6.0, Metric.PRESSURE: 4.0}
PAGES = ["/", "/products", "/products/lamp", "/products/desk", "/cart", "/checkout", "/blog/iot"]
PAGE_WEIGHTS = [2, 5, 9, 6, 3, 4, 1]


def _url(client: redis.Redis) -> str:
    kw = client.connection_pool.connection_kwargs
    auth = f":{kw['password']}@" if kw.get("password") else ""
    return f"redis://{auth}{kw.get('host', '127.0.0.1')}:{kw.get('port', 6379)}/{kw.get('db', 0)}"


class Seeder:
    """Writes records under one prefix with the pipeline's writer, one round trip per call."""

    def __init__(self, client: redis.Redis, prefix: str, alert_retention: int = 1000) -> None:
        self.client = client
        self.layout = Layout(prefix)
        self._now_ms = T0_MS
        settings = SinkSettings(redis_url=_url(client), redis_prefix=prefix, sink_alerts_kept=alert_retention)
        self.writer = RedisWriter(settings, now_ms=lambda: self._now_ms)
        self.writer.setup()

    def write(self, records: Iterable[SinkRecord], status: SinkStatus | None = None) -> None:
        """Write `records` as the dataflow's sink would (plus its status and one notification)."""
        if status is not None:
            self._now_ms = status.last_write_ms
        self.writer.add(records)
        self.writer.flush(status.circuit_state if status is not None else CircuitState.CLOSED)

    def readings(self, readings: Iterable[SensorReading]) -> None:
        """Latest reading per device."""
        self.write(readings)

    def windows(self, windows: Iterable[WindowStats]) -> None:
        """Window aggregates."""
        self.write(windows)

    def trends(self, trends: Iterable[TrendState]) -> None:
        """Trend hashes."""
        self.write(trends)

    def alerts(self, alerts: Iterable[Alert]) -> None:
        """Alerts (the newest `alert_retention` kept)."""
        self.write(alerts)

    def activity(self, windows: Iterable[ActivityWindow]) -> None:
        """Activity windows."""
        self.write(windows)

    def page_totals(self, totals: Iterable[PageTotal]) -> None:
        """Absolute purchase totals per page."""
        self.write(totals)

    def stats(self, counters: PipelineCounters, status: SinkStatus | None = None) -> None:
        """Pipeline counters and the sink's own status."""
        self.write([counters], status)

    def publish(self, *kinds: str, at_ms: int = T0_MS) -> int:
        """Publish an update notification; returns the number of subscribers that got it."""
        return int(self.client.publish(self.layout.updates_channel(), encode_update(Update(kinds, at_ms))))

    def raw_member(self, key: str, member: bytes, score: float) -> None:
        """Add a raw (e.g. corrupt) member to a sorted set, to test decoding failures."""
        self.client.zadd(key, {member: score})


# --- realistic synthetic data ------------------------------------------------


def device_ids(n: int) -> list[str]:
    """``dev-01``, ``dev-02`` ..."""
    return [f"dev-{i:02d}" for i in range(1, n + 1)]


def window(
    device_id: str, metric: Metric, index: int, t0_ms: int = T0_MS, rng: random.Random | None = None
) -> WindowStats:
    """The `index`-th 10 s window of a device: a slow wave plus noise around the metric's baseline."""
    rng = rng or random.Random(f"{device_id}:{metric.value}:{index}")
    phase = sum(map(ord, device_id)) % 7
    avg = BASELINE[metric] + SPREAD[metric] * 0.5 * math.sin(index / 9 + phase) + rng.gauss(0, 0.05)
    half = SPREAD[metric] * (0.15 + 0.1 * rng.random())
    start = t0_ms + index * WINDOW_MS
    return WindowStats(
        "10s",
        device_id,
        metric,
        start,
        start + WINDOW_MS,
        count=10,
        avg=round(avg, 3),
        min=round(avg - half, 3),
        max=round(avg + half, 3),
        p99=round(avg + half * 0.95, 3),
    )


def reading(device_id: str, index: int, t0_ms: int = T0_MS) -> SensorReading:
    """A latest reading matching window `index` of the device."""
    values = {m: window(device_id, m, index, t0_ms).avg for m in Metric}
    return SensorReading(
        device_id=device_id,
        event_time=t0_ms + index * WINDOW_MS + WINDOW_MS - 1,
        temperature=values[Metric.TEMPERATURE],
        humidity=values[Metric.HUMIDITY],
        pressure=values[Metric.PRESSURE],
    )


def trend(device_id: str, metric: Metric, index: int, t0_ms: int = T0_MS) -> TrendState:
    """A trend that changes direction with the wave."""
    slope = round(SPREAD[metric] * 0.5 * math.cos(index / 9 + sum(map(ord, device_id)) % 7) / 9 * 6, 4)
    direction = Trend.STABLE if abs(slope) < 0.05 else (Trend.RISING if slope > 0 else Trend.FALLING)
    return TrendState(device_id, metric, slope, direction, 0.82, 30, t0_ms + index * WINDOW_MS)


def alert(device_id: str, metric: Metric, index: int, severity: Severity, t0_ms: int = T0_MS) -> Alert:
    """An anomaly at window `index`."""
    at = t0_ms + index * WINDOW_MS + 4_321
    mean, std = BASELINE[metric], SPREAD[metric] / 4
    z = 3.4 if severity is Severity.WARNING else 5.2
    return Alert(
        f"{device_id}:{metric.value}:{at}",
        device_id,
        metric,
        round(mean + z * std, 3),
        mean,
        std,
        z,
        severity,
        at,
    )


def activity_window(index: int, t0_ms: int = T0_MS) -> ActivityWindow:
    """The `index`-th 10 s activity window: a funnel with a daily-ish wave."""
    views = 120 + int(40 * math.sin(index / 7))
    counts = {
        EventType.PAGE_VIEW: views,
        EventType.CLICK: views // 2,
        EventType.ADD_TO_CART: views // 8,
        EventType.PURCHASE: max(1, views // 30),
    }
    start = t0_ms + index * WINDOW_MS
    total = sum(counts.values())
    return ActivityWindow(
        "10s",
        start,
        start + WINDOW_MS,
        counts,
        total / 10,
        round(counts[EventType.PURCHASE] * 42.5, 2),
        views // 3,
    )


@dataclass
class Fleet:
    """A growing, consistent data set: `advance()` writes the next 10 s of everything."""

    seeder: Seeder
    devices: list[str]
    t0_ms: int = T0_MS
    index: int = -1
    purchases: dict[str, int] = field(default_factory=dict)
    events_in: int = 0
    alerts_written: int = 0

    def advance(self, steps: int = 1, alert_every: int = 3) -> None:
        """Write the next `steps` windows of every device, activity, leaderboard, stats and alerts."""
        for _ in range(steps):
            self.index += 1
            i = self.index
            records: list[SinkRecord] = [window(d, m, i, self.t0_ms) for d in self.devices for m in Metric]
            records += [reading(d, i, self.t0_ms) for d in self.devices]
            records += [trend(d, m, i, self.t0_ms) for d in self.devices for m in Metric]
            act = activity_window(i, self.t0_ms)
            records.append(act)
            page = random.Random(i).choices(PAGES, weights=PAGE_WEIGHTS)[0]
            self.purchases[page] = self.purchases.get(page, 0) + act.counts[EventType.PURCHASE]
            records += [PageTotal(p, n) for p, n in self.purchases.items()]
            if alert_every and i % alert_every == 0:
                severity = Severity.CRITICAL if (i // alert_every) % 2 else Severity.WARNING
                device = self.devices[i % len(self.devices)]
                metric = list(Metric)[(i // alert_every) % len(Metric)]
                records.append(alert(device, metric, i, severity, self.t0_ms))
                self.alerts_written += 1
            self.events_in += len(self.devices) * 10 + sum(act.counts.values())
            records.append(
                PipelineCounters(self.events_in, i // 5, i // 7, self.t0_ms + i * WINDOW_MS + WINDOW_MS - 1)
            )
            self.seeder.write(records, SinkStatus(self.t0_ms + (i + 1) * WINDOW_MS, CircuitState.CLOSED))

    @property
    def newest_start_ms(self) -> int:
        """Start of the newest window written."""
        return self.t0_ms + self.index * WINDOW_MS
