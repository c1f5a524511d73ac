"""The reader returns what the contract's encodings put in a real Redis, in one round trip."""

from __future__ import annotations

import asyncio

import pytest

from sinks.layout import Layout, Update
from sinks.reader import (
    MAX_KEYS_PER_SCRIPT,
    ActivityQuery,
    AlertsQuery,
    AsyncReader,
    DecodeMemo,
    DevicesQuery,
    LatestQuery,
    LeaderboardQuery,
    PingQuery,
    Reader,
    SeriesQuery,
    Snapshot,
    SnapshotQuery,
    StatsQuery,
    TrendsQuery,
    Unavailable,
)
from sinks.records import CircuitState, Metric, PageTotal, Severity
from tests.net import free_port
from tests.seed import WINDOW_MS, Fleet, Seeder, alert, device_ids, trend, window


@pytest.fixture
def seeder(redis_client, key_prefix):
    return Seeder(redis_client, key_prefix)


@pytest.fixture
def reader(redis_url, key_prefix):
    r = Reader.from_url(redis_url, key_prefix)
    yield r
    r.close()


def snapshot_query(devices, since=None, points=60):
    return SnapshotQuery(
        DevicesQuery("10s", tuple((d, since) for d in devices), points), ActivityQuery("10s", limit=points)
    )


def test_snapshot_holds_everything_the_seeder_wrote(seeder, reader):
    fleet = Fleet(seeder, device_ids(3))
    fleet.advance(7)

    snap = reader.read(snapshot_query(fleet.devices))

    assert isinstance(snap, Snapshot)
    assert list(snap.latest) == fleet.devices
    assert snap.latest["dev-02"].event_time == fleet.newest_start_ms + WINDOW_MS - 1
    for d in fleet.devices:
        for m in Metric:
            points = snap.devices.series[d, m]
            assert [p.start_ms for p in points] == [fleet.t0_ms + i * WINDOW_MS for i in range(7)]
            assert points[-1] == window(d, m, 6, fleet.t0_ms)
            assert snap.devices.trends[d, m].updated_ms == fleet.newest_start_ms
    assert [a.event_time_ms for a in snap.alerts] == sorted(
        (a.event_time_ms for a in snap.alerts), reverse=True
    )
    assert len(snap.alerts) == fleet.alerts_written == 3
    assert [a.start_ms for a in snap.activity] == [fleet.t0_ms + i * WINDOW_MS for i in range(7)]
    assert snap.leaderboard == sorted(snap.leaderboard, key=lambda p: -p.purchases)
    assert {p.page: p.purchases for p in snap.leaderboard} == fleet.purchases
    assert snap.stats.counters.events_in == fleet.events_in
    assert snap.stats.circuit_state is CircuitState.CLOSED
    assert snap.bad_members == 0


def test_empty_redis_reads_as_an_empty_snapshot(reader):
    snap = reader.read(snapshot_query(["dev-01"]))
    assert snap == Snapshot(
        {},
        snap.devices,
        [],
        [],
        [],
        [],
        snap.stats,
    )
    assert snap.devices.series == {("dev-01", m): [] for m in Metric}
    assert snap.devices.trends == {}
    assert snap.stats.counters.events_in == 0


def test_devices_query_since_rereads_the_held_window_and_everything_newer(seeder, reader):
    fleet = Fleet(seeder, ["dev-01"])
    fleet.advance(10)
    held = fleet.t0_ms + 6 * WINDOW_MS

    data = reader.read(DevicesQuery("10s", (("dev-01", held),), points=60))

    assert [p.start_ms for p in data.series["dev-01", Metric.HUMIDITY]] == [
        fleet.t0_ms + i * WINDOW_MS for i in range(6, 10)
    ]


