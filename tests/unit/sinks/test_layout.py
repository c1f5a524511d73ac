"""Every key name and stored encoding of the Redis contract."""

from __future__ import annotations

import orjson
import pytest

from sinks.layout import (
    ALERT_ID_PREFIX,
    LATEST_TIME_FIELD,
    TREND_TIME_FIELD,
    InvalidKeyComponent,
    Layout,
    SinkStatus,
    Update,
    alert_member_prefix,
    decode_activity,
    decode_alert,
    decode_latest,
    decode_stats,
    decode_trend,
    decode_update,
    decode_window_stats,
    encode_activity,
    encode_alert,
    encode_counters,
    encode_latest,
    encode_sink_status,
    encode_trend,
    encode_update,
    encode_window_stats,
)
from sinks.records import (
    ActivityWindow,
    Alert,
    CircuitState,
    EventType,
    Metric,
    PipelineCounters,
    Severity,
    Trend,
    TrendState,
    WindowStats,
)
from sources.models import SensorReading


def test_keys_follow_the_design_under_the_prefix():
    lay = Layout("rtd:")
    assert lay.latest() == "rtd:iot:latest"
    assert lay.window_series("10s", "dev-1", Metric.TEMPERATURE) == "rtd:iot:agg:10s:dev-1:temperature"
    assert lay.trend("dev-1", "pressure") == "rtd:iot:trend:dev-1:pressure"
    assert lay.alerts() == "rtd:alerts"
    assert lay.activity_series("10s") == "rtd:activity:agg:10s"
    assert lay.leaderboard() == "rtd:activity:leaderboard"
    assert lay.stats() == "rtd:pipeline:stats"
    assert lay.updates_channel() == "rtd:updates"


@pytest.mark.parametrize("device", ["", "a:b", "*", "a b", "x" * 65, "dev\n1", "../etc"])
def test_unsafe_key_components_are_rejected(device):
    with pytest.raises(InvalidKeyComponent):
        Layout().window_series("10s", device, Metric.HUMIDITY)


def test_unknown_metric_is_rejected():
    with pytest.raises(ValueError, match="Metric"):
        Layout().trend("dev-1", "voltage")


def test_window_stats_round_trip():
    ws = WindowStats("60s", "dev-1", Metric.HUMIDITY, 1000, 61000, 7, 41.5, 40.0, 43.25, 43.2)
    assert decode_window_stats(encode_window_stats(ws), "60s", "dev-1", "humidity") == ws


def test_the_same_window_always_encodes_to_the_same_bytes():
    a = WindowStats("10s", "d", Metric.PRESSURE, 0, 10_000, 3, 1013.0, 1012.5, 1013.5, 1013.49)
    b = WindowStats("10s", "d", Metric.PRESSURE, 0, 10_000, 3, 1013.0, 1012.5, 1013.5, 1013.49)
    assert encode_window_stats(a) == encode_window_stats(b)


def test_alert_round_trip_and_member_starts_with_its_id():
    alert = Alert(
        "dev-1:temperature:123", "dev-1", Metric.TEMPERATURE, 40.5, 21.0, 0.5, 39.0, Severity.CRITICAL, 123
    )
    raw = encode_alert(alert)
    assert raw.startswith(ALERT_ID_PREFIX + b'"dev-1:temperature:123"')
    assert decode_alert(raw) == alert


@pytest.mark.parametrize("alert_id", ["dev-1:temperature:123", 'odd "id", with, commas', "ünï"])
def test_an_alerts_member_starts_with_its_id_prefix_and_no_other_ids_does(alert_id):
    alert = Alert(alert_id, "d", Metric.HUMIDITY, 1.0, 0.0, 1.0, 3.0, Severity.WARNING, 1)
    prefix = alert_member_prefix(alert_id)
    assert encode_alert(alert).startswith(prefix)
    for other in (alert_id + "0", alert_id[:-1], "x" + alert_id):
        assert not encode_alert(Alert(other, *alert_fields(alert))).startswith(prefix)


def alert_fields(a: Alert) -> tuple:
    return (a.device_id, a.metric, a.value, a.mean, a.std, a.z, a.severity, a.event_time_ms)


def test_a_trends_time_field_is_the_named_one():
    t = TrendState("dev-1", Metric.TEMPERATURE, 0.5, Trend.RISING, 0.9, 4, 99)
    assert encode_trend(t)[TREND_TIME_FIELD] == "99"


def test_a_latest_values_time_field_is_the_named_one():
    r = SensorReading(
        device_id="d", event_time=1_700_000_000_000, temperature=1.0, humidity=2.0, pressure=1000.0
    )
    assert orjson.loads(encode_latest(r))[LATEST_TIME_FIELD] == 1_700_000_000_000


def test_trend_round_trip_keeps_full_float_precision():
    t = TrendState("dev-1", Metric.TEMPERATURE, 0.1 + 0.2, Trend.RISING, 0.987654321, 42, 99)
    assert decode_trend(encode_trend(t), "dev-1", "temperature") == t


def test_activity_round_trip_fills_every_event_type():
    a = ActivityWindow("10s", 0, 10_000, {EventType.PAGE_VIEW: 10, EventType.PURCHASE: 1}, 1.1, 9.99, 4)
    back = decode_activity(encode_activity(a), "10s")
    assert back.counts == {
        EventType.PAGE_VIEW: 10,
        EventType.CLICK: 0,
        EventType.ADD_TO_CART: 0,
        EventType.PURCHASE: 1,
    }
    assert (back.revenue, back.distinct_users, back.events_per_s) == (9.99, 4, 1.1)


def test_stats_round_trip_of_counters_and_sink_status():
    fields = {
        **encode_counters(PipelineCounters(10, 2, 1, 555)),
        **encode_sink_status(SinkStatus(777, CircuitState.HALF_OPEN)),
    }
    raw = {k.encode(): v.encode() for k, v in fields.items()}  # as redis-py returns it
    stats = decode_stats(raw)
    assert stats.counters == PipelineCounters(10, 2, 1, 555)
    assert (stats.last_write_ms, stats.circuit_state) == (777, CircuitState.HALF_OPEN)


def test_empty_stats_decode_to_zeros():
    stats = decode_stats({})
    assert stats.counters == PipelineCounters(0, 0, 0, None)
    assert stats.circuit_state is None


def test_latest_and_update_round_trip():
    r = SensorReading(
        device_id="d", event_time=1_700_000_000_000, temperature=1.0, humidity=2.0, pressure=1000.0
    )
    assert decode_latest(encode_latest(r)) == r
    u = Update(("alerts", "iot"), 5)
    assert decode_update(encode_update(u)) == u


def test_alert_round_trip_keeps_the_episode_start():
    alert = Alert(
        "d:humidity:5", "d", Metric.HUMIDITY, 90.0, 50.0, 2.0, 20.0, Severity.CRITICAL, 9, started_ms=5
    )
    assert decode_alert(encode_alert(alert)) == alert
    assert alert.order_ms == 5
