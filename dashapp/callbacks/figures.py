"""Figures and components from data: pure functions, no I/O, no clock (times come in as arguments).

Full figures are built on page load and when the device changes; ticks send
only increments: ``extendData`` payloads for the streaming charts and `Patch`
objects for gauges and bars, a few hundred bytes instead of a whole figure.
Times on chart axes are UTC.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import plotly.graph_objects as go
from dash import Patch, dcc, html

from dashapp import theme
from dashapp.callbacks.data import Board, Kpis, Status, format_age
from sinks.records import (
    ActivityWindow,
    Alert,
    EventType,
    Metric,
    PageTotal,
    Severity,
    TrendState,
    WindowStats,
)
from sources.models import SensorReading

ExtendData = list[Any]
"""A dcc.Graph ``extendData`` value: ``[{"x": [...], "y": [...]}, trace indices, max points]``."""

NO_VALUE = "\u2013"
"""An en dash: what a KPI shows when there is no data."""

TIME_AXIS = {"type": "date", "showgrid": False, "tickformat": "%H:%M", "hoverformat": "%H:%M:%S UTC"}
"""Window starts are epoch ms; plotly shows them in UTC."""

GRAPH_CONFIG: dcc.Graph.Config = {"displaylogo": False, "responsive": True, "displayModeBar": False}
"""Figures fill their container (whose height the layout sets), so they follow the page's width."""


def _layout(**extra: Any) -> dict[str, Any]:
    return {"template": theme.TEMPLATE, **extra}


# --- gauges ------------------------------------------------------------------


def _gauge_color(metric: Metric, value: float | None) -> str:
    if value is None:
        return theme.MUTED
    severity = theme.GAUGE_SCALES[metric].severity(value)
    return theme.METRIC_COLOR[metric] if severity is Severity.NONE else theme.SEVERITY_COLOR[severity]


def gauge_figure(metric: Metric, reading: SensorReading | None) -> go.Figure:
    """A gauge of `metric`'s latest value with its warning and critical bands."""
    scale = theme.GAUGE_SCALES[metric]
    value = None if reading is None else reading.value(metric)
    warn, crit, ok = (
        theme.with_alpha(theme.WARNING, 0.55),
        theme.with_alpha(theme.CRITICAL, 0.6),
        theme.SURFACE_2,
    )
    indicator = go.Indicator(
        mode="gauge+number",
        value=value,
        number={
            "suffix": f" {theme.METRIC_UNIT[metric]}",
            "valueformat": f".{theme.METRIC_DIGITS[metric]}f",
            "font": {"size": 30},
        },
        gauge={
            "shape": "angular",
            "axis": {"range": [scale.low, scale.high], "tickcolor": theme.MUTED, "tickfont": {"size": 10}},
            "bar": {"color": _gauge_color(metric, value), "thickness": 0.62},
            "bgcolor": theme.SURFACE_2,
            "borderwidth": 0,
            # Thin bands along the rim; the value's bar runs inside them.
            "steps": [
                {"range": [scale.low, scale.crit_low], "color": crit, "thickness": 0.18},
                {"range": [scale.crit_low, scale.warn_low], "color": warn, "thickness": 0.18},
                {"range": [scale.warn_low, scale.warn_high], "color": ok, "thickness": 0.18},
                {"range": [scale.warn_high, scale.crit_high], "color": warn, "thickness": 0.18},
                {"range": [scale.crit_high, scale.high], "color": crit, "thickness": 0.18},
            ],
        },
        title={"text": theme.METRIC_LABEL[metric], "font": {"size": 13, "color": theme.MUTED}},
        domain={"x": [0, 1], "y": [0, 1]},
    )
    return go.Figure(indicator, layout=_layout(margin={"l": 24, "r": 24, "t": 36, "b": 4}))


def gauge_patch(metric: Metric, reading: SensorReading | None) -> Patch:
    """The changes that move an existing gauge to `reading`."""
    value = None if reading is None else reading.value(metric)
    patch = Patch()
    patch["data"][0]["value"] = value
    patch["data"][0]["gauge"]["bar"]["color"] = _gauge_color(metric, value)
    return patch


