"""The writer against the real Redis: layout, idempotency, retention, caps, notifications."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator

import pytest
import redis
from redis.connection import AbstractConnection

from sinks.layout import (
    Layout,
    UpdateKind,
    decode_activity,
    decode_alert,
    decode_latest,
    decode_stats,
    decode_trend,
    decode_update,
    decode_window_stats,
)
from sinks.records import CircuitState, Metric, PageTotal, PipelineCounters
from sinks.settings import SinkSettings
from sinks.writer import RedisWriter
from tests.sink_samples import T0, activity, alert, dump, live_batch, reading, trend, window

NOW_MS = 1_800_000_000_000

MakeWriter = Callable[..., RedisWriter]


@pytest.fixture
def make_writer(redis_url: str, key_prefix: str, redis_client: redis.Redis) -> Iterator[MakeWriter]:
    """Factory of set-up writers on the live Redis under the test's key prefix."""
    writers: list[RedisWriter] = []

    def make(**overrides: object) -> RedisWriter:
        settings = SinkSettings(redis_url=redis_url, redis_prefix=key_prefix, **overrides)
        writer = RedisWriter(settings, now_ms=lambda: NOW_MS)
        writer.setup()
        writers.append(writer)
        return writer

    yield make
    for writer in writers:
        writer.close()


def write(writer: RedisWriter, items: list) -> dict[UpdateKind, int]:
    writer.add(items)
    return writer.flush()


def test_every_record_kind_lands_in_the_layout_and_decodes_back(make_writer, redis_client, key_prefix):
    writer = make_writer()
    lay = Layout(key_prefix)
    r = reading("dev-1", T0)
    ws = window("dev-1", Metric.HUMIDITY, T0, avg=44.5)
    tr = trend("dev-1", Metric.PRESSURE, T0, slope=-0.25)
    al = alert("dev-1", T0 + 5)
    aw = activity(T0)
    counters = PipelineCounters(events_in=1234, dead_letters=3, late_events=7, last_event_ms=T0 + 9)

    written = write(writer, [r, ws, tr, al, aw, PageTotal("/checkout", 12), counters])

    assert written == {kind: 1 for kind in UpdateKind}
    assert decode_latest(redis_client.hget(lay.latest(), "dev-1")) == r
    [(member, score)] = redis_client.zrange(
        lay.window_series("10s", "dev-1", "humidity"), 0, -1, withscores=True
    )
    assert (decode_window_stats(member, "10s", "dev-1", "humidity"), score) == (ws, T0)
    assert decode_trend(redis_client.hgetall(lay.trend("dev-1", "pressure")), "dev-1", "pressure") == tr
    [(member, score)] = redis_client.zrange(lay.alerts(), 0, -1, withscores=True)
    assert (decode_alert(member), score) == (al, T0 + 5)
    [(member, score)] = redis_client.zrange(lay.activity_series("10s"), 0, -1, withscores=True)
    assert (decode_activity(member, "10s"), score) == (aw, T0)
    assert redis_client.zrange(lay.leaderboard(), 0, -1, withscores=True) == [(b"/checkout", 12.0)]
    stats = decode_stats(redis_client.hgetall(lay.stats()))
    assert (stats.counters, stats.last_write_ms, stats.circuit_state) == (
        counters,
        NOW_MS,
        CircuitState.CLOSED,
    )
    assert len(writer.pending) == 0


def test_writing_the_same_batch_twice_leaves_identical_content(make_writer, redis_client, key_prefix):
    writer = make_writer()
    batch = live_batch(T0) + live_batch(T0 + 10_000)
    write(writer, batch)
    first = dump(redis_client, key_prefix)

    write(writer, batch)

    assert dump(redis_client, key_prefix) == first
    assert len(first) > 20  # latest, windows, trends, alerts, activity, leaderboard, stats


def test_a_re_emitted_window_with_new_content_replaces_the_old_one(make_writer, redis_client, key_prefix):
    writer = make_writer()
    key = Layout(key_prefix).window_series("10s", "dev-1", Metric.TEMPERATURE)
    write(
        writer,
        [window("dev-1", Metric.TEMPERATURE, T0, avg=20.0), window("dev-1", Metric.TEMPERATURE, T0 + 10_000)],
    )

    write(writer, [window("dev-1", Metric.TEMPERATURE, T0, avg=25.0)])

    members = redis_client.zrange(key, 0, -1, withscores=True)
    assert [(decode_window_stats(m, "10s", "dev-1", "temperature").avg, s) for m, s in members] == [
        (25.0, T0),
        (21.0, T0 + 10_000),
    ]


