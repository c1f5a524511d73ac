"""Prometheus metrics of the dashboard process, served at /metrics.

Each app gets its own `CollectorRegistry` (tests build several apps in one
process). HTTP request counts and latencies come from
prometheus-fastapi-instrumentator; the rest are the dashboard's own.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

# Ticks are cache hits (~1 ms) or one Redis read (a few ms); the top buckets catch trouble.
_FAST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class DashMetrics:
    """Every metric the dashboard exports, on one registry."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.callback_seconds = Histogram(
            "dashboard_callback_duration_seconds",
            "Server time of a Dash callback.",
            ["callback"],
            buckets=_FAST_BUCKETS,
            registry=r,
        )
        self.redis_read_seconds = Histogram(
            "dashboard_redis_read_duration_seconds",
            "Time of one Redis round trip (a whole query pipeline).",
            ["query"],
            buckets=_FAST_BUCKETS,
            registry=r,
        )
        self.redis_errors = Counter(
            "dashboard_redis_errors_total",
            "Redis reads that failed (Redis unreachable, timed out or refused).",
            ["operation"],
            registry=r,
        )
        self.bad_members = Counter(
            "dashboard_redis_undecodable_members_total",
            "Redis members skipped because they did not decode.",
            registry=r,
        )
        self.cache_requests = Counter(
            "dashboard_cache_requests_total",
            "Dashboard data requests by how they were served: hit, shared (joined a read) or read.",
            ["result"],
            registry=r,
        )
        self.ws_clients = Gauge("dashboard_ws_clients", "Open /ws/live connections.", registry=r)
        self.ws_messages = Counter(
            "dashboard_ws_messages_total",
            "/ws/live notifications: sent to a client, or merged into a later one (throttled).",
            ["result"],
            registry=r,
        )
        self.ws_rejected = Counter(
            "dashboard_ws_rejected_total", "/ws/live connections refused (too many clients).", registry=r
        )

    def exposition(self) -> bytes:
        """The registry in Prometheus text format."""
        return generate_latest(self.registry)
