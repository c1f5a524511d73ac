"""What one tick sends: increments since the page's cursor, full figures only when they must be redrawn.

The page keeps a `Cursor` (a dcc.Store) describing what it already shows: the
selected device, the newest window on each chart, the alert table's head, the
leaderboard. The server answers a tick with the cursor it sends along, so the
figure data and the cursor always travel in the same response: if a response is
lost, the page keeps its old cursor and the next tick sends everything since
then (no point lost, none twice). Pure: board and cursor in, output values out.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from dash import no_update

from dashapp.callbacks import figures
from dashapp.callbacks.data import Board
from sinks.records import Alert, Metric, WindowStats
from sources.models import SensorReading


@dataclass(frozen=True, slots=True)
class Cursor:
    """What a page shows already (stored in the browser as a plain dict)."""

    device: str | None = None
    series: dict[str, int] = field(default_factory=dict)
    """Metric -> start (ms) of the newest window on its chart."""
    reading: int | None = None
    """Event time (ms) of the reading on the gauges."""
    trends: str = ""
    """Signature of the trend badges."""
    activity: int | None = None
    """Start (ms) of the newest activity window on the activity charts."""
    alerts: str = ""
    """Newest alert in the table, ``id@event time`` ('' when none)."""
    leaders: str = ""
    """Signature of the leaderboard shown."""
    devices: str = ""
    """Signature of the device selector's options."""

    def to_store(self) -> dict[str, Any]:
        """The dcc.Store value."""
        return asdict(self)

    @classmethod
    def from_store(cls, data: object) -> Cursor:
        """Parse a stored cursor; anything malformed (old page, tampering) means "shows nothing"."""
        if not isinstance(data, Mapping):
            return cls()
        try:
            series = {
                Metric(k).value: int(v) for k, v in dict(data.get("series") or {}).items() if v is not None
            }
            activity = data.get("activity")
            device = data.get("device")
            reading = data.get("reading")
            return cls(
                device=str(device) if device is not None else None,
                series=series,
                reading=int(reading) if reading is not None else None,
                trends=str(data.get("trends", "")),
                activity=int(activity) if activity is not None else None,
                alerts=str(data.get("alerts", "")),
                leaders=str(data.get("leaders", "")),
                devices=str(data.get("devices", "")),
            )
        except (TypeError, ValueError):
            return cls()


def choose_device(requested: object, devices: Sequence[str]) -> str | None:
    """The device to show: the requested one if it exists, else the first."""
    if isinstance(requested, str) and requested in devices:
        return requested
    return devices[0] if devices else None


def points_since(points: Sequence[Any], cursor_ms: int | None) -> list[Any] | None:
    """Points newer than `cursor_ms`, or None when the chart must be redrawn.

    Redraw when the page shows nothing yet but there is data, or when the data no
    longer reaches the cursor (Redis was emptied, the pipeline restarted).
    """
    if cursor_ms is None:
        return None if points else []
    if not points or points[-1].start_ms < cursor_ms:
        return None
    return [p for p in points if p.start_ms > cursor_ms]


def _alert_signature(alert: Alert) -> str:
    return f"{alert.alert_id}@{alert.event_time_ms}"


def _alerts_head(board: Board) -> str:
    alerts = board.snapshot.alerts
    return _alert_signature(alerts[0]) if alerts else ""


def alerts_since(alerts: Sequence[Alert], head: str) -> list[Alert] | None:
    """Alerts newer than the page's newest (`head`), or None when the table must be resent.

    Resend when the page shows none yet, or its newest alert is gone or changed
    (the pipeline rewrites an alert when its episode peaks higher).
    """
    if not head:
        return None
    for i, alert in enumerate(alerts):
        if _alert_signature(alert) == head:
            return list(alerts[:i])
    return None


def digest(text: str) -> str:
    """A short fingerprint of what a page shows: the cursor travels with every tick, both ways."""
    return hashlib.blake2b(text.encode(), digest_size=6).hexdigest()


def _trends_signature(board: Board, device: str | None) -> str:
    trends = [_trend(board, device, m) for m in Metric]
    return digest(";".join("" if t is None else f"{t.direction}{t.slope_per_min!r}{t.r2!r}" for t in trends))


def _leaders_signature(board: Board) -> str:
    return digest(",".join(f"{p.page}={p.purchases}" for p in board.snapshot.leaderboard))


def _devices_signature(board: Board) -> str:
    return digest(",".join(board.devices))


def _device_data(
    board: Board, device: str | None
) -> tuple[SensorReading | None, dict[Metric, list[WindowStats]]]:
    snap = board.snapshot
    reading = snap.latest.get(device) if device else None
    series = {m: snap.devices.series.get((device, m), []) if device else [] for m in Metric}
    return reading, series