def test_an_updated_alert_replaces_its_episode_and_leaves_the_others(make_writer, redis_client, key_prefix):
    writer = make_writer()
    key = Layout(key_prefix).alerts()
    other = alert("dev-2", T0 + 1)
    write(writer, [alert("dev-1", T0, z=3.1, alert_id="dev-1:temperature:ep1"), other])

    # A higher peak later in the same episode (same id, new score), then a replay of it.
    peak = alert("dev-1", T0 + 3_000, z=5.5, alert_id="dev-1:temperature:ep1")
    write(writer, [peak])
    write(writer, [peak])

    stored = [(decode_alert(m), s) for m, s in redis_client.zrange(key, 0, -1, withscores=True)]
    assert stored == [(other, T0 + 1), (peak, T0 + 3_000)]


def test_alert_ids_that_share_a_beginning_are_different_episodes(make_writer, redis_client, key_prefix):
    writer = make_writer()
    write(
        writer, [alert("d", T0, alert_id="d:temperature:1"), alert("d", T0 + 1, alert_id="d:temperature:10")]
    )
    write(writer, [alert("d", T0 + 2, z=6.0, alert_id="d:temperature:1")])

    ids = sorted(decode_alert(m).alert_id for m in redis_client.zrange(Layout(key_prefix).alerts(), 0, -1))
    assert ids == ["d:temperature:1", "d:temperature:10"]


def test_alerts_are_capped_to_the_newest_n(make_writer, redis_client, key_prefix):
    writer = make_writer(sink_alerts_kept=5)
    write(writer, [alert(f"dev-{i}", T0 + i) for i in range(4)])
    write(writer, [alert(f"dev-{i}", T0 + i) for i in range(4, 9)])

    kept = [decode_alert(m).event_time_ms for m in redis_client.zrange(Layout(key_prefix).alerts(), 0, -1)]
    assert kept == [T0 + i for i in range(4, 9)]


def test_latest_never_goes_back_in_event_time(make_writer, redis_client, key_prefix):
    writer = make_writer()
    key = Layout(key_prefix).latest()
    write(writer, [reading("dev-1", T0 + 5_000, 30.0), reading("dev-2", T0, 10.0)])

    # A replay of older readings (after a crash), in one batch with a newer one of dev-2.
    write(
        writer,
        [reading("dev-1", T0, 20.0), reading("dev-2", T0 + 7_000, 12.0), reading("dev-2", T0 + 1, 11.0)],
    )

    latest = {k.decode(): decode_latest(v) for k, v in redis_client.hgetall(key).items()}
    assert {d: (r.event_time, r.temperature) for d, r in latest.items()} == {
        "dev-1": (T0 + 5_000, 30.0),
        "dev-2": (T0 + 7_000, 12.0),
    }


def test_a_trend_never_goes_back_in_event_time(make_writer, redis_client, key_prefix):
    writer = make_writer()
    key = Layout(key_prefix).trend("dev-1", Metric.TEMPERATURE)
    newer = trend("dev-1", Metric.TEMPERATURE, T0 + 60_000, slope=1.5)
    write(writer, [newer])

    write(writer, [trend("dev-1", Metric.TEMPERATURE, T0, slope=-3.0)])

    assert decode_trend(redis_client.hgetall(key), "dev-1", "temperature") == newer


def test_the_leaderboard_holds_absolute_totals(make_writer, redis_client, key_prefix):
    writer = make_writer()
    write(writer, [PageTotal("/a", 5), PageTotal("/b", 1)])
    write(writer, [PageTotal("/a", 7), PageTotal("/a", 8)])
    write(writer, [PageTotal("/a", 8)])  # a replay

    board = redis_client.zrevrange(Layout(key_prefix).leaderboard(), 0, -1, withscores=True)
    assert board == [(b"/a", 8.0), (b"/b", 1.0)]


