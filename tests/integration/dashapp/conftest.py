"""A dashboard app on the real Redis, with a clock the test moves."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import uvicorn
from fastapi.testclient import TestClient

from dashapp.app import create_app
from dashapp.settings import DashSettings
from tests.net import free_port
from tests.seed import T0_MS, WINDOW_MS, Seeder


class Clock:
    """Wall clock in epoch ms that only moves when told."""

    def __init__(self, now_ms: int) -> None:
        self.now_ms = now_ms

    def __call__(self) -> int:
        return self.now_ms

    def advance(self, ms: int) -> None:
        self.now_ms += ms


@pytest.fixture
def clock() -> Clock:
    # Just after the 60th seeded window: a fleet advanced 60 times is fresh.
    return Clock(T0_MS + 60 * WINDOW_MS + 500)


@pytest.fixture
def seeder(redis_client, key_prefix) -> Seeder:
    return Seeder(redis_client, key_prefix)


@pytest.fixture
def make_client(redis_url, key_prefix, clock) -> Iterator[Callable[..., TestClient]]:
    """Factory of started apps (lifespan run) on the test's key prefix; closed after the test."""
    clients: list[TestClient] = []

    def make(**overrides: Any) -> TestClient:
        settings = DashSettings(
            redis_url=overrides.pop("redis_url", redis_url), redis_prefix=key_prefix, **overrides
        )
        client = TestClient(create_app(settings, clock_ms=clock))
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def serve_app(redis_url, key_prefix) -> Iterator[Callable[..., str]]:
    """Factory of apps served by a real uvicorn on loopback (for WebSockets); returns the base URL."""
    servers: list[tuple[uvicorn.Server, threading.Thread]] = []

    def serve(**overrides: Any) -> str:
        settings = DashSettings(redis_url=redis_url, redis_prefix=key_prefix, **overrides)
        port = free_port()
        server = uvicorn.Server(
            uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_config=None)
        )
        thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
        thread.start()
        servers.append((server, thread))
        deadline = time.monotonic() + 20
        while not server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            assert thread.is_alive(), "uvicorn exited during start-up"
            time.sleep(0.02)
        return f"127.0.0.1:{port}"

    yield serve
    for server, thread in servers:
        server.should_exit = True
        thread.join(timeout=10)
