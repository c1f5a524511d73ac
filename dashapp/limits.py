"""Request limits: body size (`BodySizeLimit`), request rate per client (`RateLimit`), and `Bypass`.

`Bypass` lets chosen paths skip a middleware (the dashboard's tick skips the HTTP
metrics' route matching).

`BodySizeLimit` is hand-written (about 40 lines): neither Starlette nor uvicorn
limits request bodies. A declared length over the limit is refused with 413
before the app runs; a body without a declared length (chunked) is read here up
to the limit first, then handed to the app, so the app never sees a partial body.

`RateLimit` takes its algorithm and storage from the `limits` library (a moving
window in memory, per client address); only the ASGI glue is ours, because
slowapi's middleware wants a decorator on every route and Dash's routes have none.
"""

from __future__ import annotations

import math
import time

import orjson
from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodySizeLimit:
    """ASGI middleware: 413 for request bodies larger than `max_bytes`."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check the body's size, then pass the request on."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length")
        if declared is not None:
            if not declared.isdigit():
                await _reply(send, 400, "invalid Content-Length")
            elif int(declared) > self.max_bytes:
                await _reply(send, 413, f"request body over {self.max_bytes} bytes")
            else:
                await self.app(scope, receive, send)  # the server enforces the declared length
            return
        if b"chunked" not in headers.get(b"transfer-encoding", b""):
            await self.app(scope, receive, send)  # no body
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client left
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                await _reply(send, 413, f"request body over {self.max_bytes} bytes")
                return
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


class Bypass:
    """ASGI middleware: `middleware` for every request except HTTP requests to `paths`, which skip it."""

    def __init__(self, app: ASGIApp, middleware: Middleware, paths: tuple[str, ...]) -> None:
        self.app = app
        self.paths = frozenset(paths)
        self.wrapped: ASGIApp = middleware.cls(app, *middleware.args, **middleware.kwargs)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on, through the wrapped middleware unless its path is exempt."""
        if scope["type"] == "http" and scope["path"] in self.paths:
            await self.app(scope, receive, send)
        else:
            await self.wrapped(scope, receive, send)


class RateLimit:
    """ASGI middleware: 429 for a client over `rate` requests on paths under `prefixes`.

    Clients are told apart by their address (behind a reverse proxy that is the
    proxy's: limit there, or trust its forwarded header there). The refusal says
    when to come back (``Retry-After``, seconds).
    """

    def __init__(self, app: ASGIApp, rate: str, prefixes: tuple[str, ...]) -> None:
        self.app = app
        self.rate: RateLimitItem = parse(rate)
        self.prefixes = prefixes
        self._limiter = MovingWindowRateLimiter(MemoryStorage())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Count the request against its client's budget; refuse it when spent."""
        if scope["type"] != "http" or not scope["path"].startswith(self.prefixes):
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        who = client[0] if client else "unknown"
        if await self._limiter.hit(self.rate, who):
            await self.app(scope, receive, send)
            return
        stats = await self._limiter.get_window_stats(self.rate, who)
        retry_after = max(1, math.ceil(stats.reset_time - time.time()))
        detail = f"rate limit of {self.rate} per client exceeded; retry in {retry_after} s"
        await _reply(send, 429, detail, [(b"retry-after", str(retry_after).encode())])


async def _reply(
    send: Send, status: int, detail: str, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = orjson.dumps({"detail": detail})
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers.extend(extra or ())
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