def test_series_are_trimmed_to_the_retention_behind_their_newest_window(
    make_writer, redis_client, key_prefix
):
    writer = make_writer(sink_retention_s=30)
    lay = Layout(key_prefix)
    write(writer, [window("dev-1", Metric.PRESSURE, T0 + i * 10_000) for i in range(5)])
    write(writer, [activity(T0 + i * 10_000) for i in range(5)])
    # Historic data replayed later is trimmed against the newest window, not the wall clock.
    write(writer, [window("dev-1", Metric.PRESSURE, T0 - 100_000), activity(T0 - 100_000)])

    starts = [T0 + i * 10_000 for i in (2, 3, 4)]  # within 30 s behind the newest start
    assert [
        s
        for _, s in redis_client.zrange(lay.window_series("10s", "dev-1", "pressure"), 0, -1, withscores=True)
    ] == starts
    assert [s for _, s in redis_client.zrange(lay.activity_series("10s"), 0, -1, withscores=True)] == starts


def test_each_flush_publishes_one_update_naming_what_changed(make_writer, redis_client, key_prefix):
    writer = make_writer()
    pubsub = redis_client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(Layout(key_prefix).updates_channel())
    pubsub.get_message(timeout=1.0)  # the subscription is active once Redis confirmed it

    write(writer, [reading("dev-1", T0), alert("dev-1", T0)])
    write(writer, [PageTotal("/a", 1)])

    messages = []
    deadline = time.monotonic() + 5
    while len(messages) < 2 and time.monotonic() < deadline:
        message = pubsub.get_message(timeout=0.5)
        if message is not None:
            messages.append(decode_update(message["data"]))
    pubsub.close()
    assert [(set(u.kinds), u.at_ms) for u in messages] == [
        ({UpdateKind.LATEST, UpdateKind.ALERTS, UpdateKind.STATS}, NOW_MS),
        ({UpdateKind.LEADERBOARD, UpdateKind.STATS}, NOW_MS),
    ]


def test_a_batch_is_written_in_one_round_trip(make_writer, monkeypatch):
    writer = make_writer()
    write(writer, live_batch(T0))  # connected, scripts known
    sends = 0
    original = AbstractConnection.send_packed_command

    def counting(self, command, check_health=True):
        nonlocal sends
        sends += 1
        return original(self, command, check_health)

    monkeypatch.setattr(AbstractConnection, "send_packed_command", counting)

    written = write(writer, live_batch(T0 + 10_000, devices=20, pages=10))

    assert sum(written.values()) > 200
    assert sends == 1


def test_scripts_are_loaded_again_when_redis_forgot_them(make_writer, redis_client, key_prefix):
    writer = make_writer()
    redis_client.script_flush()  # what a Redis restart does to the script cache

    write(writer, [window("dev-1", Metric.HUMIDITY, T0), reading("dev-1", T0)])

    assert redis_client.zcard(Layout(key_prefix).window_series("10s", "dev-1", "humidity")) == 1
    assert redis_client.hlen(Layout(key_prefix).latest()) == 1


def test_a_failed_flush_keeps_the_buffer_for_the_next_one(key_prefix):
    # A port nothing listens on: the write fails for real (connection refused).
    unreachable = SinkSettings(
        redis_url="redis://127.0.0.1:1/0", redis_prefix=key_prefix, sink_retries=1, sink_backoff_base_s=0.001
    )
    writer = RedisWriter(unreachable)
    writer.setup()
    writer.add(live_batch(T0))
    buffered = len(writer.pending)

    with pytest.raises(redis.ConnectionError):
        writer.flush()

    assert len(writer.pending) == buffered
    writer.close()


def test_an_alert_keeps_its_place_by_episode_start_as_its_peak_grows(make_writer, redis_client, key_prefix):
    writer = make_writer(sink_alerts_kept=2)
    key = Layout(key_prefix).alerts()
    onset = dataclasses.replace(alert("dev-1", T0, z=3.1, alert_id="dev-1:temperature:ep"), started_ms=T0)
    write(writer, [onset, alert("dev-2", T0 + 10), alert("dev-3", T0 + 20)])
    assert [decode_alert(m).device_id for m in redis_client.zrange(key, 0, -1)] == ["dev-2", "dev-3"]

    # The trimmed episode grows a later peak: it still sorts (and is trimmed) by its start,
    # so what is kept does not depend on when the update was written.
    grown = dataclasses.replace(onset, z=6.0, event_time_ms=T0 + 30)
    write(writer, [grown])
    assert [(decode_alert(m).device_id, s) for m, s in redis_client.zrange(key, 0, -1, withscores=True)] == [
        ("dev-2", T0 + 10),
        ("dev-3", T0 + 20),
    ]
