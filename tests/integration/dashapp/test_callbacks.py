"""The dashboard's server tick over HTTP, as the browser calls it, against a real Redis."""

from __future__ import annotations

import time

import pytest
import redis

from dashapp import ids
from dashapp.app import GZIP_MIN_BYTES
from infra.local import redis_service, start_redis
from infra.settings import LocalInfraSettings
from sinks.records import Metric
from tests.dash_client import find_component, initial_cursor, post_tick, tick_body
from tests.net import free_port
from tests.seed import WINDOW_MS, Fleet, Seeder, device_ids, window

DEVICES = device_ids(3)


@pytest.fixture
def fleet(seeder):
    fleet = Fleet(seeder, DEVICES)
    fleet.advance(60)
    return fleet


def dash_app(client):
    return client.app.state.dash


def test_the_page_opens_on_the_current_window(make_client, fleet):
    client = make_client()

    layout = client.get("/_dash-layout").json()

    chart = find_component(layout, ids.chart(Metric.TEMPERATURE))["props"]["figure"]
    avg = chart["data"][2]
    assert avg["x"] == [window("dev-01", Metric.TEMPERATURE, i).start_ms for i in range(60)]
    gauge = find_component(layout, ids.gauge(Metric.PRESSURE))["props"]["figure"]["data"][0]
    assert gauge["value"] == window("dev-01", Metric.PRESSURE, 59).avg
    status = find_component(layout, ids.STATUS)["props"]
    assert status["children"] == "● live"
    assert len(find_component(layout, ids.ALERTS)["props"]["rowData"]) == fleet.alerts_written
    cursor = find_component(layout, ids.CURSOR)["props"]["data"]
    assert cursor["device"] == "dev-01"
    assert cursor["series"]["humidity"] == fleet.newest_start_ms


def test_a_tick_sends_only_the_windows_that_are_new_to_the_page(make_client, fleet, clock):
    client = make_client()
    cursor = initial_cursor(client)
    fleet.advance(2)
    clock.advance(2 * WINDOW_MS)

    result = post_tick(client, dash_app(client), 7, "dev-01", cursor)

    assert result.status == 200
    extend = result.get(ids.chart(Metric.HUMIDITY), "extendData")
    assert extend[0]["x"][2] == [window("dev-01", Metric.HUMIDITY, i).start_ms for i in (60, 61)]
    assert extend[0]["y"][2] == [window("dev-01", Metric.HUMIDITY, i).avg for i in (60, 61)]
    assert not result.has(ids.chart(Metric.HUMIDITY), "figure")
    assert result.get(ids.ACK, "data") == 7
    assert result.get(ids.CURSOR, "data")["series"]["humidity"] == fleet.newest_start_ms
    assert result.body_bytes < 8_000


def test_a_tick_with_nothing_new_is_small(make_client, fleet, clock):
    client = make_client()
    cursor = initial_cursor(client)
    clock.advance(1_000)

    result = post_tick(client, dash_app(client), 1, "dev-01", cursor)

    assert not result.has(ids.chart(Metric.TEMPERATURE), "extendData")
    assert not result.has(ids.ALERTS, "rowData")
    assert not result.has(ids.LEADERBOARD, "children")
    assert result.body_bytes < 2_000


def test_a_dropped_answer_loses_no_point(make_client, fleet, clock):
    client = make_client()
    cursor = initial_cursor(client)
    fleet.advance(1)
    clock.advance(WINDOW_MS)
    post_tick(client, dash_app(client), 1, "dev-01", cursor)  # the browser never applies this answer
    fleet.advance(1)
    clock.advance(WINDOW_MS)

    result = post_tick(client, dash_app(client), 2, "dev-01", cursor)  # so it sends the old cursor again

    extend = result.get(ids.chart(Metric.PRESSURE), "extendData")
    assert extend[0]["x"][0] == [window("dev-01", Metric.PRESSURE, i).start_ms for i in (60, 61)]


def test_ticks_within_the_cache_ttl_share_one_redis_read(make_client, fleet, clock):
    client = make_client(dash_cache_ttl_s=0.8)
    cursor = initial_cursor(client)
    live = client.app.state.runtime.live
    reads = live.reads

    for seq in range(10):
        post_tick(client, dash_app(client), seq, "dev-01", cursor)
    assert live.reads == reads  # served by the read the page load made

    clock.advance(800)
    post_tick(client, dash_app(client), 11, "dev-01", cursor)
    assert live.reads == reads + 1


