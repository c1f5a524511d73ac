"""The Redis contract: every key name and every stored encoding, defined once.

The dataflow's writer and the dashboard's reader both go through `Layout`; no
other module spells a key or a stored JSON shape. Pure: no I/O.

Keys (all under one prefix, default ``rtd:``)::

    iot:latest                         hash   device id -> SensorReading JSON
    iot:agg:{window}:{device}:{metric} zset   score = window start ms, member = window JSON
    iot:trend:{device}:{metric}        hash   slope_per_min, direction, r2, points, updated_ms
    alerts                             zset   score = episode start ms, member = alert JSON (alert_id first)
    activity:agg:{window}              zset   score = window start ms, member = activity JSON
    activity:leaderboard               zset   page -> purchases (absolute totals)
    pipeline:stats                     hash   counters, last write time, circuit state
    updates                            pub/sub channel of `Update` notifications
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

import orjson

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
from sources.models import SensorReading

DEFAULT_PREFIX = "rtd:"

_KEY_COMPONENT = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")


class InvalidKeyComponent(ValueError):
    """A value that is not allowed inside a Redis key (e.g. from an API request)."""


def check_component(value: str, what: str = "key component") -> str:
    """Return `value` if it is safe inside a key, else raise `InvalidKeyComponent`."""
    if not isinstance(value, str) or not _KEY_COMPONENT.fullmatch(value):
        raise InvalidKeyComponent(f"invalid {what}: {value!r} (allowed: 1-64 of A-Z a-z 0-9 _ . -)")
    return value


@dataclass(frozen=True, slots=True)
class Layout:
    """Key names under one prefix."""

    prefix: str = DEFAULT_PREFIX

    def latest(self) -> str:
        """Hash of device id -> latest `SensorReading` JSON."""
        return f"{self.prefix}iot:latest"

    def window_series(self, window: str, device_id: str, metric: Metric | str) -> str:
        """Sorted set of `WindowStats` members of one device, metric and window kind."""
        metric = Metric(metric)
        return (
            f"{self.prefix}iot:agg:{check_component(window, 'window')}:"
            f"{check_component(device_id, 'device id')}:{metric.value}"
        )

    def window_series_pattern(self, window: str = "*", device_id: str = "*") -> str:
        """SCAN pattern over window series (``*`` for any)."""
        return f"{self.prefix}iot:agg:{window}:{device_id}:*"

    def trend(self, device_id: str, metric: Metric | str) -> str:
        """Hash holding the `TrendState` of one device and metric."""
        return f"{self.prefix}iot:trend:{check_component(device_id, 'device id')}:{Metric(metric).value}"

    def alerts(self) -> str:
        """Sorted set of `Alert` members scored by event time."""
        return f"{self.prefix}alerts"

    def activity_series(self, window: str) -> str:
        """Sorted set of `ActivityWindow` members scored by window start."""
        return f"{self.prefix}activity:agg:{check_component(window, 'window')}"

    def leaderboard(self) -> str:
        """Sorted set of page -> absolute purchase total."""
        return f"{self.prefix}activity:leaderboard"

    def stats(self) -> str:
        """Hash of pipeline counters and sink state."""
        return f"{self.prefix}pipeline:stats"

    def updates_channel(self) -> str:
        """Pub/sub channel of change notifications."""
        return f"{self.prefix}updates"


# --- encodings -------------------------------------------------------------
# Members are compact JSON with a fixed field order, so the same record always
# encodes to the same bytes: ZADD of a replayed result is then a no-op.


def encode_latest(reading: SensorReading) -> bytes:
    """Hash value of `Layout.latest` (the wire JSON itself)."""
    return reading.to_json()


def decode_latest(raw: bytes | str) -> SensorReading:
    """Inverse of `encode_latest`."""
    return SensorReading.from_json(raw)


def encode_window_stats(ws: WindowStats) -> bytes:
    """Member of `Layout.window_series` (device, metric and window are in the key)."""
    return orjson.dumps(
        {
            "start": ws.start_ms,
            "end": ws.end_ms,
            "count": ws.count,
            "avg": ws.avg,
            "min": ws.min,
            "max": ws.max,
            "p99": ws.p99,
        }
    )


def decode_window_stats(raw: bytes | str, window: str, device_id: str, metric: Metric | str) -> WindowStats:
    """Inverse of `encode_window_stats`, given the key's components."""
    d = orjson.loads(raw)
    return WindowStats(
        window=window,
        device_id=device_id,
        metric=Metric(metric),
        start_ms=int(d["start"]),
        end_ms=int(d["end"]),
        count=int(d["count"]),
        avg=float(d["avg"]),
        min=float(d["min"]),
        max=float(d["max"]),
        p99=float(d["p99"]),
    )


LATEST_TIME_FIELD = "event_time"
"""JSON field of a `Layout.latest` value holding its event time (ms), for server-side "newer?" checks."""

TREND_TIME_FIELD = "updated_ms"
"""Field of a `Layout.trend` hash holding the fit's event time (ms), for server-side "newer?" checks."""


def encode_trend(t: TrendState) -> dict[str, str]:
    """Field mapping of `Layout.trend`."""
    return {
        "slope_per_min": repr(t.slope_per_min),
        "direction": t.direction.value,
        "r2": repr(t.r2),
        "points": str(t.points),
        TREND_TIME_FIELD: str(t.updated_ms),
    }


def decode_trend(
    fields: Mapping[bytes | str, bytes | str], device_id: str, metric: Metric | str
) -> TrendState:
    """Inverse of `encode_trend`."""
    f = _text_mapping(fields)
    return TrendState(
        device_id=device_id,
        metric=Metric(metric),
        slope_per_min=float(f["slope_per_min"]),
        direction=Trend(f["direction"]),
        r2=float(f["r2"]),
        points=int(f["points"]),
        updated_ms=int(f[TREND_TIME_FIELD]),
    )


