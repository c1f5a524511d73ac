"""The board: KPIs and the pipeline status a page shows, from a view of Redis."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dashapp.callbacks.data import (
    LiveView,
    Status,
    build_board,
    format_age,
    merge_points,
    newest_common_start,
)
from dashapp.settings import DashSettings
from sinks.reader import Snapshot, Unavailable
from sinks.records import CircuitState, Metric
from tests.seed import WINDOW_MS, window
from tests.unit.dashapp.boards import board, snapshot

DEVICES = ["dev-01", "dev-02", "dev-03"]


def test_merge_points_appends_replaces_the_reread_window_and_keeps_the_newest():
    held = [window("d", Metric.TEMPERATURE, i) for i in range(5)]
    reread = window("d", Metric.TEMPERATURE, 4, rng=__import__("random").Random(1))
    new = [reread, window("d", Metric.TEMPERATURE, 5)]

    merged = merge_points(held, new, keep=4)

    assert merged == [held[2], held[3], reread, new[1]]
    assert merge_points(held, [], keep=10) == held


def test_newest_common_start_is_the_oldest_newest_window_of_the_series():
    a = [window("d", Metric.TEMPERATURE, i) for i in range(5)]
    b = [window("d", Metric.HUMIDITY, i) for i in range(3)]
    assert newest_common_start([a, b]) == b[-1].start_ms
    assert newest_common_start([a, []]) is None


def test_a_fresh_board_is_live_with_its_kpis():
    b = board(snapshot(DEVICES, 6, alerts=5))

    assert b.status is Status.LIVE
    assert b.detail == ""
    k = b.kpis
    assert k.devices == k.active_devices == 3
    assert k.iot_events_per_s == pytest.approx(3 * 10 / 10)  # 10 readings per 10 s window, 3 devices
    assert k.activity_events_per_s == snapshot(DEVICES, 6).activity[-1].events_per_s
    assert (k.alerts_critical, k.alerts_warning) == (2, 3)
    assert k.dead_letters == 2
    assert k.freshness_s == pytest.approx(0.999)  # the newest activity window ends 1 ms after the readings
    assert k.revenue_span_s == 6 * WINDOW_MS / 1000


def test_devices_that_stopped_reporting_are_not_active():
    snap = snapshot(DEVICES, 6)
    b = board(snap, now_ms=max(r.event_time for r in snap.latest.values()) + 61_000)
    assert (b.kpis.active_devices, b.kpis.devices) == (0, 3)
    assert b.kpis.iot_events_per_s is None


def test_old_data_is_stale():
    snap = snapshot(DEVICES, 6)
    b = board(snap, now_ms=max(r.event_time for r in snap.latest.values()) + 45_000)
    assert b.status is Status.STALE
    assert "45 s" in b.detail


def test_empty_redis_is_waiting_with_no_numbers():
    b = board(Snapshot.empty(), now_ms=1)
    assert b.status is Status.WAITING
    assert (b.kpis.iot_events_per_s, b.kpis.dead_letters, b.kpis.freshness_s, b.kpis.revenue) == (None,) * 4


@pytest.mark.parametrize("circuit", [CircuitState.OPEN, CircuitState.HALF_OPEN])
def test_an_open_sink_circuit_is_degraded(circuit):
    b = board(snapshot(DEVICES, 3, circuit=circuit))
    assert b.status is Status.DEGRADED
    assert circuit.value.replace("_", "-") in b.detail


def test_unreachable_redis_says_since_when_and_keeps_the_last_data():
    snap = snapshot(DEVICES, 3)
    view = LiveView(snap, 1_000, Unavailable("ConnectionError: refused"), 61_000)
    b = build_board(view, 62_000, DashSettings())
    assert b.status is Status.UNAVAILABLE
    assert "since 00:01:01 UTC" in b.detail
    assert "showing data read at 00:00:01" in b.detail
    assert b.snapshot is snap


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.44, "0.4 s"), (12.4, "12 s"), (185, "3 min 5 s"), (7_800, "2 h 10 min"), (400_000, "4 d")],
)
def test_format_age(seconds, text):
    assert format_age(seconds) == text


def _merge_reference(held, new, keep):
    if new:
        return ([p for p in held if p.start_ms < new[0].start_ms] + list(new))[-keep:]
    return list(held)[-keep:]


@settings(max_examples=200, deadline=None)
@given(
    held=st.lists(st.integers(0, 40), unique=True).map(sorted),
    new=st.lists(st.integers(0, 45), unique=True).map(sorted),
    keep=st.integers(1, 12),
)
def test_merge_points_equals_the_filter_over_every_held_window(held, new, keep):
    # merge_points searches from the end; it must equal dropping every held window from new's first start on.
    held_points = [window("d", Metric.TEMPERATURE, i) for i in held]
    new_points = [window("d", Metric.TEMPERATURE, i, rng=__import__("random").Random(i)) for i in new]

    assert merge_points(held_points, new_points, keep) == _merge_reference(held_points, new_points, keep)
