"""Server time and bytes of one dashboard tick, 10 devices (``python -m bench.dash_tick``).

Fills Redis (``PIPELINE_REDIS_URL``, a throwaway key prefix) through the test
seeder with 10 devices x 60 windows, starts the app in-process and posts ticks
exactly as the browser does, in three situations:

* ``read, new window``: the cache expired and every device has a new 10 s window
  (what a page sees once every 10 s);
* ``read, nothing new``: the cache expired, Redis has nothing new for the page;
* ``cache hit``: another page already read Redis within the TTL.

"Server time" is the HTTP round trip through the ASGI app (Dash dispatch,
callback, JSON) without a network; "callback" is the callback alone. Bytes are
the JSON body and, gzip-compressed, what goes over the wire.
"""

from __future__ import annotations

import gzip
import statistics
import time
import uuid
from collections.abc import Callable

import redis
from fastapi.testclient import TestClient

from config.settings import load_settings
from dashapp.app import create_app
from dashapp.settings import DashSettings
from tests.dash_client import initial_cursor, post_tick, tick_body
from tests.seed import T0_MS, WINDOW_MS, Fleet, Seeder, device_ids

DEVICES = 10
ROUNDS = 40


class Clock:
    """The app's wall clock, moved by the benchmark (so cache expiry is exact)."""

    def __init__(self, now_ms: int) -> None:
        self.now_ms = now_ms

    def __call__(self) -> int:
        """Now, epoch ms."""
        return self.now_ms


def measure(
    name: str, rounds: int, before: Callable[[], None], tick: Callable[[int], tuple[float, int, int]]
) -> None:
    times, sizes, wire = [], [], []
    for i in range(rounds):
        before()
        elapsed, size, gz = tick(i)
        times.append(elapsed)
        sizes.append(size)
        wire.append(gz)
    times.sort()
    print(
        f"{name:<22} server {statistics.median(times) * 1000:6.2f} ms median, "
        f"{times[int(len(times) * 0.95) - 1] * 1000:6.2f} ms p95 | "
        f"body {statistics.median(sizes):7.0f} B, gzip {statistics.median(wire):6.0f} B"
    )


def main() -> None:
    base = load_settings(DashSettings)
    prefix = f"bench-{uuid.uuid4().hex[:8]}:"
    settings = DashSettings(redis_url=base.redis_url, redis_prefix=prefix)
    client_redis = redis.Redis.from_url(settings.redis_url.get_secret_value())
    fleet = Fleet(Seeder(client_redis, prefix), device_ids(DEVICES))
    fleet.advance(60)
    clock = Clock(T0_MS + 60 * WINDOW_MS + 500)
    try:
        with TestClient(create_app(settings, clock_ms=clock)) as client:
            dash = client.app.state.dash  # type: ignore[attr-defined]
            layout = client.get("/_dash-layout")
            print(
                f"page load: layout {len(layout.content):,} B JSON, "
                f"{len(gzip.compress(layout.content)):,} B gzip (10 full figures, grid, stores)"
            )
            cursor = [initial_cursor(client)]
            seq = [0]

            def tick(_: int) -> tuple[float, int, int]:
                seq[0] += 1
                body = tick_body(dash, seq[0], "dev-01", cursor[0])
                started = time.perf_counter()
                resp = client.post(
                    "/_dash-update-component", content=body, headers={"content-type": "application/json"}
                )
                elapsed = time.perf_counter() - started
                assert resp.status_code == 200, resp.text
                cursor[0] = resp.json()["response"]["stream-cursor"]["data"]
                return elapsed, len(resp.content), len(gzip.compress(resp.content))

            def new_window() -> None:
                fleet.advance(1, alert_every=0)
                clock.now_ms += WINDOW_MS

            def nothing_new() -> None:
                clock.now_ms += 1_000

            # warm up (imports, first figures)
            for _ in range(3):
                nothing_new()
                tick(0)
            measure("read, new window", ROUNDS, new_window, tick)
            measure("read, nothing new", ROUNDS, nothing_new, tick)
            measure("cache hit", ROUNDS, lambda: None, tick)

            live = client.app.state.runtime.live  # type: ignore[attr-defined]
            metrics = client.get("/metrics").text
            read = [
                line
                for line in metrics.splitlines()
                if line.startswith("dashboard_redis_read_duration_seconds_")
            ]
            count = next(float(x.split()[-1]) for x in read if '_count{query="snapshot"}' in x)
            total = next(float(x.split()[-1]) for x in read if '_sum{query="snapshot"}' in x)
            cb = [
                line
                for line in metrics.splitlines()
                if line.startswith("dashboard_callback_duration_seconds_")
            ]
            cb_count = next(float(x.split()[-1]) for x in cb if "_count" in x)
            cb_sum = next(float(x.split()[-1]) for x in cb if "_sum" in x)
            print(
                f"Redis snapshot read: {total / count * 1000:.2f} ms mean over {count:.0f} reads "
                f"({live.reads} round trips in all); callback alone: {cb_sum / cb_count * 1000:.2f} ms mean"
            )
            one = post_tick(client, dash, seq[0] + 1, "dev-01", cursor[0])
            print(f"a tick with nothing new: {one.body_bytes} B, outputs updated: {len(one.values)}")
    finally:
        keys = list(client_redis.scan_iter(f"{prefix}*"))
        if keys:
            client_redis.delete(*keys)


if __name__ == "__main__":
    main()
