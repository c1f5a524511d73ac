"""A tick sends only what changed since the page's cursor; a lost answer loses no point."""

from __future__ import annotations

import pytest
from dash import no_update
from dash._utils import to_json

from dashapp.callbacks.stream import (
    Cursor,
    alerts_since,
    choose_device,
    full_outputs,
    points_since,
    tick_outputs,
)
from dashapp.callbacks.tick import OUTPUTS
from sinks.records import Metric
from tests.seed import window
from tests.unit.dashapp.boards import board, snapshot

KEEP = 60
DEVICES = ["dev-01", "dev-02"]


def test_cursor_survives_the_browser_store_round_trip():
    cursor = Cursor("dev-01", {"temperature": 5, "humidity": 6}, 7, "s", 8, "a|2", "p=1", "dev-01")
    assert Cursor.from_store(to_json(cursor.to_store()) and cursor.to_store()) == cursor


@pytest.mark.parametrize("stored", [None, "junk", {"series": {"voltage": 1}}, {"activity": "soon"}, [1, 2]])
def test_a_malformed_cursor_means_the_page_shows_nothing(stored):
    assert Cursor.from_store(stored) == Cursor()


def test_the_requested_device_is_shown_if_it_exists_else_the_first():
    assert choose_device("dev-02", DEVICES) == "dev-02"
    assert choose_device("dev-99", DEVICES) == "dev-01"
    assert choose_device(None, []) is None


def test_points_since_returns_only_newer_points_or_none_to_redraw():
    points = [window("d", Metric.TEMPERATURE, i) for i in range(5)]
    assert points_since(points, points[2].start_ms) == points[3:]
    assert points_since(points, points[4].start_ms) == []
    assert points_since(points, None) is None  # nothing shown yet
    assert points_since([], None) == []  # nothing shown, nothing to show
    assert points_since(points[:2], points[4].start_ms) is None  # data went back: Redis emptied
    assert points_since([], points[0].start_ms) is None


def test_tick_outputs_cover_exactly_the_registered_outputs():
    out, _ = tick_outputs(board(snapshot(DEVICES, 3)), Cursor(), None, KEEP)
    assert set(out) | {"cursor", "ack"} == set(OUTPUTS)
    out, cursor = full_outputs(board(snapshot(DEVICES, 3)), "dev-01", KEEP)
    assert set(out) | {"cursor", "ack"} == set(OUTPUTS)
    out, _ = tick_outputs(board(snapshot(DEVICES, 3)), cursor, "dev-01", KEEP)
    assert set(out) | {"cursor", "ack"} == set(OUTPUTS)


def test_a_tick_without_new_data_sends_no_chart_gauge_or_table_update():
    b = board(snapshot(DEVICES, 10, alerts=3))
    _, cursor = full_outputs(b, "dev-01", KEEP)

    out, after = tick_outputs(b, cursor, "dev-01", KEEP)

    unchanged = [k for k, v in out.items() if v is no_update]
    for m in Metric:
        assert {f"chart_{m.value}", f"extend_{m.value}", f"gauge_{m.value}", f"trend_{m.value}"} <= set(
            unchanged
        )
    assert {"alerts", "leaderboard", "activity", "activity_extend", "funnel", "device_options"} <= set(
        unchanged
    )
    assert after == cursor


def test_new_windows_are_appended_with_extend_data_and_move_the_cursor():
    _, cursor = full_outputs(board(snapshot(DEVICES, 10)), "dev-01", KEEP)

    out, after = tick_outputs(board(snapshot(DEVICES, 12)), cursor, "dev-01", KEEP)

    extend = out["extend_temperature"]
    new = [window("dev-01", Metric.TEMPERATURE, i) for i in (10, 11)]
    assert extend[0]["x"] == [[w.start_ms for w in new]] * 4
    assert extend[0]["y"][2] == [w.avg for w in new]  # trace 2 is the average
    assert extend[1:] == [[0, 1, 2, 3], KEEP]
    assert out["chart_temperature"] is no_update
    assert after.series["temperature"] == new[-1].start_ms
    assert out["activity_extend"][0]["x"][0] == [w.start_ms for w in new]
    assert out["gauge_temperature"] is not no_update


