"""The Dash dashboard, REST API, health checks and metrics: one server, read-only on Redis."""
