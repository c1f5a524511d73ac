"""The page: components only, filled with the current board so the first paint shows live data.

`page` is called for every page load (Dash's layout-as-a-function); it gets a
`Board` and returns components. Callbacks then stream changes into them.
"""

from __future__ import annotations

from typing import Any

import dash_ag_grid as dag
import dash_bootstrap_components as dbc
from dash import dcc, html

from dashapp import ids, theme
from dashapp.callbacks.data import Board
from dashapp.callbacks.figures import GRAPH_CONFIG
from dashapp.callbacks.stream import choose_device, full_outputs
from dashapp.settings import DashSettings
from sinks.records import Metric

GAUGE_PX, CHART_PX, ACTIVITY_PX, FUNNEL_PX, REVENUE_PX, LEADERBOARD_PX = 190, 230, 270, 150, 120, 330
"""Heights of the graphs; widths follow the page."""

GATE_RETRY_INTERVALS = 10
"""A tick whose answer never came is given up after this many poll intervals."""

# AG Grid's theming API, evaluated in the browser by dash-ag-grid (which offers the four base
# themes, not the colour-scheme parts); the grid derives its other colours from these.
GRID_THEME = (
    "themeQuartz.withParams({browserColorScheme: 'dark', "
    f"backgroundColor: '{theme.SURFACE}', foregroundColor: '{theme.TEXT}', "
    f"headerBackgroundColor: '{theme.SURFACE_2}', borderColor: '{theme.BORDER}', "
    f"accentColor: '{theme.METRIC_COLOR[Metric.HUMIDITY]}', fontFamily: 'inherit', fontSize: 13, "
    "rowHeight: 34, headerHeight: 36, wrapperBorderRadius: 10})"
)

ALERT_COLUMNS: list[dict[str, Any]] = [
    {"field": "time", "headerName": "Time (UTC)", "maxWidth": 120},
    {
        "field": "severity",
        "maxWidth": 120,
        # dash-ag-grid evaluates {"function": ...} itself; plain strings would need dangerously_allow_code.
        "cellClass": {"function": "'sev-' + params.value"},
    },
    {"field": "device", "maxWidth": 130},
    {"field": "metric", "maxWidth": 140},
    {"field": "value", "headerName": "Value", "maxWidth": 130},
    {"field": "z", "headerName": "z", "maxWidth": 90},
    {"field": "baseline", "headerName": "Expected ± se"},
]


def _kpi(label: str, hint: str, *value: Any) -> dbc.Col:
    return dbc.Col(
        html.Div(
            [html.Div(label, className="kpi-label"), html.Div(list(value), className="kpi-value")],
            className="kpi",
            title=hint,
        ),
        xs=6,
        md=4,
        xl=True,
    )


def _kpis(out: dict[str, Any]) -> dbc.Row:
    def text(value_id: str, key: str, class_name: str = "") -> html.Span:
        return html.Span(out[key], id=value_id, className=class_name)

    def sub(text: str) -> html.Small:
        return html.Small(text, className="kpi-sub")

    return dbc.Row(
        [
            _kpi(
                "IoT events/s",
                "Sensor readings per second, all devices",
                text(ids.KPI_IOT_RATE, "kpi_iot_rate"),
            ),
            _kpi(
                "Shop events/s", "Website events per second", text(ids.KPI_ACTIVITY_RATE, "kpi_activity_rate")
            ),
            _kpi(
                "Active devices",
                "Devices reporting now / devices known",
                text(ids.KPI_DEVICES_ACTIVE, "kpi_devices_active"),
                sub(" "),
                text(ids.KPI_DEVICES_TOTAL, "kpi_devices_total", "kpi-sub"),
            ),
            _kpi(
                "Alerts · 5 min",
                "Anomalies by severity",
                text(ids.KPI_ALERTS_CRITICAL, "kpi_alerts_critical", "kpi-critical"),
                sub(" crit  "),
                text(ids.KPI_ALERTS_WARNING, "kpi_alerts_warning", "kpi-warning"),
                sub(" warn"),
            ),
            _kpi(
                "Dead letters",
                "Messages the pipeline could not process",
                text(ids.KPI_DEAD_LETTERS, "kpi_dead_letters"),
            ),
            _kpi("Freshness", "Age of the newest event", text(ids.KPI_FRESHNESS, "kpi_freshness")),
            _kpi(
                "Revenue",
                "Revenue over the activity charts' span",
                text(ids.KPI_REVENUE, "kpi_revenue"),
                sub(" "),
                text(ids.KPI_REVENUE_SPAN, "kpi_revenue_span", "kpi-sub"),
            ),
        ],
        className="g-3 kpis",
    )


def _graph(graph_id: str, figure: Any, height_px: int) -> dcc.Graph:
    return dcc.Graph(id=graph_id, figure=figure, config=GRAPH_CONFIG, style={"height": f"{height_px}px"})


