"""What the running server holds: settings, metrics, and the Redis-facing parts made at start-up.

`create_app` builds one `Runtime`; the app's lifespan opens the reader, the
shared cache and the live-push forwarder on the server's event loop and closes
them at shutdown. Callbacks, routes and the layout function reach them here.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable
from dataclasses import dataclass, field

from dashapp.callbacks.data import Board, LiveData, LiveView, build_board, wall_ms
from dashapp.live_push import Broadcaster
from dashapp.metrics import DashMetrics
from dashapp.settings import DashSettings
from sinks.reader import AsyncReader


class NotStarted(RuntimeError):
    """The app's lifespan has not run (serve it with uvicorn, or use TestClient as a context manager)."""


@dataclass
class Runtime:
    """Process-wide state of the dashboard server."""

    settings: DashSettings
    metrics: DashMetrics
    clock_ms: Callable[[], int] = wall_ms
    reader: AsyncReader | None = None
    live: LiveData | None = None
    broadcaster: Broadcaster = field(init=False)
    loop: asyncio.AbstractEventLoop | None = None

    def __post_init__(self) -> None:
        self.broadcaster = Broadcaster(
            throttle_s=self.settings.dash_ws_throttle_ms / 1000,
            max_clients=self.settings.dash_ws_max_clients,
            metrics=self.metrics,
        )

    def require_reader(self) -> AsyncReader:
        """The reader, once the server started."""
        if self.reader is None:
            raise NotStarted("the dashboard's Redis reader is not open yet")
        return self.reader

    def board_from_thread(self, timeout_s: float) -> Board:
        """The board now, from a worker thread (Dash serves the layout function in one).

        Falls back to the cached view when called before start-up, on the event
        loop's own thread, or when the read takes longer than `timeout_s`.
        """
        view = LiveView.initial() if self.live is None else self.live.cached
        if self.live is not None and self.loop is not None and not self._on_loop_thread():
            future = asyncio.run_coroutine_threadsafe(self.live.view(), self.loop)
            try:
                view = future.result(timeout_s)
            except concurrent.futures.TimeoutError:
                future.cancel()
        return build_board(view, self.clock_ms(), self.settings)

    def _on_loop_thread(self) -> bool:
        try:
            return asyncio.get_running_loop() is self.loop
        except RuntimeError:
            return False
