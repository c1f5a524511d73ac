"""Boards and snapshots built in memory, for the pure dashboard logic."""

from __future__ import annotations

from dashapp.callbacks.data import Board, LiveView, build_board
from dashapp.settings import DashSettings
from sinks.layout import PipelineStats
from sinks.reader import DeviceData, Snapshot
from sinks.records import CircuitState, Metric, PipelineCounters, Severity
from tests.seed import T0_MS, WINDOW_MS, activity_window, alert, reading, trend, window

SETTINGS = DashSettings()


def snapshot(
    devices: list[str],
    windows: int,
    first: int = 0,
    alerts: int = 0,
    circuit: CircuitState | None = CircuitState.CLOSED,
) -> Snapshot:
    """Windows first..first+windows-1 of every device, with everything else that goes with them."""
    last = first + windows - 1
    series = {
        (d, m): [window(d, m, i) for i in range(first, first + windows)] for d in devices for m in Metric
    }
    trends = {(d, m): trend(d, m, last) for d in devices for m in Metric}
    made = [
        alert(devices[0], Metric.HUMIDITY, i, Severity.CRITICAL if i % 2 else Severity.WARNING)
        for i in range(alerts)
    ]
    return Snapshot(
        latest={d: reading(d, last) for d in devices} if windows else {},
        devices=DeviceData(series, trends),
        alerts=made[::-1],
        recent_alerts=made[::-1],
        activity=[activity_window(i) for i in range(first, first + windows)],
        leaderboard=[],
        stats=PipelineStats(
            PipelineCounters(100, 2, 1, T0_MS + last * WINDOW_MS + WINDOW_MS - 1), T0_MS, circuit
        ),
    )


def board(snap: Snapshot, now_ms: int | None = None, **view: object) -> Board:
    """The board of `snap` read at `now_ms` (default: just after its newest window)."""
    if now_ms is None:
        newest = max((r.event_time for r in snap.latest.values()), default=T0_MS)
        now_ms = newest + 1_000
    return build_board(LiveView(snap, now_ms, **view), now_ms, SETTINGS)  # type: ignore[arg-type]
