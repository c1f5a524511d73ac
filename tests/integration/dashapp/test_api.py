"""The REST API, health checks and metrics against a real Redis filled through the layout."""

from __future__ import annotations

import pytest

from sinks.records import Metric, Severity
from tests.net import free_port
from tests.seed import WINDOW_MS, Fleet, device_ids, window


@pytest.fixture
def fleet(seeder):
    fleet = Fleet(seeder, device_ids(3))
    fleet.advance(12)
    return fleet


@pytest.fixture
def api(make_client):
    return make_client()


def test_latest_readings_of_every_device(api, fleet):
    body = api.get("/api/v1/devices/latest").json()
    assert [r["device_id"] for r in body] == fleet.devices
    assert body[0]["event_time"] == fleet.newest_start_ms + WINDOW_MS - 1
    one = api.get("/api/v1/devices/dev-02/latest").json()
    assert one == body[1]


def test_history_of_a_device_metric_over_a_time_range(api, fleet):
    first = window("dev-01", Metric.HUMIDITY, 3).start_ms
    last = window("dev-01", Metric.HUMIDITY, 8).start_ms

    body = api.get(
        "/api/v1/devices/dev-01/history", params={"metric": "humidity", "start_ms": first, "end_ms": last}
    ).json()

    assert (body["device_id"], body["metric"], body["window"]) == ("dev-01", "humidity", "10s")
    assert [p["start_ms"] for p in body["points"]] == [
        window("dev-01", Metric.HUMIDITY, i).start_ms for i in range(3, 9)
    ]
    assert body["points"][0]["avg"] == window("dev-01", Metric.HUMIDITY, 3).avg
    limited = api.get("/api/v1/devices/dev-01/history", params={"metric": "humidity", "limit": 2}).json()
    assert [p["start_ms"] for p in limited["points"]] == [
        window("dev-01", Metric.HUMIDITY, i).start_ms for i in (10, 11)
    ]


def test_trends_activity_leaderboard_and_stats(api, fleet):
    trends = api.get("/api/v1/devices/dev-03/trends").json()
    assert [t["metric"] for t in trends] == ["temperature", "humidity", "pressure"]
    activity = api.get("/api/v1/activity", params={"limit": 5}).json()
    assert len(activity) == 5
    assert set(activity[-1]["counts"]) == {"page_view", "click", "add_to_cart", "purchase"}
    board = api.get("/api/v1/leaderboard", params={"limit": 3}).json()
    assert [p["rank"] for p in board] == [1, 2, 3]
    assert board[0]["purchases"] == max(fleet.purchases.values())
    stats = api.get("/api/v1/stats").json()
    assert stats["events_in"] == fleet.events_in
    assert stats["circuit_state"] == "closed"


def test_alerts_newest_first_with_limit_and_severity(api, fleet):
    every = api.get("/api/v1/alerts").json()
    assert len(every) == fleet.alerts_written == 4
    times = [a["event_time_ms"] for a in every]
    assert times == sorted(times, reverse=True)
    critical = api.get("/api/v1/alerts", params={"severity": "critical", "limit": 1}).json()
    assert len(critical) == 1
    assert critical[0]["severity"] == Severity.CRITICAL
    assert critical[0] == next(a for a in every if a["severity"] == "critical")


def test_empty_redis_gives_empty_answers_not_errors(api):
    assert api.get("/api/v1/devices/latest").json() == []
    assert api.get("/api/v1/alerts").json() == []
    assert api.get("/api/v1/activity").json() == []
    assert api.get("/api/v1/leaderboard").json() == []
    assert api.get("/api/v1/devices/dev-01/history", params={"metric": "pressure"}).json()["points"] == []
    assert api.get("/api/v1/stats").json()["events_in"] == 0
    missing = api.get("/api/v1/devices/dev-01/latest")
    assert missing.status_code == 404
    assert "dev-01" in missing.json()["detail"]