ALERT_ID_PREFIX = b'{"alert_id":'
"""Every alert member starts with its id, so a script can find an alert's old member."""


def encode_alert(a: Alert) -> bytes:
    """Member of `Layout.alerts`; starts with ``{"alert_id":"<id>"``."""
    return orjson.dumps(
        {
            "alert_id": a.alert_id,
            "device_id": a.device_id,
            "metric": a.metric.value,
            "value": a.value,
            "mean": a.mean,
            "std": a.std,
            "z": a.z,
            "severity": a.severity.value,
            "event_time_ms": a.event_time_ms,
            **({} if a.started_ms is None else {"started_ms": a.started_ms}),
        }
    )


def alert_member_prefix(alert_id: str) -> bytes:
    """The bytes every member of alert `alert_id` starts with, up to and including its first comma.

    No other alert's member starts with them (the id is a closed JSON string), so a
    script can find and replace an episode's old member by this prefix.
    """
    return orjson.dumps({"alert_id": alert_id})[:-1] + b","


def decode_alert(raw: bytes | str) -> Alert:
    """Inverse of `encode_alert`."""
    d = orjson.loads(raw)
    return Alert(
        alert_id=str(d["alert_id"]),
        device_id=str(d["device_id"]),
        metric=Metric(d["metric"]),
        value=float(d["value"]),
        mean=float(d["mean"]),
        std=float(d["std"]),
        z=float(d["z"]),
        severity=Severity(d["severity"]),
        event_time_ms=int(d["event_time_ms"]),
        started_ms=int(d["started_ms"]) if "started_ms" in d else None,
    )


def encode_activity(a: ActivityWindow) -> bytes:
    """Member of `Layout.activity_series` (the window name is in the key)."""
    return orjson.dumps(
        {
            "start": a.start_ms,
            "end": a.end_ms,
            "counts": {t.value: int(a.counts.get(t, 0)) for t in EventType},
            "events_per_s": a.events_per_s,
            "revenue": a.revenue,
            "distinct_users": a.distinct_users,
        }
    )


def decode_activity(raw: bytes | str, window: str) -> ActivityWindow:
    """Inverse of `encode_activity`."""
    d = orjson.loads(raw)
    return ActivityWindow(
        window=window,
        start_ms=int(d["start"]),
        end_ms=int(d["end"]),
        counts={EventType(k): int(v) for k, v in d["counts"].items()},
        events_per_s=float(d["events_per_s"]),
        revenue=float(d["revenue"]),
        distinct_users=int(d["distinct_users"]),
    )


def encode_page_total(p: PageTotal) -> tuple[str, int]:
    """(member, score) of `Layout.leaderboard`."""
    return p.page, p.purchases


def encode_counters(c: PipelineCounters) -> dict[str, str]:
    """Counter fields of `Layout.stats`."""
    fields = {
        "events_in": str(c.events_in),
        "dead_letters": str(c.dead_letters),
        "late_events": str(c.late_events),
    }
    if c.last_event_ms is not None:
        fields["last_event_ms"] = str(c.last_event_ms)
    return fields


@dataclass(frozen=True, slots=True)
class SinkStatus:
    """What the writer itself reports into `Layout.stats`."""

    last_write_ms: int
    circuit_state: CircuitState


def encode_sink_status(s: SinkStatus) -> dict[str, str]:
    """Sink fields of `Layout.stats`."""
    return {"last_write_ms": str(s.last_write_ms), "circuit_state": s.circuit_state.value}


@dataclass(frozen=True, slots=True)
class PipelineStats:
    """Everything in `Layout.stats`, as the dashboard reads it."""

    counters: PipelineCounters
    last_write_ms: int | None
    circuit_state: CircuitState | None


def decode_stats(fields: Mapping[bytes | str, bytes | str]) -> PipelineStats:
    """Inverse of `encode_counters` plus `encode_sink_status` (missing fields tolerated)."""
    f = _text_mapping(fields)
    return PipelineStats(
        counters=PipelineCounters(
            events_in=int(f.get("events_in", 0)),
            dead_letters=int(f.get("dead_letters", 0)),
            late_events=int(f.get("late_events", 0)),
            last_event_ms=int(f["last_event_ms"]) if "last_event_ms" in f else None,
        ),
        last_write_ms=int(f["last_write_ms"]) if "last_write_ms" in f else None,
        circuit_state=CircuitState(f["circuit_state"]) if "circuit_state" in f else None,
    )


class UpdateKind(StrEnum):
    """The kinds of data an `Update` names, one per group of keys in `Layout`."""

    LATEST = "latest"
    WINDOWS = "windows"
    TRENDS = "trends"
    ALERTS = "alerts"
    ACTIVITY = "activity"
    LEADERBOARD = "leaderboard"
    STATS = "stats"


@dataclass(frozen=True, slots=True)
class Update:
    """A pub/sub notification: which kinds of data changed (`UpdateKind` values), and when (epoch ms)."""

    kinds: tuple[str, ...]
    at_ms: int


def encode_update(u: Update) -> bytes:
    """Message on `Layout.updates_channel`."""
    return orjson.dumps({"kinds": list(u.kinds), "at": u.at_ms})


def decode_update(raw: bytes | str) -> Update:
    """Inverse of `encode_update`."""
    d = orjson.loads(raw)
    return Update(kinds=tuple(str(k) for k in d["kinds"]), at_ms=int(d["at"]))


def _text_mapping(fields: Mapping[bytes | str, bytes | str]) -> dict[str, str]:
    return {
        (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
        for k, v in fields.items()
    }