def _card(title: Any, body: Any, extra: Any = None, class_name: str = "") -> dbc.Card:
    header = html.Div([html.Div(title, className="card-title-text"), extra], className="panel-header")
    return dbc.Card([header, dbc.CardBody(body, className="panel-body")], className=f"panel {class_name}")


def page(board: Board, requested_device: str | None, settings: DashSettings) -> html.Div:
    """The whole page for `board`."""
    device = choose_device(requested_device, board.devices)
    out, cursor = full_outputs(board, device, settings.dash_chart_points)
    interval_ms = int(settings.dash_poll_interval_s * 1000)

    header = html.Header(
        dbc.Container(
            [
                html.Div(
                    [
                        html.Span(className="brand-dot"),
                        html.Span("Pipeline Live", className="brand-name"),
                        html.Span("IoT sensors · web shop", className="brand-sub"),
                    ],
                    className="brand",
                ),
                html.Div(
                    [
                        dbc.Badge(
                            out["status_text"],
                            id=ids.STATUS,
                            color=out["status_color"],
                            title=out["status_title"],
                            className="status-badge",
                        ),
                        html.Span(out["updated"], id=ids.UPDATED, className="updated"),
                        dbc.Select(
                            id=ids.DEVICE,
                            options=out["device_options"],
                            value=out["device_value"],
                            className="device-select",
                            size="sm",
                        ),
                    ],
                    className="header-tools",
                ),
            ],
            fluid=True,
            className="topbar-inner",
        ),
        className="topbar",
    )

    kpis = _kpis(out)

    gauges = _card(
        ["Latest reading · ", html.Span(out["device_title"], id=ids.DEVICE_TITLE, className="device-name")],
        dbc.Row(
            [
                dbc.Col(
                    _graph(ids.gauge(m), out[f"gauge_{m.value}"], GAUGE_PX),
                    xs=12,
                    md=4,
                )
                for m in Metric
            ],
            className="g-0",
        ),
        class_name="gauges",
    )

    charts = dbc.Row(
        [
            dbc.Col(
                _card(
                    [
                        theme.METRIC_LABEL[m],
                        html.Span(f" {theme.METRIC_UNIT[m]} · 10 s windows", className="unit"),
                    ],
                    _graph(ids.chart(m), out[f"chart_{m.value}"], CHART_PX),
                    html.Div(out[f"trend_{m.value}"], id=ids.trend(m), className="trend"),
                ),
                xs=12,
                lg=4,
            )
            for m in Metric
        ],
        className="g-3",
    )

    alerts = _card(
        "Alerts · newest first",
        dag.AgGrid(
            id=ids.ALERTS,
            columnDefs=ALERT_COLUMNS,
            rowData=out["alerts"],
            getRowId="params.data.alert_id",
            columnSize="responsiveSizeToFit",
            defaultColDef={"sortable": False, "resizable": True, "suppressMovable": True},
            dashGridOptions={
                "theme": {"function": GRID_THEME},
                "animateRows": False,
            },
            style={"height": "330px", "width": "100%"},
        ),
    )
    leaderboard = _card(
        "Top pages by purchases",
        _graph(ids.LEADERBOARD, out["leaderboard"], LEADERBOARD_PX),
    )
    activity = _card(
        "Shop activity · events/s by type",
        _graph(ids.ACTIVITY, out["activity"], ACTIVITY_PX),
    )
    funnel = _card(
        "Newest window · funnel",
        [
            _graph(ids.FUNNEL, out["funnel"], FUNNEL_PX),
            html.Div("Revenue per window", className="sub-title"),
            _graph(ids.REVENUE, out["revenue"], REVENUE_PX),
        ],
    )

    return html.Div(
        [
            header,
            dbc.Container(
                [
                    dbc.Alert(
                        out["banner_text"],
                        id=ids.BANNER,
                        is_open=out["banner_open"],
                        color=out["banner_color"],
                        className="banner",
                    ),
                    kpis,
                    gauges,
                    charts,
                    dbc.Row(
                        [dbc.Col(alerts, xs=12, xl=7), dbc.Col(leaderboard, xs=12, xl=5)], className="g-3"
                    ),
                    dbc.Row([dbc.Col(activity, xs=12, xl=8), dbc.Col(funnel, xs=12, xl=4)], className="g-3"),
                ],
                fluid=True,
                className="content",
            ),
            dcc.Interval(id=ids.INTERVAL, interval=interval_ms),
            dcc.Store(id=ids.TICK),
            dcc.Store(id=ids.ACK),
            dcc.Store(id=ids.CURSOR, data=cursor.to_store()),
            dcc.Store(id=ids.NEW_ALERTS),
            dcc.Store(
                id=ids.CLIENT_CONFIG,
                data={"retry_ms": interval_ms * GATE_RETRY_INTERVALS, "alert_rows": settings.dash_alert_rows},
            ),
        ],
        className="dashboard",
    )
