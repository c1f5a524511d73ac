"""The REST API (/api/v1), health checks, metrics and the live feed, beside the dashboard on one server."""
