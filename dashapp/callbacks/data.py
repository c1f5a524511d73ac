"""The dashboard's data seam: one Redis read per interval for every open page, and the board it shows.

`LiveData` is the per-process cache. Every tick of every page asks it for the
current `LiveView`; within the cache TTL they all get the same object, and while
a read is in flight later callers join it instead of starting another, so Redis
sees one pipeline per interval however many pages are open, and a slow Redis
never piles reads up. Chart series are kept as rolling windows: each read asks
only for the windows newer than the ones held (plus the newest held one, in case
it was rewritten), and re-reads everything every ``dash_full_refresh_s``. A
`DecodeMemo` keeps what was decoded, so members read again unchanged (trends,
alerts, every window at a full refresh) cost a lookup, not a decode.

`build_board` turns a view into what the page shows (KPIs, status). Pure.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, TypeVar

import structlog

from dashapp.metrics import DashMetrics
from dashapp.settings import DashSettings
from sinks.reader import (
    ALERT_SCAN_LIMIT,
    ActivityQuery,
    AsyncReader,
    DecodeMemo,
    DeviceData,
    DevicesQuery,
    Query,
    Snapshot,
    SnapshotQuery,
    Unavailable,
)
from sinks.records import CircuitState, Metric, Severity, WindowStats

log = structlog.get_logger(__name__)


def wall_ms() -> int:
    """The wall clock, UTC epoch ms."""
    return time.time_ns() // 1_000_000


class _Windowed(Protocol):
    @property
    def start_ms(self) -> int: ...


P = TypeVar("P", bound=_Windowed)
T = TypeVar("T")


def merge_points(held: Sequence[P], new: Sequence[P], keep: int) -> list[P]:
    """Append freshly read windows to held ones, by window start, keeping the newest `keep`.

    `new` (oldest first) replaces every held window from its first start on, so a
    re-read window overwrites its old version instead of appearing twice.
    """
    if not new:
        return list(held[-keep:])
    first = new[0].start_ms
    # Held is oldest first and a read re-reads only its newest window or two: search from the end.
    cut = len(held)
    while cut and held[cut - 1].start_ms >= first:
        cut -= 1
    merged = list(held[max(cut + len(new) - keep, 0) : cut])
    merged.extend(new)
    return merged[-keep:]


def newest_common_start(series: Sequence[Sequence[WindowStats]]) -> int | None:
    """Start of the newest window every one of a device's series holds (None if one is empty)."""
    if not series or any(not s for s in series):
        return None
    return min(s[-1].start_ms for s in series)


@dataclass(frozen=True, slots=True)
class LiveView:
    """The newest data read, or why the newest read failed (then `snapshot` is the last good one)."""

    snapshot: Snapshot
    read_ms: int | None
    """Wall time of the last successful read; None before the first."""
    unavailable: Unavailable | None = None
    unavailable_since_ms: int | None = None
    """When reads started failing (wall ms)."""

    @classmethod
    def initial(cls) -> LiveView:
        """Before anything was read."""
        return cls(Snapshot.empty(), None)


