"""The dashboard's look: palette, plotly template, gauge scales.

The palette mirrors the CSS variables in ``assets/02_dashboard.css`` (keep them in
step): charts are drawn by plotly.js, which can't read CSS variables. The template
is deliberately small, because plotly embeds it in every full figure it sends.
"""

from __future__ import annotations

from dataclasses import dataclass

import plotly.graph_objects as go

from sinks.records import EventType, Metric, Severity

FONT = 'system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif'
BG = "#0b1020"
SURFACE = "#121a2e"
SURFACE_2 = "#1a2440"
BORDER = "#26314f"
GRID = "rgba(139, 151, 179, 0.14)"
TEXT = "#e6ebf5"
MUTED = "#8b97b3"

OK = "#34d399"
WARNING = "#fbbf24"
CRITICAL = "#f87171"
INFO = "#60a5fa"

METRIC_COLOR = {Metric.TEMPERATURE: "#ff8a5b", Metric.HUMIDITY: "#4cc9f0", Metric.PRESSURE: "#a78bfa"}
METRIC_LABEL = {Metric.TEMPERATURE: "Temperature", Metric.HUMIDITY: "Humidity", Metric.PRESSURE: "Pressure"}
METRIC_UNIT = {Metric.TEMPERATURE: "°C", Metric.HUMIDITY: "%", Metric.PRESSURE: "hPa"}
METRIC_DIGITS = {Metric.TEMPERATURE: 1, Metric.HUMIDITY: 1, Metric.PRESSURE: 0}

EVENT_COLOR = {
    EventType.PAGE_VIEW: "#60a5fa",
    EventType.CLICK: "#34d399",
    EventType.ADD_TO_CART: "#fbbf24",
    EventType.PURCHASE: "#f472b6",
}
EVENT_LABEL = {
    EventType.PAGE_VIEW: "page views",
    EventType.CLICK: "clicks",
    EventType.ADD_TO_CART: "add to cart",
    EventType.PURCHASE: "purchases",
}

SEVERITY_COLOR = {Severity.NONE: MUTED, Severity.WARNING: WARNING, Severity.CRITICAL: CRITICAL}


def with_alpha(hex_color: str, alpha: float) -> str:
    """``#rrggbb`` as an ``rgba()`` string with opacity `alpha` (0..1)."""
    r, g, b = (int(hex_color[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r}, {g}, {b}, {alpha})"


TEMPLATE = go.layout.Template(
    layout={
        "paper_bgcolor": "rgba(0,0,0,0)",
        "plot_bgcolor": "rgba(0,0,0,0)",
        "font": {"family": FONT, "color": TEXT, "size": 12},
        "colorway": [INFO, OK, WARNING, "#f472b6", *METRIC_COLOR.values()],
        "xaxis": {
            "gridcolor": GRID,
            "linecolor": BORDER,
            "zeroline": False,
            "automargin": True,
            "tickfont": {"color": MUTED},
        },
        "yaxis": {
            "gridcolor": GRID,
            "linecolor": BORDER,
            "zeroline": False,
            "automargin": True,
            "tickfont": {"color": MUTED},
        },
        "hoverlabel": {"bgcolor": SURFACE_2, "bordercolor": BORDER, "font": {"color": TEXT}},
        "legend": {"font": {"color": MUTED}, "bgcolor": "rgba(0,0,0,0)"},
        "margin": {"l": 44, "r": 12, "t": 8, "b": 28},
    }
)


@dataclass(frozen=True, slots=True)
class GaugeScale:
    """Axis and bands of a metric's gauge, in the metric's unit.

    Inside [warn_low, warn_high] is normal; between a warning and a critical bound
    is a warning; beyond a critical bound is critical. These are display bands for
    people; anomaly alerts come from the pipeline's z-scores, not from here.
    """

    low: float
    high: float
    crit_low: float
    warn_low: float
    warn_high: float
    crit_high: float

    def severity(self, value: float) -> Severity:
        """Which band `value` falls in."""
        if value < self.crit_low or value > self.crit_high:
            return Severity.CRITICAL
        if value < self.warn_low or value > self.warn_high:
            return Severity.WARNING
        return Severity.NONE


GAUGE_SCALES = {
    # Indoor climate of a building or a server room.
    Metric.TEMPERATURE: GaugeScale(-10, 50, 5, 15, 28, 35),
    Metric.HUMIDITY: GaugeScale(0, 100, 15, 25, 65, 80),
    # Sea-level air pressure; storms fall below ~980 hPa.
    Metric.PRESSURE: GaugeScale(940, 1060, 970, 990, 1035, 1045),
}
