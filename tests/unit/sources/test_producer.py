"""Keys follow the Kafka contract; metrics show the delivery counts."""

from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry, generate_latest

from sources.models import ActivityEvent, EventType, SensorReading
from sources.producer import DeliveryStats, LibrdkafkaLog, ProducerMetrics, Throttle, kafka_key

T0 = 1_700_000_000_000


def test_readings_are_keyed_by_device_and_activity_by_user():
    reading = SensorReading(
        device_id="device-007", event_time=T0, temperature=1.0, humidity=2.0, pressure=1000.0
    )
    event = ActivityEvent(
        event_id="e", user_id="user-00042", session_id="s", type=EventType.CLICK, page="/", event_time=T0
    )
    assert kafka_key(reading) == "device-007"
    assert kafka_key(event) == "user-00042"


def test_metrics_export_the_current_counts_when_scraped():
    stats = DeliveryStats()
    registry = CollectorRegistry()
    registry.register(ProducerMetrics(stats, "iot"))
    stats.produced, stats.delivered, stats.failed = 10, 7, 2
    stats.failures["_MSG_TIMED_OUT"] = 2
    stats.delivered_by_partition.update({0: 3, 2: 4})

    def sample(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, {"source": "iot", **labels})

    assert sample("pipeline_producer_events_produced_total") == 10
    assert sample("pipeline_producer_events_delivered_total") == 7
    assert sample("pipeline_producer_events_failed_total", reason="_MSG_TIMED_OUT") == 2
    assert sample("pipeline_producer_events_in_flight") == 1
    assert sample("pipeline_producer_partition_events_delivered_total", partition="2") == 4
    assert sample("pipeline_producer_partition_events_delivered_total", partition="1") is None
    stats.delivered = 8
    assert sample("pipeline_producer_events_delivered_total") == 8
    assert b"# TYPE pipeline_producer_events_produced_total counter" in generate_latest(registry)


class FakeTime:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_throttle_lets_one_message_per_kind_and_interval_through_and_counts_the_rest():
    now = FakeTime()
    throttle = Throttle(interval_s=30.0, now=now)
    assert throttle.allow("FAIL") == 0
    assert throttle.allow("FAIL") is None
    assert throttle.allow("FAIL") is None
    assert throttle.allow("GETPID") == 0  # another kind is not held back
    now.t = 30.0
    assert throttle.allow("FAIL") == 2  # the next one says how many were held back
    assert throttle.allow("FAIL") is None


def test_librdkafka_log_lines_reach_the_stdlib_logger_throttled_per_facility(caplog):
    now = FakeTime()
    sink = LibrdkafkaLog(logging.getLogger("librdkafka-test"), Throttle(30.0, now=now))
    with caplog.at_level(logging.INFO, logger="librdkafka-test"):
        for _ in range(5):
            sink.log(logging.ERROR, "%s [%s] %s", "FAIL", "rdkafka#producer-1", "Connect failed")
        sink.log(logging.WARNING, "%s [%s] %s", "CONFWARN", "rdkafka#producer-1", "ignored property")
        now.t = 31.0
        sink.log(logging.ERROR, "%s [%s] %s", "FAIL", "rdkafka#producer-1", "Connect failed")
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.ERROR, "FAIL [rdkafka#producer-1] Connect failed"),
        (logging.WARNING, "CONFWARN [rdkafka#producer-1] ignored property"),
        (logging.ERROR, "FAIL [rdkafka#producer-1] Connect failed (4 similar lines held back)"),
    ]
