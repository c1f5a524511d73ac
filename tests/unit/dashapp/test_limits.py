"""Request bodies over the limit are refused with 413; clients over the rate with 429."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dashapp.limits import BodySizeLimit, Bypass, RateLimit


async def echo(request: Request) -> JSONResponse:
    return JSONResponse({"bytes": len(await request.body())})


def client(limit: int) -> TestClient:
    app = Starlette(routes=[Route("/", echo, methods=["POST"])])
    return TestClient(BodySizeLimit(app, limit))


def test_a_body_within_the_limit_passes():
    assert client(100).post("/", content=b"x" * 100).json() == {"bytes": 100}


def test_a_declared_length_over_the_limit_is_refused():
    resp = client(100).post("/", content=b"x" * 101)
    assert resp.status_code == 413
    assert "100 bytes" in resp.json()["detail"]


def test_a_chunked_body_over_the_limit_is_refused():
    def chunks():
        for _ in range(10):
            yield b"x" * 50

    resp = client(100).post("/", content=chunks())
    assert resp.status_code == 413


def test_a_malformed_content_length_is_a_bad_request():
    resp = client(100).post("/", content=b"x", headers={"content-length": "ten"})
    assert resp.status_code == 400


def test_a_chunked_body_within_the_limit_reaches_the_app_whole():
    def chunks():
        for _ in range(4):
            yield b"x" * 25

    assert client(100).post("/", content=chunks()).json() == {"bytes": 100}


def rate_limited(rate: str) -> TestClient:
    async def ok(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    app = Starlette(routes=[Route("/api/x", ok), Route("/health", ok)])
    return TestClient(RateLimit(app, rate, prefixes=("/api/",)))


def test_a_client_over_the_rate_is_refused_with_429_and_told_when_to_retry():
    api = rate_limited("3/minute")
    assert [api.get("/api/x").status_code for _ in range(3)] == [200, 200, 200]
    refused = api.get("/api/x")
    assert refused.status_code == 429
    assert "3 per 1 minute" in refused.json()["detail"]
    assert 1 <= int(refused.headers["retry-after"]) <= 60


def test_paths_outside_the_limited_prefixes_are_never_refused():
    api = rate_limited("1/minute")
    api.get("/api/x")
    assert api.get("/api/x").status_code == 429
    assert all(api.get("/health").status_code == 200 for _ in range(5))


def test_each_client_address_has_its_own_budget():
    async def ok(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    app = RateLimit(Starlette(routes=[Route("/api/x", ok)]), "1/minute", prefixes=("/api/",))
    first = TestClient(app, client=("10.0.0.1", 1000))
    second = TestClient(app, client=("10.0.0.2", 1000))
    assert first.get("/api/x").status_code == 200
    assert first.get("/api/x").status_code == 429
    assert second.get("/api/x").status_code == 200


class Tagging:
    """A middleware that marks the responses it saw."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def tagged(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message["headers"], (b"x-seen", b"yes")]}
            await send(message)

        await self.app(scope, receive, tagged)


def bypassing(paths: tuple[str, ...]) -> TestClient:
    async def ok(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    app = Starlette(routes=[Route("/tick", ok, methods=["POST"]), Route("/tick/more", ok), Route("/api", ok)])
    return TestClient(Bypass(app, Middleware(Tagging), paths=paths))


def test_a_bypassed_path_skips_the_middleware_and_still_reaches_the_app():
    resp = bypassing(("/tick",)).post("/tick")
    assert resp.json() == {"ok": True}
    assert "x-seen" not in resp.headers


def test_other_paths_go_through_the_bypassed_middleware():
    client = bypassing(("/tick",))
    assert client.get("/api").headers["x-seen"] == "yes"
    assert client.get("/tick/more").headers["x-seen"] == "yes"  # exact paths, not prefixes