def test_a_lost_answer_is_made_good_by_the_next_tick():
    _, cursor = full_outputs(board(snapshot(DEVICES, 10)), "dev-01", KEEP)
    tick_outputs(board(snapshot(DEVICES, 11)), cursor, "dev-01", KEEP)  # this answer never arrives

    out, _ = tick_outputs(board(snapshot(DEVICES, 12)), cursor, "dev-01", KEEP)  # same old cursor

    assert out["extend_humidity"][0]["x"][0] == [
        window("dev-01", Metric.HUMIDITY, i).start_ms for i in (10, 11)
    ]


def test_switching_device_redraws_its_charts_in_full():
    snap = snapshot(DEVICES, 10)
    _, cursor = full_outputs(board(snap), "dev-01", KEEP)

    out, after = tick_outputs(board(snap), cursor, "dev-02", KEEP)

    figure = out["chart_pressure"]
    assert [p for p in figure.data[2].y] == [window("dev-02", Metric.PRESSURE, i).avg for i in range(10)]
    assert out["extend_pressure"] is no_update
    assert out["device_value"] is no_update  # the page chose it; nothing to echo
    assert after.device == "dev-02"


def test_data_going_back_in_time_redraws_instead_of_appending():
    _, cursor = full_outputs(board(snapshot(DEVICES, 10, first=50)), "dev-01", KEEP)

    out, after = tick_outputs(board(snapshot(DEVICES, 3)), cursor, "dev-01", KEEP)

    assert len(out["chart_temperature"].data[0].x) == 3
    assert out["extend_temperature"] is no_update
    assert after.series["temperature"] == window("dev-01", Metric.TEMPERATURE, 2).start_ms


def test_charts_keep_only_the_newest_points():
    out, _ = full_outputs(board(snapshot(DEVICES, 100)), "dev-01", 60)
    assert len(out["chart_humidity"].data[2].x) == 60


def test_a_vanished_device_falls_back_to_the_first_and_says_so():
    _, cursor = full_outputs(board(snapshot(DEVICES, 5)), "dev-02", KEEP)

    out, after = tick_outputs(board(snapshot(["dev-01"], 5)), cursor, "dev-02", KEEP)

    assert out["device_value"] == "dev-01"
    assert out["device_options"] == [{"label": "dev-01", "value": "dev-01"}]
    assert after.device == "dev-01"


def test_only_alerts_new_to_the_page_are_sent():
    _, cursor = full_outputs(board(snapshot(DEVICES, 5, alerts=2)), "dev-01", KEEP)

    out, after = tick_outputs(board(snapshot(DEVICES, 5, alerts=4)), cursor, "dev-01", KEEP)

    assert out["alerts"] is no_update
    rows = out["new_alerts"]["rows"]
    assert [r["alert_id"] for r in rows] == [a.alert_id for a in snapshot(DEVICES, 5, alerts=4).alerts[:2]]
    assert after.alerts == out["new_alerts"]["head"] != cursor.alerts


def test_the_alert_table_is_resent_when_the_pages_newest_alert_is_gone():
    _, cursor = full_outputs(board(snapshot(DEVICES, 5, alerts=2)), "dev-01", KEEP)
    cursor = Cursor(**{**cursor.to_store(), "alerts": "an-alert-trimmed-long-ago@1"})

    out, _ = tick_outputs(board(snapshot(DEVICES, 5, alerts=3)), cursor, "dev-01", KEEP)

    assert len(out["alerts"]) == 3
    assert out["new_alerts"] is no_update


def test_alerts_since_the_head():
    alerts = snapshot(DEVICES, 1, alerts=4).alerts  # newest first
    head = f"{alerts[2].alert_id}@{alerts[2].event_time_ms}"
    assert alerts_since(alerts, head) == alerts[:2]
    assert alerts_since(alerts, "") is None
    assert alerts_since(alerts, f"{alerts[2].alert_id}@0") is None  # rewritten since: resend