def test_devices_query_over_several_script_calls_matches_one_query_per_series(seeder, reader):
    # More keys than one script call takes: the replies of the calls must line up with the keys.
    devices = device_ids(MAX_KEYS_PER_SCRIPT // len(Metric) + 7)
    fleet = Fleet(seeder, devices)
    fleet.advance(4)
    since = tuple((d, None if i % 2 else fleet.t0_ms + 2 * WINDOW_MS) for i, d in enumerate(devices))

    data = reader.read(DevicesQuery("10s", since, points=3))

    for d, start in since:
        for m in Metric:
            assert data.series[d, m] == reader.read(SeriesQuery("10s", d, m, start_ms=start, limit=3))
            assert data.trends[d, m] == trend(d, m, 3, fleet.t0_ms)
    assert reader.read(TrendsQuery(tuple(devices))) == data.trends


def test_reads_with_a_memo_equal_reads_without_and_see_a_rewritten_window(seeder, reader):
    fleet = Fleet(seeder, device_ids(3))
    fleet.advance(5)
    memo = DecodeMemo(10_000)
    query = snapshot_query(fleet.devices)

    first = reader.read(query, memo)
    again = reader.read(query, memo)
    assert first == again == reader.read(query)
    assert memo.hits > 0
    rewritten = window("dev-02", Metric.HUMIDITY, 4, fleet.t0_ms, rng=__import__("random").Random(9))
    seeder.windows([rewritten])
    fleet.advance(1)
    after = reader.read(query, memo)

    assert after == reader.read(query)
    assert after.devices.series["dev-02", Metric.HUMIDITY][-2] == rewritten


def test_series_query_returns_the_newest_points_of_a_range_oldest_first(seeder, reader):
    Fleet(seeder, ["dev-01"]).advance(20)
    start, end = window("dev-01", Metric.PRESSURE, 5).start_ms, window("dev-01", Metric.PRESSURE, 14).start_ms

    points = reader.read(SeriesQuery("10s", "dev-01", Metric.PRESSURE, start, end, limit=4))

    assert [p.start_ms for p in points] == [
        window("dev-01", Metric.PRESSURE, i).start_ms for i in range(11, 15)
    ]


def test_alerts_query_filters_by_severity_and_device_newest_first(seeder, reader):
    alerts = [
        alert(d, Metric.TEMPERATURE, i, sev)
        for i, (d, sev) in enumerate(
            [("dev-01", Severity.WARNING), ("dev-02", Severity.CRITICAL), ("dev-01", Severity.CRITICAL)] * 4
        )
    ]
    seeder.alerts(alerts)

    critical = reader.read(AlertsQuery(limit=3, severity=Severity.CRITICAL))
    assert [a.alert_id for a in critical] == [
        a.alert_id for a in reversed(alerts) if a.severity is Severity.CRITICAL
    ][:3]
    dev1_critical = reader.read(AlertsQuery(limit=100, severity=Severity.CRITICAL, device_id="dev-01"))
    assert len(dev1_critical) == 4
    assert {a.device_id for a in dev1_critical} == {"dev-01"}
    recent = reader.read(AlertsQuery(limit=100, since_ms=alerts[9].event_time_ms))
    assert [a.alert_id for a in recent] == [a.alert_id for a in reversed(alerts[9:])]


def test_leaderboard_is_ordered_by_absolute_purchases_and_limited(seeder, reader):
    seeder.page_totals([PageTotal("/a", 3), PageTotal("/b", 9), PageTotal("/c", 5)])
    seeder.page_totals([PageTotal("/a", 12)])  # an absolute total replaces, never adds

    assert reader.read(LeaderboardQuery(2)) == [PageTotal("/a", 12), PageTotal("/b", 9)]


def test_a_corrupt_member_is_skipped_and_reported_not_raised(seeder, redis_url, key_prefix):
    Fleet(seeder, ["dev-01"]).advance(3)
    key = Layout(key_prefix).window_series("10s", "dev-01", Metric.TEMPERATURE)
    seeder.raw_member(key, b"{not json", 5)
    seeder.client.hset(Layout(key_prefix).latest(), "dev-09", b'{"device_id": "dev-09"}')
    reported = []
    reader = Reader.from_url(redis_url, key_prefix)
    reader._on_bad_member = lambda k, e: reported.append(k)

    snap = reader.read(snapshot_query(["dev-01"]))

    assert len(snap.devices.series["dev-01", Metric.TEMPERATURE]) == 3
    assert list(snap.latest) == ["dev-01"]
    assert snap.bad_members == 2
    assert sorted(reported) == sorted([key, Layout(key_prefix).latest()])


def test_unreachable_redis_is_an_unavailable_value_not_an_exception():
    reader = Reader.from_url(f"redis://127.0.0.1:{free_port()}/0", "x:", timeout_s=0.5)

    for query in (PingQuery(), LatestQuery(), StatsQuery(), snapshot_query(["dev-01"])):
        result = reader.read(query)
        assert isinstance(result, Unavailable)
        assert "Connection" in result.reason


def test_async_reader_reads_and_reports_unavailability(seeder, redis_url, key_prefix):
    Fleet(seeder, device_ids(2)).advance(2)

    async def scenario():
        good = AsyncReader.from_url(redis_url, key_prefix)
        bad = AsyncReader.from_url(f"redis://127.0.0.1:{free_port()}/0", key_prefix, timeout_s=0.5)
        try:
            return await good.read(snapshot_query(device_ids(2))), await bad.read(PingQuery())
        finally:
            await good.aclose()
            await bad.aclose()

    snap, down = asyncio.run(scenario())
    assert list(snap.latest) == device_ids(2)
    assert isinstance(down, Unavailable)


def test_updates_yield_every_published_notification(seeder, redis_url, key_prefix):
    async def scenario():
        reader = AsyncReader.from_url(redis_url, key_prefix)
        stream = reader.updates()
        received = []
        try:
            first = asyncio.ensure_future(anext(stream))
            # Publish until the subscription is in place (publish returns the subscriber count).
            async with asyncio.timeout(10):
                while await asyncio.to_thread(seeder.publish, "iot", at_ms=1) == 0:
                    await asyncio.sleep(0.02)
                received.append(await first)
                await asyncio.to_thread(seeder.publish, "alerts", "stats", at_ms=2)
                while received[-1].at_ms != 2:
                    received.append(await anext(stream))
        finally:
            await stream.aclose()
            await reader.aclose()
        return received

    received = asyncio.run(scenario())
    assert received[0] == Update(("iot",), 1)
    assert received[-1] == Update(("alerts", "stats"), 2)


def test_updates_report_an_outage_then_keep_trying():
    async def scenario():
        reader = AsyncReader.from_url(f"redis://127.0.0.1:{free_port()}/0", "x:", timeout_s=0.5)
        stream = reader.updates(retry_s=0.01)
        try:
            async with asyncio.timeout(10):
                return [await anext(stream), await anext(stream)]
        finally:
            await stream.aclose()
            await reader.aclose()

    assert all(isinstance(item, Unavailable) for item in asyncio.run(scenario()))
