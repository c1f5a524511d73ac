"""Settings of the dashboard + API process (`python -m dashapp`)."""

from __future__ import annotations

import re

from limits import parse
from pydantic import Field, field_validator

from config.settings import Port, RedisConnection

_WINDOW_NAME = re.compile(r"^[0-9]{1,6}[smh]$")


class DashSettings(RedisConnection):
    """Where the dashboard listens, how it polls Redis and pushes updates, and what it shows."""

    dash_host: str = Field("127.0.0.1", description="Address the dashboard and API listen on.")
    dash_port: Port = Field(8050, description="Port of the dashboard, the API, /metrics and /ws/live.")
    dash_debug: bool = Field(
        False, description="Dash dev tools and tracebacks in responses (never in production)."
    )
    dash_access_log: bool = Field(False, description="Log every HTTP request (uvicorn's access log).")
    dash_poll_interval_s: float = Field(
        1.0, ge=0.1, le=60, description="How often an open page asks for new data, seconds."
    )
    dash_cache_ttl_s: float = Field(
        0.8,
        ge=0,
        le=60,
        description="How long one Redis read serves every open page, seconds (about one poll interval).",
    )
    dash_full_refresh_s: float = Field(
        60.0,
        gt=0,
        description="How often the rolling chart cache re-reads whole series instead of only new points, s.",
    )
    dash_ws_throttle_ms: int = Field(
        100,
        ge=0,
        le=60_000,
        description="Least time between two /ws/live messages to one client; updates in between are merged.",
    )
    dash_ws_max_clients: int = Field(100, ge=1, description="Most /ws/live connections at once.")
    dash_max_request_bytes: int = Field(
        262_144, ge=1024, description="Largest accepted request body, bytes (413 beyond)."
    )
    dash_api_rate_limit: str = Field(
        "600/minute",
        description=(
            "Most /api/ requests one client address may make, as count/period (e.g. 600/minute, "
            "20/second); 429 with Retry-After beyond."
        ),
    )
    dash_redis_timeout_s: float = Field(
        1.0, gt=0, le=30, description="Redis connect and read timeout of the dashboard, seconds."
    )
    dash_chart_window: str = Field("10s", description="Window series the streaming charts show (e.g. 10s).")
    dash_activity_window: str = Field("10s", description="Activity window series the activity charts show.")
    dash_chart_points: int = Field(60, ge=2, le=1000, description="Points kept on each streaming chart.")
    dash_alert_rows: int = Field(50, ge=1, le=1000, description="Rows of the alert table.")
    dash_alert_lookback_s: int = Field(
        300, ge=1, description="Span of the header's alert counts, seconds (5 minutes by default)."
    )
    dash_leaderboard_size: int = Field(10, ge=1, le=100, description="Pages on the purchases leaderboard.")
    dash_stale_after_s: float = Field(
        30.0, gt=0, description="Data older than this (newest event age) is shown as stale, seconds."
    )
    dash_active_device_s: float = Field(
        60.0, gt=0, description="A device counts as active if it reported within this many seconds."
    )
    dash_max_devices: int = Field(
        500, ge=1, description="Most devices the dashboard tracks (in device id order); more are ignored."
    )
    log_level: str = Field("INFO", description="Log level: DEBUG, INFO, WARNING or ERROR.")

    @field_validator("dash_chart_window", "dash_activity_window")
    @classmethod
    def _window_name(cls, value: str) -> str:
        if not _WINDOW_NAME.fullmatch(value):
            raise ValueError("must be a window name like 10s, 60s or 5m")
        return value

    @field_validator("dash_api_rate_limit")
    @classmethod
    def _rate(cls, value: str) -> str:
        try:
            rate = parse(value)
        except ValueError:
            raise ValueError("must be a rate like 600/minute or 20/second") from None
        if rate.amount < 1:
            raise ValueError("must allow at least one request per period")
        return value

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        if value.upper() not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError("must be DEBUG, INFO, WARNING or ERROR")
        return value.upper()
