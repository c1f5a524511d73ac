"""`create_app(settings)`: the one server of the dashboard, the REST API, health, metrics and live push.

A FastAPI app carries the API routers (/api/v1, typed and validated, OpenAPI at
/docs), /health, /ready, /metrics and /ws/live; Dash mounts on the same app with
its FastAPI backend (``Dash(server=app)``), so uvicorn serves everything from one
port. The lifespan opens the Redis reader, the shared data cache and the live
feed's forwarder on the server's event loop, and closes them at shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from dash import Dash
from dash.dash import _default_index
from fastapi import FastAPI, HTTPException, status
from prometheus_fastapi_instrumentator import Instrumentator
from prometheus_fastapi_instrumentator.middleware import PrometheusInstrumentatorMiddleware
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware

from dashapp.api.routes import activity, alerts, devices, health, live, pipeline
from dashapp.callbacks.data import LiveData, wall_ms
from dashapp.callbacks.tick import register_callbacks
from dashapp.layout import page
from dashapp.limits import BodySizeLimit, Bypass, RateLimit
from dashapp.metrics import DashMetrics
from dashapp.runtime import Runtime
from dashapp.settings import DashSettings
from sinks.reader import AsyncReader, log_bad_member

ASSETS = Path(__file__).resolve().parent / "assets"
API_PREFIX = "/api/v1"
DASH_CALLBACK_PATH = "/_dash-update-component"
"""Where the page posts its server tick (Dash's callback route)."""
GZIP_MIN_BYTES = 1400
"""Smallest response body worth compressing: about one Ethernet packet's payload."""
LAYOUT_READ_TIMEOUT_S = 2.0
"""How long a page load waits for fresh data before rendering the cached view."""

FORWARDER_STOP_S = 2.0
"""How long shutdown waits for the live feed's subscription to close."""

INDEX = _default_index.replace("<html>", '<html lang="en" data-bs-theme="dark">', 1)


def create_app(settings: DashSettings, clock_ms: Callable[[], int] = wall_ms) -> FastAPI:
    """The ASGI app (FastAPI) serving the dashboard and the API; run it with uvicorn."""
    metrics = DashMetrics()
    runtime = Runtime(settings, metrics, clock_ms)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        runtime.loop = asyncio.get_running_loop()
        runtime.reader = AsyncReader.from_url(
            settings.redis_url.get_secret_value(),
            settings.redis_prefix,
            timeout_s=settings.dash_redis_timeout_s,
            on_bad_member=_count_bad_member(metrics),
        )
        runtime.live = LiveData(runtime.reader, settings, metrics, clock_ms)
        stop = asyncio.Event()
        forwarder = asyncio.create_task(runtime.broadcaster.forward(runtime.reader, stop), name="live-feed")
        try:
            yield
        finally:
            # A stop signal, not cancel(): see AsyncReader.updates.
            stop.set()
            done, _ = await asyncio.wait({forwarder}, timeout=FORWARDER_STOP_S)
            if not done:
                forwarder.cancel()
            await runtime.reader.aclose()
            runtime.live = runtime.reader = runtime.loop = None

    app = FastAPI(
        title="Real-time analytics API",
        summary="IoT sensor windows, anomalies, trends and web-shop activity, as the pipeline computes them.",
        version="1",
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.runtime = runtime
    app.include_router(health.router)
    for router in (devices.router, alerts.router, activity.router, pipeline.router):
        app.include_router(router, prefix=API_PREFIX)
    app.include_router(live.router)
    # Dash adds a catch-all GET route that answers any unknown path with the page;
    # unknown API paths must stay a JSON 404.
    app.add_api_route("/api/{rest:path}", _api_not_found, include_in_schema=False)
    Instrumentator(registry=metrics.registry, excluded_handlers=["/metrics"]).instrument(app)

    dash_app = Dash(
        "dashapp",
        server=app,  # type: ignore[arg-type]  # Dash's annotation predates its server backends
        backend="fastapi",
        assets_folder=str(ASSETS),
        title="Pipeline Live",
        update_title="",  # no "Updating..." title flicker on every tick
        serve_locally=True,
        compress=False,  # gzip is added below, from a larger body size than Dash's 500 B
    )
    dash_app.index_string = INDEX
    if settings.dash_debug:
        dash_app.enable_dev_tools(debug=True, dev_tools_hot_reload=False)

    def layout() -> object:
        return page(runtime.board_from_thread(LAYOUT_READ_TIMEOUT_S), None, settings)

    dash_app.layout = layout
    register_callbacks(dash_app, runtime)
    _route_first(app, DASH_CALLBACK_PATH)
    _skip_http_metrics(app, DASH_CALLBACK_PATH)
    # From one packet's worth of body: a smaller one goes out in one packet either way,
    # and most ticks are that small.
    app.add_middleware(GZipMiddleware, minimum_size=GZIP_MIN_BYTES)
    app.state.dash = dash_app
    # The API only: probes (/health, /ready, /metrics) must never be refused, and the
    # dashboard's own callbacks are already paced by its interval and client-side gate.
    app.add_middleware(RateLimit, rate=settings.dash_api_rate_limit, prefixes=("/api/",))
    # Outermost (added last), so no body is read past the limit (Dash's middleware reads callback bodies).
    app.add_middleware(BodySizeLimit, max_bytes=settings.dash_max_request_bytes)
    return app


def _skip_http_metrics(app: FastAPI, path: str) -> None:
    """Let requests to `path` skip the HTTP metrics middleware (the instrumentator adds it itself).

    The dashboard's tick, which every page posts every second: the instrumentator
    matches each request against all routes to name it (about a third of the
    middlewares' time per tick), and dashboard_callback_duration_seconds already
    times each tick.
    """
    app.user_middleware = [
        Middleware(Bypass, middleware=m, paths=(path,)) if m.cls is PrometheusInstrumentatorMiddleware else m
        for m in app.user_middleware
    ]


def _route_first(app: FastAPI, path: str) -> None:
    """Move the route of `path` to the front, so a request to it is matched first.

    The router tries its routes in order; the tick is most of the server's requests,
    and Dash registers its routes after the API's.
    """
    routes = app.router.routes
    for i, route in enumerate(routes):
        if getattr(route, "path", None) == path:
            routes.insert(0, routes.pop(i))
            return
    raise LookupError(f"no route {path}")


async def _api_not_found(rest: str) -> None:
    raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no API route /api/{rest}")


def _count_bad_member(metrics: DashMetrics) -> Callable[[str, Exception], None]:
    def hook(key: str, error: Exception) -> None:
        metrics.bad_members.inc()
        log_bad_member(key, error)

    return hook
