"""``python -m dashapp``: serve the dashboard, the API, /metrics and /ws/live with uvicorn."""

from __future__ import annotations

import uvicorn

from config.logging import configure_logging
from config.settings import load_settings
from dashapp.app import create_app
from dashapp.settings import DashSettings


def main() -> None:
    """Build the settings, configure logging and serve until interrupted."""
    settings = load_settings(DashSettings)
    configure_logging("dashapp", settings.log_level)
    uvicorn.run(
        create_app(settings),
        host=settings.dash_host,
        port=settings.dash_port,
        log_config=None,  # keep config.logging's handlers: one format for every line
        access_log=settings.dash_access_log,
        server_header=False,
        ws_max_size=65_536,  # /ws/live clients have nothing to send
        timeout_graceful_shutdown=5,
    )


if __name__ == "__main__":
    main()