def test_choosing_another_device_redraws_its_charts(make_client, fleet, clock):
    client = make_client()
    cursor = initial_cursor(client)

    result = post_tick(client, dash_app(client), 1, "dev-03", cursor, trigger=f"{ids.DEVICE}.value")

    figure = result.get(ids.chart(Metric.TEMPERATURE), "figure")
    assert figure["data"][2]["y"] == [window("dev-03", Metric.TEMPERATURE, i).avg for i in range(60)]
    assert result.get(ids.DEVICE_TITLE, "children") == "dev-03"
    assert result.get(ids.CURSOR, "data")["device"] == "dev-03"


def test_a_garbled_cursor_from_the_browser_just_redraws(make_client, fleet):
    client = make_client()

    result = post_tick(client, dash_app(client), 1, "dev-01", {"series": "x", "activity": [1]})

    assert result.status == 200
    assert len(result.get(ids.chart(Metric.HUMIDITY), "figure")["data"][2]["x"]) == 60


def test_an_empty_redis_shows_waiting_not_an_error(make_client, clock):
    client = make_client()
    cursor = initial_cursor(client)

    result = post_tick(client, dash_app(client), 1, None, cursor)

    assert result.status == 200
    assert result.get(ids.STATUS, "children") == "● waiting for data"
    assert result.get(ids.BANNER, "is_open") is True
    assert result.get(ids.KPI_IOT_RATE, "children") == "\u2013"


def test_redis_going_down_shows_a_degraded_page_that_recovers_by_itself(
    make_client, clock, tmp_path, key_prefix
):
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    infra = LocalInfraSettings(redis_url=url, state_dir=tmp_path, service_start_timeout_s=20)
    service = redis_service(infra)
    start_redis(infra)
    try:
        Fleet(Seeder(redis.Redis.from_url(url), key_prefix), DEVICES).advance(60)
        client = make_client(redis_url=url, dash_redis_timeout_s=0.5)
        cursor = initial_cursor(client)

        service.stop()
        clock.advance(1_000)
        down = post_tick(client, dash_app(client), 1, "dev-01", cursor)

        assert down.status == 200
        assert down.get(ids.STATUS, "children") == "● Redis unreachable"
        assert down.get(ids.BANNER, "is_open") is True
        assert "Redis is unreachable" in down.get(ids.BANNER, "children")
        assert not down.has(ids.chart(Metric.TEMPERATURE), "figure")  # the last data stays on screen
        assert 'dashboard_redis_errors_total{operation="snapshot"} 1.0' in client.get("/metrics").text

        start_redis(infra)
        Fleet(Seeder(redis.Redis.from_url(url), key_prefix), DEVICES).advance(61)
        deadline = time.monotonic() + 10
        while True:
            clock.advance(1_000)
            up = post_tick(client, dash_app(client), 2, "dev-01", down.get(ids.CURSOR, "data"))
            if up.get(ids.STATUS, "children") == "● live" or time.monotonic() > deadline:
                break
        assert up.get(ids.STATUS, "children") == "● live"
        assert up.get(ids.BANNER, "is_open") is False
        assert up.get(ids.chart(Metric.TEMPERATURE), "extendData")[0]["x"][0] == [fleet_start(60)]
    finally:
        service.stop()


def fleet_start(index: int) -> int:
    return window("dev-01", Metric.TEMPERATURE, index).start_ms


def test_ticks_are_counted_by_the_callback_histogram_and_skip_the_http_metrics(make_client, fleet, clock):
    client = make_client()
    cursor = initial_cursor(client)  # a page load: /_dash-layout keeps its HTTP metrics
    for seq in range(1, 4):
        clock.advance(1_000)
        assert post_tick(client, dash_app(client), seq, "dev-01", cursor).status == 200

    metrics = client.get("/metrics").text
    assert 'dashboard_callback_duration_seconds_count{callback="tick"} 3.0' in metrics
    assert 'http_requests_total{handler="/_dash-layout",method="GET",status="2xx"} 1.0' in metrics
    assert "/_dash-update-component" not in metrics


def test_a_small_tick_goes_uncompressed_while_the_page_layout_is_gzipped(make_client, fleet, clock):
    client = make_client()
    cursor = initial_cursor(client)
    clock.advance(1_000)
    gzip_ok = {"accept-encoding": "gzip"}

    tick = client.post(
        "/_dash-update-component",
        content=tick_body(dash_app(client), 1, "dev-01", cursor),
        headers={"content-type": "application/json", **gzip_ok},
    )
    layout = client.get("/_dash-layout", headers=gzip_ok)

    assert tick.status_code == 200
    assert len(tick.content) < GZIP_MIN_BYTES
    assert "content-encoding" not in tick.headers
    assert layout.headers["content-encoding"] == "gzip"