def full_outputs(board: Board, device: str | None, keep: int) -> tuple[dict[str, Any], Cursor]:
    """Every output value as a full figure or component, and the cursor they amount to."""
    out = _header(board)
    reading, series = _device_data(board, device)
    out["device_options"] = figures.device_options(board.devices)
    out["device_value"] = device
    out["device_title"] = device or "no device yet"
    for m in Metric:
        out[f"gauge_{m.value}"] = figures.gauge_figure(m, reading)
        out[f"chart_{m.value}"] = figures.series_figure(m, series[m][-keep:])
        out[f"extend_{m.value}"] = no_update
        out[f"trend_{m.value}"] = figures.trend_badge(m, _trend(board, device, m))
    snap = board.snapshot
    activity = snap.activity[-keep:]
    out["alerts"] = figures.alert_rows(snap.alerts)
    out["new_alerts"] = no_update
    out["activity"] = figures.activity_figure(activity)
    out["activity_extend"] = no_update
    out["revenue"] = figures.revenue_figure(activity)
    out["revenue_extend"] = no_update
    out["funnel"] = figures.funnel_figure(activity[-1] if activity else None)
    out["leaderboard"] = figures.leaderboard_figure(snap.leaderboard)
    cursor = Cursor(
        device=device,
        series={m.value: pts[-1].start_ms for m, pts in series.items() if pts},
        reading=None if reading is None else reading.event_time,
        trends=_trends_signature(board, device),
        activity=activity[-1].start_ms if activity else None,
        alerts=_alerts_head(board),
        leaders=_leaders_signature(board),
        devices=_devices_signature(board),
    )
    return out, cursor


def _trend(board: Board, device: str | None, metric: Metric) -> Any:
    return board.snapshot.devices.trends.get((device, metric)) if device else None


def _header(board: Board) -> dict[str, Any]:
    text, colour = figures.status_badge(board)
    banner_text, banner_open, banner_colour = figures.banner(board)

    return {
        "status_text": text,
        "status_color": colour,
        "status_title": board.detail or "Data is flowing.",
        "updated": figures.updated_text(board),
        "banner_text": banner_text,
        "banner_open": banner_open,
        "banner_color": banner_colour,
        **figures.kpi_texts(board.kpis),
    }


def tick_outputs(
    board: Board, cursor: Cursor, requested_device: object, keep: int
) -> tuple[dict[str, Any], Cursor]:
    """Output values of one tick: what changed since `cursor`, and the new cursor."""
    device = choose_device(requested_device, board.devices)
    if device != cursor.device:
        out, new_cursor = full_outputs(board, device, keep)
        if device == requested_device:
            out["device_value"] = no_update
        if new_cursor.devices == cursor.devices:
            out["device_options"] = no_update
        return out, new_cursor

    out = _header(board)
    snap = board.snapshot
    reading, series = _device_data(board, device)
    devices_sig = _devices_signature(board)
    changed = devices_sig != cursor.devices
    out["device_options"] = figures.device_options(board.devices) if changed else no_update
    out["device_value"] = no_update
    out["device_title"] = no_update
    reading_ms = None if reading is None else reading.event_time
    trends_sig = _trends_signature(board, device)
    new_series = dict(cursor.series)
    for m in Metric:
        changed = reading_ms != cursor.reading
        out[f"gauge_{m.value}"] = figures.gauge_patch(m, reading) if changed else no_update
        changed = trends_sig != cursor.trends
        out[f"trend_{m.value}"] = figures.trend_badge(m, _trend(board, device, m)) if changed else no_update
        points = series[m]
        fresh = points_since(points, cursor.series.get(m.value))
        out[f"chart_{m.value}"] = figures.series_figure(m, points[-keep:]) if fresh is None else no_update
        out[f"extend_{m.value}"] = figures.series_extend(fresh[-keep:], keep) if fresh else no_update
        if points:
            new_series[m.value] = points[-1].start_ms
        else:
            new_series.pop(m.value, None)

    activity = snap.activity[-keep:]
    fresh_activity = points_since(activity, cursor.activity)
    redraw = fresh_activity is None
    out["activity"] = figures.activity_figure(activity) if redraw else no_update
    out["revenue"] = figures.revenue_figure(activity) if redraw else no_update
    out["activity_extend"] = figures.activity_extend(fresh_activity, keep) if fresh_activity else no_update
    out["revenue_extend"] = figures.revenue_extend(fresh_activity, keep) if fresh_activity else no_update
    newest = activity[-1] if activity else None
    out["funnel"] = figures.funnel_patch(newest) if redraw or fresh_activity else no_update

    head = _alerts_head(board)
    out["alerts"] = out["new_alerts"] = no_update
    if head != cursor.alerts:
        fresh_alerts = alerts_since(snap.alerts, cursor.alerts)
        if fresh_alerts is None:
            out["alerts"] = figures.alert_rows(snap.alerts)
        else:
            out["new_alerts"] = {"head": head, "rows": figures.alert_rows(fresh_alerts)}
    leaders_sig = _leaders_signature(board)
    changed = leaders_sig != cursor.leaders
    out["leaderboard"] = figures.leaderboard_patch(snap.leaderboard) if changed else no_update

    return out, Cursor(
        device=device,
        series=new_series,
        reading=reading_ms,
        trends=trends_sig,
        activity=newest.start_ms if newest else None,
        alerts=head,
        leaders=leaders_sig,
        devices=devices_sig,
    )
