"""The writer's pure parts: coalescing the buffer and building the commands of one batch."""

from __future__ import annotations

import pytest

from sinks.layout import Layout, SinkStatus, UpdateKind, decode_update
from sinks.records import CircuitState, Metric, PageTotal, PipelineCounters
from sinks.settings import SinkSettings
from sinks.writer import (
    MAX_ITEMS_PER_SCRIPT_CALL,
    PUT_ALERTS,
    PUT_HASHES_IF_NEWER,
    PUT_LATEST,
    PUT_SERIES,
    PendingWrites,
    build_commands,
)
from tests.sink_samples import T0, activity, alert, live_batch, reading, trend, window


def pending_of(items) -> PendingWrites:
    pending = PendingWrites()
    for item in items:
        pending.add(item)
    return pending


def test_latest_keeps_the_newest_reading_per_device_by_event_time():
    pending = pending_of([reading("a", T0 + 5), reading("a", T0 + 1), reading("b", T0), reading("b", T0 + 2)])
    assert {d: r.event_time for d, r in pending.latest.items()} == {"a": T0 + 5, "b": T0 + 2}


def test_a_trend_keeps_the_newest_per_key_and_the_later_one_on_ties():
    late = trend("a", Metric.HUMIDITY, T0, slope=2.0)
    pending = pending_of(
        [
            trend("a", Metric.HUMIDITY, T0 - 1),
            trend("a", Metric.HUMIDITY, T0, slope=1.0),
            late,
            trend("a", Metric.PRESSURE, T0 - 9),
        ]
    )
    assert pending.trends == {
        ("a", Metric.HUMIDITY): late,
        ("a", Metric.PRESSURE): trend("a", Metric.PRESSURE, T0 - 9),
    }


def test_windows_alerts_totals_and_counters_keep_the_last_per_identity():
    pending = pending_of(
        [
            window("a", Metric.TEMPERATURE, T0, avg=1.0),
            window("a", Metric.TEMPERATURE, T0, avg=2.0),
            window("a", Metric.TEMPERATURE, T0, avg=3.0, window_name="60s"),
            window("a", Metric.TEMPERATURE, T0 + 10_000),
            alert("a", T0, z=3.0, alert_id="ep"),
            alert("a", T0 + 9, z=5.0, alert_id="ep"),
            activity(T0, views=1),
            activity(T0, views=2),
            PageTotal("/x", 1),
            PageTotal("/x", 4),
            PipelineCounters(1, 0, 0, None),
            PipelineCounters(9, 1, 2, T0),
        ]
    )
    assert len(pending.windows) == 3
    assert pending.windows[("10s", "a", Metric.TEMPERATURE, T0)].avg == 2.0
    assert [a.z for a in pending.alerts.values()] == [5.0]
    assert [a.counts for a in pending.activity.values()] == [activity(T0, views=2).counts]
    assert pending.totals == {"/x": PageTotal("/x", 4)}
    assert pending.counters == PipelineCounters(9, 1, 2, T0)
    assert len(pending) == 3 + 1 + 1 + 1 + 1
    assert pending.counts() == {
        UpdateKind.WINDOWS: 3,
        UpdateKind.ALERTS: 1,
        UpdateKind.ACTIVITY: 1,
        UpdateKind.LEADERBOARD: 1,
        UpdateKind.STATS: 1,
    }


def test_anything_else_is_a_clear_type_error():
    with pytest.raises(TypeError, match="cannot write a dict"):
        PendingWrites().add({"device_id": "a"})  # type: ignore[arg-type]


def test_a_batch_is_one_script_call_per_kind():
    settings = SinkSettings(redis_prefix="p:", sink_retention_s=60, sink_alerts_kept=7)
    cmds = build_commands(
        pending_of(live_batch(T0, devices=2)), Layout("p:"), settings, SinkStatus(T0, CircuitState.CLOSED)
    )

    calls = {c[1]: c for c in cmds if c[0] == "EVALSHA"}
    assert [c[0] for c in cmds].count("EVALSHA") == len(calls) == 4
    latest, series, alerts, trends = (
        calls[s.sha] for s in (PUT_LATEST, PUT_SERIES, PUT_ALERTS, PUT_HASHES_IF_NEWER)
    )
    assert latest[2] == 1
    # 2 devices x 3 metrics x 2 window kinds, plus one activity series; then the retention in ms
    assert series[2] == 2 * 3 * 2 + 1
    assert series[3 + series[2]] == 60_000
    assert alerts[2:5] == (1, "p:alerts", 7)
    assert trends[2] == 2 * 3


def test_a_large_backlog_is_split_into_script_calls_of_bounded_size():
    backlog = [window("a", Metric.PRESSURE, T0 + i * 10_000) for i in range(MAX_ITEMS_PER_SCRIPT_CALL + 10)]
    backlog += [window("b", Metric.PRESSURE, T0 + i * 10_000) for i in range(MAX_ITEMS_PER_SCRIPT_CALL // 2)]
    cmds = build_commands(
        pending_of(backlog), Layout("p:"), SinkSettings(), SinkStatus(T0, CircuitState.CLOSED)
    )

    calls = [c for c in cmds if c[:2] == ("EVALSHA", PUT_SERIES.sha)]
    windows_per_call = [
        (len(c) - 3 - c[2] - 1 - c[2]) // 2 for c in calls
    ]  # minus sha, numkeys, keys, retention, counts
    assert windows_per_call == [MAX_ITEMS_PER_SCRIPT_CALL, 10 + MAX_ITEMS_PER_SCRIPT_CALL // 2]
    assert [c[3 : 3 + c[2]] for c in calls] == [
        ("p:iot:agg:10s:a:pressure",),
        ("p:iot:agg:10s:a:pressure", "p:iot:agg:10s:b:pressure"),
    ]


def test_every_key_and_the_channel_come_from_the_layout_under_the_prefix():
    cmds = build_commands(
        pending_of(live_batch(T0)), Layout("p:"), SinkSettings(), SinkStatus(T0, CircuitState.OPEN)
    )
    keys = [k for c in cmds for k in (c[3 : 3 + c[2]] if c[0] == "EVALSHA" else [c[1]])]
    assert all(k.startswith("p:") for k in keys)
    assert keys[-2:] == [Layout("p:").stats(), Layout("p:").updates_channel()]


def test_the_batch_ends_with_the_sink_status_and_one_update():
    cmds = build_commands(
        pending_of([PageTotal("/a", 3)]), Layout("p:"), SinkSettings(), SinkStatus(T0, CircuitState.HALF_OPEN)
    )
    hset, publish = cmds[-2:]
    fields = dict(zip(hset[2::2], hset[3::2], strict=True))
    assert fields == {"last_write_ms": str(T0), "circuit_state": "half_open"}
    update = decode_update(publish[2])
    assert (update.kinds, update.at_ms) == ((UpdateKind.LEADERBOARD, UpdateKind.STATS), T0)


def test_a_large_backlog_of_alerts_is_split_too():
    backlog = [alert(f"d{i}", T0 + i) for i in range(MAX_ITEMS_PER_SCRIPT_CALL + 1)]
    cmds = build_commands(
        pending_of(backlog), Layout("p:"), SinkSettings(), SinkStatus(T0, CircuitState.CLOSED)
    )

    calls = [c for c in cmds if c[:2] == ("EVALSHA", PUT_ALERTS.sha)]
    assert [(len(c) - 5) // 3 for c in calls] == [MAX_ITEMS_PER_SCRIPT_CALL, 1]
