"""Dash callbacks: one client-side gate and one server tick per page, many outputs.

The interval does not call the server directly. A client-side gate turns an
interval tick into a server tick only when the previous server tick has been
answered (or given up on after a while), so a slow server never has requests
piling up and the browser never discards answers because newer requests
superseded them (plotly/dash#941). The server tick reads the shared cache once
and answers with increments since the page's cursor (see `stream`).
"""

from __future__ import annotations

import time
from typing import Any

from dash import ClientsideFunction, Dash, Input, Output, State, no_update

from dashapp import ids
from dashapp.callbacks.data import build_board
from dashapp.callbacks.stream import Cursor, tick_outputs
from dashapp.runtime import NotStarted, Runtime
from sinks.records import Metric

OUTPUTS: dict[str, Output] = {
    "status_text": Output(ids.STATUS, "children"),
    "status_color": Output(ids.STATUS, "color"),
    "status_title": Output(ids.STATUS, "title"),
    "updated": Output(ids.UPDATED, "children"),
    "banner_text": Output(ids.BANNER, "children"),
    "banner_open": Output(ids.BANNER, "is_open"),
    "banner_color": Output(ids.BANNER, "color"),
    "device_options": Output(ids.DEVICE, "options"),
    "device_value": Output(ids.DEVICE, "value"),
    "device_title": Output(ids.DEVICE_TITLE, "children"),
    "kpi_iot_rate": Output(ids.KPI_IOT_RATE, "children"),
    "kpi_activity_rate": Output(ids.KPI_ACTIVITY_RATE, "children"),
    "kpi_devices_active": Output(ids.KPI_DEVICES_ACTIVE, "children"),
    "kpi_devices_total": Output(ids.KPI_DEVICES_TOTAL, "children"),
    "kpi_alerts_critical": Output(ids.KPI_ALERTS_CRITICAL, "children"),
    "kpi_alerts_warning": Output(ids.KPI_ALERTS_WARNING, "children"),
    "kpi_dead_letters": Output(ids.KPI_DEAD_LETTERS, "children"),
    "kpi_freshness": Output(ids.KPI_FRESHNESS, "children"),
    "kpi_revenue": Output(ids.KPI_REVENUE, "children"),
    "kpi_revenue_span": Output(ids.KPI_REVENUE_SPAN, "children"),
    **{f"gauge_{m.value}": Output(ids.gauge(m), "figure") for m in Metric},
    **{f"chart_{m.value}": Output(ids.chart(m), "figure") for m in Metric},
    **{f"extend_{m.value}": Output(ids.chart(m), "extendData") for m in Metric},
    **{f"trend_{m.value}": Output(ids.trend(m), "children") for m in Metric},
    "alerts": Output(ids.ALERTS, "rowData"),
    "new_alerts": Output(ids.NEW_ALERTS, "data"),
    "activity": Output(ids.ACTIVITY, "figure"),
    "activity_extend": Output(ids.ACTIVITY, "extendData"),
    "revenue": Output(ids.REVENUE, "figure"),
    "revenue_extend": Output(ids.REVENUE, "extendData"),
    "funnel": Output(ids.FUNNEL, "figure"),
    "leaderboard": Output(ids.LEADERBOARD, "figure"),
    "cursor": Output(ids.CURSOR, "data"),
    "ack": Output(ids.ACK, "data"),
}


def register_callbacks(app: Dash, runtime: Runtime) -> None:
    """Wire the gate and the tick of every page to `runtime`'s shared data."""
    settings = runtime.settings
    metrics = runtime.metrics
    keep = settings.dash_chart_points

    # The gate is in assets/03_gate.js.
    app.clientside_callback(
        ClientsideFunction(namespace="pipeline", function_name="gate"),
        Output(ids.TICK, "data"),
        Input(ids.INTERVAL, "n_intervals"),
        State(ids.ACK, "data"),
        State(ids.TICK, "data"),
        State(ids.CLIENT_CONFIG, "data"),
    )

    # New alert rows go on top of the grid's rows (assets/03_gate.js), so a tick carries only them.
    app.clientside_callback(
        ClientsideFunction(namespace="pipeline", function_name="mergeAlerts"),
        Output(ids.ALERTS, "rowData", allow_duplicate=True),
        Input(ids.NEW_ALERTS, "data"),
        State(ids.ALERTS, "rowData"),
        State(ids.CLIENT_CONFIG, "data"),
        prevent_initial_call=True,
    )

    @app.callback(
        output=OUTPUTS,
        inputs={"tick": Input(ids.TICK, "data"), "device": Input(ids.DEVICE, "value")},
        state={"cursor": State(ids.CURSOR, "data")},
        prevent_initial_call=True,
    )
    async def tick(tick: Any, device: Any, cursor: Any) -> dict[str, Any]:
        started = time.perf_counter()
        if runtime.live is None:
            raise NotStarted("tick before the server started")
        view = await runtime.live.view()
        board = build_board(view, runtime.clock_ms(), settings)
        out, new_cursor = tick_outputs(board, Cursor.from_store(cursor), device, keep)
        out["cursor"] = new_cursor.to_store()
        out["ack"] = tick.get("seq", no_update) if isinstance(tick, dict) else no_update
        metrics.callback_seconds.labels("tick").observe(time.perf_counter() - started)
        return out