# --- streaming window charts -----------------------------------------------

SERIES_TRACES = [0, 1, 2, 3]
"""max (band edge), min (band, filled to max), avg, p99."""


def _series_columns(points: Sequence[WindowStats]) -> tuple[list[int], list[list[float]]]:
    xs = [p.start_ms for p in points]
    return xs, [
        [p.max for p in points],
        [p.min for p in points],
        [p.avg for p in points],
        [p.p99 for p in points],
    ]


def series_figure(metric: Metric, points: Sequence[WindowStats]) -> go.Figure:
    """Window averages of one metric with a min-max band and the p99, over window start (UTC)."""
    color = theme.METRIC_COLOR[metric]
    unit = theme.METRIC_UNIT[metric]
    xs, (maxs, mins, avgs, p99s) = _series_columns(points)
    fmt = f"%{{y:.{theme.METRIC_DIGITS[metric] + 1}f}} {unit}"
    band = {"mode": "lines", "line": {"width": 0}, "showlegend": False}
    traces = [
        go.Scatter(x=xs, y=maxs, name="max", hovertemplate=f"{fmt}<extra>max</extra>", **band),
        go.Scatter(
            x=xs,
            y=mins,
            name="min-max",
            fill="tonexty",
            fillcolor=theme.with_alpha(color, 0.16),
            hovertemplate=f"{fmt}<extra>min</extra>",
            **band,
        ),
        go.Scatter(
            x=xs,
            y=avgs,
            name="avg",
            mode="lines",
            line={"color": color, "width": 2.2},
            hovertemplate=f"{fmt}<extra>avg</extra>",
        ),
        go.Scatter(
            x=xs,
            y=p99s,
            name="p99",
            mode="lines",
            line={"color": theme.with_alpha(color, 0.7), "width": 1.2, "dash": "dot"},
            hovertemplate=f"{fmt}<extra>p99</extra>",
        ),
    ]
    return go.Figure(
        traces,
        layout=_layout(
            hovermode="x unified",
            showlegend=False,
            xaxis=TIME_AXIS,
            yaxis={"ticksuffix": f" {unit}" if unit != "%" else "%", "nticks": 5},
            uirevision=metric.value,
        ),
    )


def series_extend(points: Sequence[WindowStats], keep: int) -> ExtendData:
    """``extendData`` appending `points` to a `series_figure`, keeping the newest `keep`."""
    xs, columns = _series_columns(points)
    return [{"x": [xs] * len(SERIES_TRACES), "y": columns}, SERIES_TRACES, keep]


def trend_badge(metric: Metric, trend: TrendState | None) -> list[Any]:
    """Direction arrow and slope (unit per minute) beside a metric's chart."""
    if trend is None:
        return [html.Span("no trend yet", className="trend-text text-secondary")]
    arrow = {"rising": "↗", "falling": "↘", "stable": "→"}[trend.direction.value]
    unit = theme.METRIC_UNIT[metric]
    digits = theme.METRIC_DIGITS[metric] + 2
    return [
        html.Span(arrow, className=f"trend-arrow trend-{trend.direction.value}"),
        html.Span(
            [
                html.Strong(trend.direction.value),
                f" {trend.slope_per_min:+.{digits}f} {unit}/min",
                html.Span(f" r² {trend.r2:.2f}", className="text-secondary"),
            ],
            className="trend-text",
        ),
    ]


# --- activity ----------------------------------------------------------------

EVENT_TYPES = list(EventType)
ACTIVITY_TRACES = list(range(len(EVENT_TYPES)))


def _rates(windows: Sequence[ActivityWindow]) -> tuple[list[int], list[list[float]]]:
    xs = [w.start_ms for w in windows]
    spans = [max(w.end_ms - w.start_ms, 1) / 1000 for w in windows]
    return xs, [
        [round(w.counts.get(t, 0) / span, 3) for w, span in zip(windows, spans, strict=True)]
        for t in EVENT_TYPES
    ]


