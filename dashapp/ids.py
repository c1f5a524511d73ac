"""Every component id of the dashboard, in one namespace (layout and callbacks import them from here)."""

from __future__ import annotations

from sinks.records import Metric

# timing and client state
INTERVAL = "tick-interval"
TICK = "tick"
"""Store: ``{"seq": n, "at": ms}``, set by the client-side gate when a new read may start."""
ACK = "tick-ack"
"""Store: the ``seq`` of the last tick the server answered."""
CURSOR = "stream-cursor"
"""Store: what the page already shows (see `callbacks.stream.Cursor`)."""
CLIENT_CONFIG = "client-config"

# header
STATUS = "pipeline-status"
UPDATED = "updated-at"
BANNER = "degraded-banner"
DEVICE = "device-select"

# KPI values
KPI_IOT_RATE = "kpi-iot-rate"
KPI_ACTIVITY_RATE = "kpi-activity-rate"
KPI_DEVICES_ACTIVE = "kpi-devices-active"
KPI_DEVICES_TOTAL = "kpi-devices-total"
KPI_ALERTS_CRITICAL = "kpi-alerts-critical"
KPI_ALERTS_WARNING = "kpi-alerts-warning"
KPI_DEAD_LETTERS = "kpi-dead-letters"
KPI_FRESHNESS = "kpi-freshness"
KPI_REVENUE = "kpi-revenue"
KPI_REVENUE_SPAN = "kpi-revenue-span"

# device panels
DEVICE_TITLE = "device-title"

# activity and leaderboard
ALERTS = "alerts-grid"
NEW_ALERTS = "alerts-new"
"""Store: ``{"seq": n, "rows": [...]}``, alert rows new to the page; merged into the grid client-side."""
ACTIVITY = "activity-chart"
REVENUE = "revenue-chart"
FUNNEL = "funnel-chart"
LEADERBOARD = "leaderboard"


def gauge(metric: Metric) -> str:
    """Gauge of one metric of the selected device."""
    return f"gauge-{metric.value}"


def chart(metric: Metric) -> str:
    """Streaming window chart of one metric."""
    return f"chart-{metric.value}"


def trend(metric: Metric) -> str:
    """Trend badge beside a metric's chart."""
    return f"trend-{metric.value}"