@pytest.mark.parametrize(
    ("path", "params", "reason"),
    [
        ("/api/v1/devices/dev:01*/latest", {}, "string_pattern_mismatch"),
        ("/api/v1/devices/dev-01/history", {"metric": "voltage"}, "temperature"),
        ("/api/v1/devices/dev-01/history", {}, "missing"),
        ("/api/v1/devices/dev-01/history", {"metric": "humidity", "window": "10s:*"}, "pattern"),
        ("/api/v1/devices/dev-01/history", {"metric": "humidity", "limit": 0}, "greater than or equal"),
        ("/api/v1/devices/dev-01/history", {"metric": "humidity", "limit": 5000}, "less than or equal"),
        (
            "/api/v1/devices/dev-01/history",
            {"metric": "humidity", "start_ms": 9, "end_ms": 1},
            "after end_ms",
        ),
        ("/api/v1/alerts", {"severity": "panic"}, "warning"),
        ("/api/v1/alerts", {"device_id": "a b"}, "pattern"),
        ("/api/v1/activity", {"start_ms": "yesterday"}, "integer"),
        ("/api/v1/leaderboard", {"limit": -1}, "greater than or equal"),
    ],
)
def test_bad_parameters_are_a_4xx_with_the_reason(api, path, params, reason):
    resp = api.get(path, params=params)
    assert resp.status_code == 422
    assert reason in resp.text


def test_unknown_api_paths_are_json_404s_not_the_page(api):
    resp = api.get("/api/v1/nothing/here")
    assert resp.status_code == 404
    assert resp.json() == {"detail": "no API route /api/v1/nothing/here"}


def test_an_oversized_request_body_is_refused(make_client):
    api = make_client(dash_max_request_bytes=2048)
    resp = api.post(
        "/_dash-update-component",
        content=b"{" + b" " * 4096 + b"}",
        headers={"content-type": "application/json"},
    )
    assert resp.status_code == 413


def test_an_api_client_over_the_rate_limit_gets_429_while_probes_still_answer(make_client):
    api = make_client(dash_api_rate_limit="5/minute")
    assert [api.get("/api/v1/stats").status_code for _ in range(5)] == [200] * 5
    refused = api.get("/api/v1/devices/latest")
    assert refused.status_code == 429
    assert "retry-after" in refused.headers
    assert api.get("/health").status_code == 200
    assert api.get("/ready").status_code == 200


def test_redis_down_gives_503_on_ready_and_the_api_but_health_stays_ok(make_client):
    api = make_client(redis_url=f"redis://127.0.0.1:{free_port()}/0", dash_redis_timeout_s=0.5)

    assert api.get("/health").json() == {"status": "ok", "detail": None}
    ready = api.get("/ready")
    assert ready.status_code == 503
    assert "Redis unavailable" in ready.json()["detail"]
    for path in ("/api/v1/devices/latest", "/api/v1/alerts", "/api/v1/stats"):
        resp = api.get(path)
        assert resp.status_code == 503
        assert "Redis unavailable" in resp.json()["detail"]
    metrics = api.get("/metrics").text
    assert 'dashboard_redis_errors_total{operation="api"} 3.0' in metrics
    assert 'dashboard_redis_errors_total{operation="ready"} 1.0' in metrics


def test_ready_when_redis_answers(api):
    assert api.get("/ready").json()["status"] == "ready"


def test_metrics_count_requests_and_latencies(api, fleet):
    api.get("/api/v1/alerts")
    api.get("/api/v1/alerts")
    text = api.get("/metrics").text
    assert 'http_requests_total{handler="/api/v1/alerts",method="GET",status="2xx"} 2.0' in text
    assert 'http_request_duration_seconds_count{handler="/api/v1/alerts",method="GET"} 2.0' in text
    assert "dashboard_callback_duration_seconds" in text


def test_openapi_documents_every_api_route(api):
    paths = api.get("/openapi.json").json()["paths"]
    assert {
        "/api/v1/devices/latest",
        "/api/v1/devices/{device_id}/latest",
        "/api/v1/devices/{device_id}/history",
        "/api/v1/devices/{device_id}/trends",
        "/api/v1/alerts",
        "/api/v1/activity",
        "/api/v1/leaderboard",
        "/api/v1/stats",
        "/health",
        "/ready",
    } <= set(paths)
    assert api.get("/docs").status_code == 200