def activity_figure(windows: Sequence[ActivityWindow]) -> go.Figure:
    """Events per second by type, stacked (the stack's top is the total rate)."""
    xs, rates = _rates(windows)
    traces = [
        go.Scatter(
            x=xs,
            y=ys,
            name=theme.EVENT_LABEL[t],
            mode="lines",
            stackgroup="events",
            line={"width": 1.2, "color": theme.EVENT_COLOR[t]},
            fillcolor=theme.with_alpha(theme.EVENT_COLOR[t], 0.35),
            hovertemplate="%{y:.1f}/s",
        )
        for t, ys in zip(EVENT_TYPES, rates, strict=True)
    ]
    return go.Figure(
        traces,
        layout=_layout(
            hovermode="x unified",
            xaxis=TIME_AXIS,
            yaxis={"ticksuffix": "/s", "nticks": 5},
            legend={"orientation": "h", "y": 1.12, "x": 0},
            margin={"l": 44, "r": 12, "t": 24, "b": 28},
            uirevision="activity",
        ),
    )


def activity_extend(windows: Sequence[ActivityWindow], keep: int) -> ExtendData:
    """``extendData`` appending `windows` to an `activity_figure`."""
    xs, rates = _rates(windows)
    return [{"x": [xs] * len(EVENT_TYPES), "y": rates}, ACTIVITY_TRACES, keep]


def revenue_figure(windows: Sequence[ActivityWindow]) -> go.Figure:
    """Revenue per window."""
    return go.Figure(
        go.Bar(
            x=[w.start_ms for w in windows],
            y=[w.revenue for w in windows],
            marker={"color": theme.EVENT_COLOR[EventType.PURCHASE]},
            hovertemplate="%{y:,.2f}<extra>revenue</extra>",
        ),
        layout=_layout(
            xaxis=TIME_AXIS,
            yaxis={"nticks": 4},
            bargap=0.25,
            uirevision="revenue",
        ),
    )


def revenue_extend(windows: Sequence[ActivityWindow], keep: int) -> ExtendData:
    """``extendData`` appending `windows` to a `revenue_figure`."""
    return [{"x": [[w.start_ms for w in windows]], "y": [[w.revenue for w in windows]]}, [0], keep]


def _funnel_counts(window: ActivityWindow | None) -> list[int]:
    return [0 if window is None else window.counts.get(t, 0) for t in EVENT_TYPES]


def funnel_figure(window: ActivityWindow | None) -> go.Figure:
    """Counts per event type in the newest window, in funnel order."""
    return go.Figure(
        go.Bar(
            x=_funnel_counts(window),
            y=[theme.EVENT_LABEL[t] for t in EVENT_TYPES],
            orientation="h",
            marker={"color": [theme.EVENT_COLOR[t] for t in EVENT_TYPES]},
            text=_funnel_counts(window),
            textposition="auto",
            hovertemplate="%{x}<extra>%{y}</extra>",
        ),
        layout=_layout(
            yaxis={"autorange": "reversed", "showgrid": False},
            xaxis={"nticks": 4},
            margin={"l": 84, "r": 12, "t": 4, "b": 24},
        ),
    )


def funnel_patch(window: ActivityWindow | None) -> Patch:
    """The changes that move a `funnel_figure` to `window`."""
    patch = Patch()
    counts = _funnel_counts(window)
    patch["data"][0]["x"] = counts
    patch["data"][0]["text"] = counts
    return patch


# --- alerts and leaderboard --------------------------------------------------


def clock_text(ms: int) -> str:
    """``HH:MM:SS`` UTC of epoch ms."""
    return time.strftime("%H:%M:%S", time.gmtime(ms / 1000))


def alert_rows(alerts: Sequence[Alert]) -> list[dict[str, Any]]:
    """Rows of the alert table, newest first as given."""
    return [
        {
            "alert_id": a.alert_id,
            "time": clock_text(a.event_time_ms),
            "severity": a.severity.value,
            "device": a.device_id,
            "metric": theme.METRIC_LABEL[a.metric],
            "value": f"{a.value:.{theme.METRIC_DIGITS[a.metric] + 1}f} {theme.METRIC_UNIT[a.metric]}",
            "z": round(a.z, 2),
            "baseline": f"{a.mean:.{theme.METRIC_DIGITS[a.metric] + 1}f} ± {a.std:.2f}",
        }
        for a in alerts
    ]