class LiveData:
    """The per-process cache of the dashboard's data, shared by every page and client."""

    def __init__(
        self,
        reader: AsyncReader,
        settings: DashSettings,
        metrics: DashMetrics,
        clock_ms: Callable[[], int] = wall_ms,
    ) -> None:
        self._reader = reader
        self._settings = settings
        self._metrics = metrics
        self._clock_ms = clock_ms
        self._ttl_ms = settings.dash_cache_ttl_s * 1000
        self._view = LiveView.initial()
        self._produced_ms: float | None = None
        self._last_full_ms: int | None = None
        self._inflight: asyncio.Task[LiveView] | None = None
        self._warned_devices = False
        # Room for everything a view holds (each device's series, trend and reading; alerts), twice
        # over: a full refresh then decodes only what changed.
        per_device = len(Metric) * (settings.dash_chart_points + 2)
        self.memo = DecodeMemo(2 * (settings.dash_max_devices * per_device + ALERT_SCAN_LIMIT))
        self.reads = 0
        """Redis round trips made (for tests and benchmarks)."""

    @property
    def cached(self) -> LiveView:
        """The view held now, without reading."""
        return self._view

    async def view(self) -> LiveView:
        """The current view: cached within the TTL, else one read shared by every concurrent caller."""
        if self._produced_ms is not None and self._clock_ms() - self._produced_ms < self._ttl_ms:
            self._metrics.cache_requests.labels("hit").inc()
            return self._view
        if self._inflight is None:
            self._metrics.cache_requests.labels("read").inc()
            self._inflight = asyncio.get_running_loop().create_task(self._refresh())
        else:
            self._metrics.cache_requests.labels("shared").inc()
        # shield: a caller that goes away (page closed) must not cancel the read others wait for.
        return await asyncio.shield(self._inflight)

    async def _refresh(self) -> LiveView:
        try:
            self._view = await self._read()
            self._produced_ms = self._clock_ms()
            return self._view
        finally:
            self._inflight = None

    async def _read(self) -> LiveView:
        s = self._settings
        now = self._clock_ms()
        prev = self._view
        full = self._last_full_ms is None or now - self._last_full_ms >= s.dash_full_refresh_s * 1000
        held = prev.snapshot
        devices = self._tracked(list(held.latest))
        since = tuple(
            (d, None if full else newest_common_start([held.devices.series.get((d, m), []) for m in Metric]))
            for d in devices
        )
        activity_since = None if full or not held.activity else held.activity[-1].start_ms
        query = SnapshotQuery(
            DevicesQuery(s.dash_chart_window, since, s.dash_chart_points),
            ActivityQuery(s.dash_activity_window, start_ms=activity_since, limit=s.dash_chart_points),
            alerts_limit=s.dash_alert_rows,
            recent_since_ms=now - s.dash_alert_lookback_s * 1000,
            leaderboard_limit=s.dash_leaderboard_size,
        )
        result = await self._timed("snapshot", query)
        if isinstance(result, Unavailable):
            self._metrics.redis_errors.labels("snapshot").inc()
            if prev.unavailable is None:
                log.warning("redis unavailable, showing the last data read", reason=result.reason)
            return LiveView(held, prev.read_ms, result, prev.unavailable_since_ms or now)
        if prev.unavailable is not None:
            log.info("redis available again")
        if result.bad_members:
            self._metrics.bad_members.inc(result.bad_members)
        devices_data = result.devices
        # Devices that appeared since the last read have no series yet: fetch them now, so a
        # page opened right after start-up shows the current window instead of waiting a tick.
        queried = {d for d, _ in since}
        new = [d for d in self._tracked(list(result.latest)) if d not in queried]
        if new:
            extra = await self._timed(
                "devices",
                DevicesQuery(s.dash_chart_window, tuple((d, None) for d in new), s.dash_chart_points),
            )
            if isinstance(extra, Unavailable):
                self._metrics.redis_errors.labels("devices").inc()
            else:
                devices_data = DeviceData(
                    {**devices_data.series, **extra.series}, {**devices_data.trends, **extra.trends}
                )
        if full:
            self._last_full_ms = now
        return LiveView(self._merge(held, result, devices_data, full), now)

    async def _timed(self, name: str, query: Query[T]) -> T | Unavailable:
        started = time.perf_counter()
        result = await self._reader.read(query, self.memo)
        self._metrics.redis_read_seconds.labels(name).observe(time.perf_counter() - started)
        self.reads += 1
        return result

    def _tracked(self, devices: list[str]) -> list[str]:
        limit = self._settings.dash_max_devices
        if len(devices) > limit and not self._warned_devices:
            self._warned_devices = True
            log.warning(
                "more devices than PIPELINE_DASH_MAX_DEVICES, ignoring the rest", devices=len(devices)
            )
        return devices[:limit]

    def _merge(self, held: Snapshot, new: Snapshot, devices: DeviceData, full: bool) -> Snapshot:
        keep = self._settings.dash_chart_points
        tracked = set(self._tracked(list(new.latest)))
        series = {
            key: points if full else merge_points(held.devices.series.get(key, []), points, keep)
            for key, points in devices.series.items()
            if key[0] in tracked
        }
        trends = {key: t for key, t in devices.trends.items() if key[0] in tracked}
        activity = new.activity if full else merge_points(held.activity, new.activity, keep)
        return Snapshot(
            new.latest,
            DeviceData(series, trends),
            new.alerts,
            new.recent_alerts,
            activity,
            new.leaderboard,
            new.stats,
            new.bad_members,
        )


# --- the board: what the page shows ---------------------------------------------


class Status(StrEnum):
    """The pipeline's state as the header shows it."""

    LIVE = "live"
    STALE = "stale"
    WAITING = "waiting"
    DEGRADED = "degraded"
    UNAVAILABLE = "unavailable"


@dataclass(frozen=True, slots=True)
class Kpis:
    """Header numbers; None where there is no data to say anything."""

    iot_events_per_s: float | None
    activity_events_per_s: float | None
    active_devices: int
    devices: int
    alerts_warning: int
    alerts_critical: int
    dead_letters: int | None
    freshness_s: float | None
    """Age of the newest event, seconds."""
    revenue: float | None
    """Revenue over the activity windows shown."""
    revenue_span_s: float


