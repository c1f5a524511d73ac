"""The per-process cache: one Redis read per TTL for every caller, rolling series, outages survived."""

from __future__ import annotations

import asyncio

from dashapp.callbacks.data import LiveData
from dashapp.metrics import DashMetrics
from dashapp.settings import DashSettings
from sinks.layout import Layout
from sinks.reader import AsyncReader
from sinks.records import Metric
from tests.net import free_port
from tests.seed import Fleet, device_ids, window


def run(redis_url, key_prefix, clock, scenario, **settings):
    async def main():
        s = DashSettings(redis_url=redis_url, redis_prefix=key_prefix, **settings)
        reader = AsyncReader.from_url(s.redis_url.get_secret_value(), key_prefix, timeout_s=0.5)
        try:
            return await scenario(LiveData(reader, s, DashMetrics(), clock))
        finally:
            await reader.aclose()

    return asyncio.run(main())


def test_concurrent_callers_share_one_read(redis_url, key_prefix, clock, seeder):
    Fleet(seeder, device_ids(4)).advance(10)

    async def scenario(live):
        views = await asyncio.gather(*(live.view() for _ in range(25)))
        return views, live.reads

    views, reads = run(redis_url, key_prefix, clock, scenario)
    assert all(v is views[0] for v in views)
    assert reads == 2  # the snapshot, then the series of the devices it found
    assert len(views[0].snapshot.devices.series["dev-04", Metric.PRESSURE]) == 10


def test_the_view_is_reused_within_the_ttl_and_reread_after(redis_url, key_prefix, clock, seeder):
    fleet = Fleet(seeder, ["dev-01"])
    fleet.advance(3)

    async def scenario(live):
        first = await live.view()
        fleet.advance(1)
        clock.advance(500)
        cached = await live.view()
        clock.advance(500)
        fresh = await live.view()
        return first, cached, fresh

    first, cached, fresh = run(redis_url, key_prefix, clock, scenario, dash_cache_ttl_s=0.9)
    assert cached is first
    assert len(fresh.snapshot.devices.series["dev-01", Metric.HUMIDITY]) == 4


def test_series_roll_forward_keeping_the_newest_points(redis_url, key_prefix, clock, seeder):
    fleet = Fleet(seeder, ["dev-01"])
    fleet.advance(8)

    async def scenario(live):
        await live.view()
        fleet.advance(3)
        clock.advance(1_000)
        return await live.view()

    view = run(redis_url, key_prefix, clock, scenario, dash_chart_points=5)
    points = view.snapshot.devices.series["dev-01", Metric.TEMPERATURE]
    assert points == [window("dev-01", Metric.TEMPERATURE, i) for i in range(6, 11)]
    assert [a.start_ms for a in view.snapshot.activity] == [
        window("x", Metric.TEMPERATURE, i).start_ms for i in range(6, 11)
    ]


def test_only_a_full_refresh_drops_points_that_left_redis(redis_url, key_prefix, clock, seeder):
    fleet = Fleet(seeder, ["dev-01"])
    fleet.advance(5)
    key = Layout(key_prefix).window_series("10s", "dev-01", Metric.HUMIDITY)

    async def scenario(live):
        await live.view()
        seeder.client.zremrangebyrank(key, 0, 1)  # the retention trim removes the two oldest
        clock.advance(1_000)
        incremental = await live.view()
        clock.advance(60_000)
        full = await live.view()
        return incremental, full

    incremental, full = run(redis_url, key_prefix, clock, scenario, dash_full_refresh_s=30)
    assert len(incremental.snapshot.devices.series["dev-01", Metric.HUMIDITY]) == 5
    assert len(full.snapshot.devices.series["dev-01", Metric.HUMIDITY]) == 3


def test_an_outage_keeps_the_last_data_and_says_since_when(redis_url, key_prefix, clock, seeder):
    Fleet(seeder, ["dev-01"]).advance(3)

    async def scenario(live):
        good = await live.view()
        live._reader = AsyncReader.from_url(f"redis://127.0.0.1:{free_port()}/0", key_prefix, timeout_s=0.5)
        clock.advance(1_000)
        down = await live.view()
        clock.advance(1_000)
        still = await live.view()
        await live._reader.aclose()
        return good, down, still

    good, down, still = run(redis_url, key_prefix, clock, scenario)
    assert down.unavailable is not None
    assert down.snapshot is good.snapshot
    assert down.read_ms == good.read_ms
    assert still.unavailable_since_ms == down.unavailable_since_ms == clock.now_ms - 1_000