def _leaders(pages: Sequence[PageTotal]) -> tuple[list[int], list[str], list[str]]:
    return [p.purchases for p in pages], [p.page for p in pages], [f"{p.purchases:,}" for p in pages]


def leaderboard_figure(pages: Sequence[PageTotal]) -> go.Figure:
    """Pages by all-time purchases, most at the top."""
    x, y, text = _leaders(pages)
    return go.Figure(
        go.Bar(
            x=x,
            y=y,
            text=text,
            orientation="h",
            textposition="outside",
            cliponaxis=False,
            marker={"color": theme.EVENT_COLOR[EventType.PURCHASE], "cornerradius": 4},
            hovertemplate="%{x:,} purchases<extra>%{y}</extra>",
        ),
        layout=_layout(
            yaxis={"autorange": "reversed", "showgrid": False, "ticksuffix": "  "},
            xaxis={"visible": False},
            margin={"l": 8, "r": 40, "t": 4, "b": 4},
            bargap=0.35,
        ),
    )


def leaderboard_patch(pages: Sequence[PageTotal]) -> Patch:
    """The changes that move a `leaderboard_figure` to `pages`."""
    patch = Patch()
    patch["data"][0]["x"], patch["data"][0]["y"], patch["data"][0]["text"] = _leaders(pages)
    return patch


# --- header ------------------------------------------------------------------

STATUS_LOOK = {
    Status.LIVE: ("● live", "success"),
    Status.STALE: ("● stale", "warning"),
    Status.WAITING: ("● waiting for data", "secondary"),
    Status.DEGRADED: ("● degraded", "warning"),
    Status.UNAVAILABLE: ("● Redis unreachable", "danger"),
}


def rate_text(rate: float | None) -> str:
    """Events per second for a KPI."""
    if rate is None:
        return NO_VALUE
    return f"{rate:,.0f}" if rate >= 100 else f"{rate:,.1f}"


def kpi_texts(kpis: Kpis) -> dict[str, str]:
    """The header's KPI values as plain text, by output name (the layout styles them)."""
    return {
        "kpi_iot_rate": rate_text(kpis.iot_events_per_s),
        "kpi_activity_rate": rate_text(kpis.activity_events_per_s),
        "kpi_devices_active": f"{kpis.active_devices}",
        "kpi_devices_total": f"/ {kpis.devices}",
        "kpi_alerts_critical": f"{kpis.alerts_critical}",
        "kpi_alerts_warning": f"{kpis.alerts_warning}",
        "kpi_dead_letters": NO_VALUE if kpis.dead_letters is None else f"{kpis.dead_letters:,}",
        "kpi_freshness": NO_VALUE if kpis.freshness_s is None else format_age(kpis.freshness_s),
        "kpi_revenue": NO_VALUE if kpis.revenue is None else f"{kpis.revenue:,.2f}",
        "kpi_revenue_span": f"{kpis.revenue_span_s / 60:.0f} min" if kpis.revenue is not None else "",
    }


def status_badge(board: Board) -> tuple[str, str]:
    """(text, bootstrap colour) of the status badge."""
    return STATUS_LOOK[board.status]


def updated_text(board: Board) -> str:
    """When the data shown was read."""
    read = board.view.read_ms
    return "never read" if read is None else f"read {clock_text(read)} UTC"


def banner(board: Board) -> tuple[str, bool, str]:
    """(text, shown, bootstrap colour) of the degraded-state banner."""
    colour = "danger" if board.status is Status.UNAVAILABLE else "warning"
    shown = board.status in (Status.UNAVAILABLE, Status.STALE, Status.DEGRADED, Status.WAITING)
    if board.status is Status.WAITING:
        colour = "info"
    return board.detail, shown, colour


def device_options(devices: Sequence[str]) -> list[dict[str, str]]:
    """Options of the device selector."""
    return [{"label": d, "value": d} for d in devices]
