"""Request bodies over the limit are refused with 413 before the app reads them."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from dashapp.limits import BodySizeLimit


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