@dataclass(frozen=True, slots=True)
class Board:
    """Everything a page renders at one moment."""

    view: LiveView
    now_ms: int
    status: Status
    detail: str
    """One sentence for people: why the status is not live ('' when it is)."""
    kpis: Kpis
    devices: list[str]

    @property
    def snapshot(self) -> Snapshot:
        """The data shown."""
        return self.view.snapshot


def _iot_rate(snap: Snapshot, active: set[str]) -> float | None:
    # Each reading carries every metric, so one metric's window counts are the readings.
    rate = None
    for device in active:
        points = snap.devices.series.get((device, Metric.TEMPERATURE))
        if points:
            newest = points[-1]
            span_s = max(newest.end_ms - newest.start_ms, 1) / 1000
            rate = (rate or 0.0) + newest.count / span_s
    return rate


def _newest_event_ms(snap: Snapshot) -> int | None:
    times = [r.event_time for r in snap.latest.values()]
    if snap.stats.counters.last_event_ms is not None:
        times.append(snap.stats.counters.last_event_ms)
    if snap.activity:
        times.append(snap.activity[-1].end_ms)
    return max(times) if times else None


def _has_data(snap: Snapshot) -> bool:
    return bool(snap.latest or snap.activity or snap.alerts or snap.stats.counters.events_in)


def build_board(view: LiveView, now_ms: int, settings: DashSettings) -> Board:
    """What to show for `view` at wall time `now_ms`."""
    snap = view.snapshot
    active = {
        d for d, r in snap.latest.items() if now_ms - r.event_time <= settings.dash_active_device_s * 1000
    }
    newest = _newest_event_ms(snap)
    freshness = None if newest is None else max(now_ms - newest, 0) / 1000
    recent = [
        a for a in snap.recent_alerts if now_ms - a.event_time_ms <= settings.dash_alert_lookback_s * 1000
    ]
    activity = snap.activity
    revenue_span = sum(a.end_ms - a.start_ms for a in activity) / 1000
    kpis = Kpis(
        iot_events_per_s=_iot_rate(snap, active),
        activity_events_per_s=activity[-1].events_per_s if activity else None,
        active_devices=len(active),
        devices=len(snap.latest),
        alerts_warning=sum(a.severity is Severity.WARNING for a in recent),
        alerts_critical=sum(a.severity is Severity.CRITICAL for a in recent),
        dead_letters=snap.stats.counters.dead_letters if _has_data(snap) else None,
        freshness_s=freshness,
        revenue=sum(a.revenue for a in activity) if activity else None,
        revenue_span_s=revenue_span,
    )
    status, detail = _status(view, freshness, settings)
    return Board(view, now_ms, status, detail, kpis, list(snap.latest))


def _status(view: LiveView, freshness_s: float | None, settings: DashSettings) -> tuple[Status, str]:
    snap = view.snapshot
    if view.unavailable is not None:
        since = _clock_text(view.unavailable_since_ms)
        shown = f"showing data read at {_clock_text(view.read_ms)}" if view.read_ms else "no data to show"
        return Status.UNAVAILABLE, f"Redis is unreachable since {since} UTC; {shown}. Retrying every tick."
    if not _has_data(snap):
        return Status.WAITING, "No data in Redis yet: waiting for the pipeline's first results."
    circuit = snap.stats.circuit_state
    if circuit in (CircuitState.OPEN, CircuitState.HALF_OPEN):
        return (
            Status.DEGRADED,
            f"The pipeline's Redis writer is degraded (circuit {circuit.value.replace('_', '-')}); "
            "results are held back until it recovers.",
        )
    if freshness_s is not None and freshness_s > settings.dash_stale_after_s:
        return Status.STALE, f"Data is stale: the newest event is {format_age(freshness_s)} old."
    return Status.LIVE, ""


def _clock_text(ms: int | None) -> str:
    if ms is None:
        return "-"
    return time.strftime("%H:%M:%S", time.gmtime(ms / 1000))


def format_age(seconds: float) -> str:
    """A short age: ``0.4 s``, ``12 s``, ``3 min 5 s``, ``2 h 10 min``."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min"
    return f"{hours // 24} d"


__all__ = [
    "Board",
    "Kpis",
    "LiveData",
    "LiveView",
    "Status",
    "build_board",
    "format_age",
    "merge_points",
    "wall_ms",
]
