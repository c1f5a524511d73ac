"""Simulated events go through the real broker intact, keyed and partitioned as the contract says."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import defaultdict
from pathlib import Path

import pytest
import structlog
from confluent_kafka import Consumer, KafkaError

from sources.activity import ActivityConfig, ActivitySimulator
from sources.clock import Pacer, SimulatedClock, simulated_times
from sources.iot import IotConfig, IotSimulator
from sources.models import ActivityEvent, SensorReading
from sources.produce import Progress, RunPlan, Source, StopSignals, run
from sources.producer import EventProducer, WireEvent, kafka_key
from sources.settings import ProducerSettings

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_700_000_000_000


def java_murmur2(data: bytes) -> int:
    """Kafka's Utils.murmur2 (the Java client's default partitioner), as a signed 32-bit int.

    Written out here as an independent oracle for where librdkafka's murmur2_random must put each key.
    """
    m, mask = 0x5BD1E995, 0xFFFFFFFF
    h = (0x9747B28C ^ len(data)) & mask
    whole = len(data) // 4 * 4
    for i in range(0, whole, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * m) & mask
        k ^= k >> 24
        k = (k * m) & mask
        h = ((h * m) & mask) ^ k
    tail = data[whole:]
    if len(tail) >= 3:
        h ^= tail[2] << 16
    if len(tail) >= 2:
        h ^= tail[1] << 8
    if tail:
        h ^= tail[0]
        h = (h * m) & mask
    h ^= h >> 13
    h = (h * m) & mask
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def java_partition(key: str, partitions: int) -> int:
    return (java_murmur2(key.encode()) & 0x7FFFFFFF) % partitions


def test_the_murmur2_oracle_matches_kafkas_own_test_vectors():
    # From Apache Kafka's UtilsTest.testMurmur2.
    vectors = {
        b"21": -973932308,
        b"foobar": -790332482,
        b"a-little-bit-long-string": -985981536,
        b"a-little-bit-longer-string": -1486304829,
        b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
        b"abc": 479470107,
    }
    assert {data: java_murmur2(data) for data in vectors} == vectors


def consume_all(consumer: Consumer, topic: str, expected: int, timeout_s: float = 60.0) -> list:
    """Every message of `topic` until `expected` arrived (or the deadline passed)."""
    consumer.subscribe([topic])
    messages = []
    deadline = time.monotonic() + timeout_s
    while len(messages) < expected and time.monotonic() < deadline:
        for msg in consumer.consume(num_messages=1000, timeout=0.5):
            if msg.error():
                assert msg.error().code() == KafkaError._PARTITION_EOF, msg.error()
                continue
            messages.append(msg)
    return messages


def settle(consumer: Consumer, seconds: float = 1.0) -> int:
    """How many more messages arrive within `seconds` (to prove there are no extras)."""
    extra = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        extra += sum(1 for m in consumer.consume(num_messages=100, timeout=0.2) if not m.error())
    return extra


def iot_events(n: int) -> list[WireEvent]:
    sim = IotSimulator(IotConfig(devices=25, anomaly_rate=0.05), seed=11)
    return [r.reading for r in sim.run(simulated_times(T0, 200.0, n))]


def activity_events(n: int) -> list[WireEvent]:
    sim = ActivitySimulator(ActivityConfig(users=300, sessions=40), seed=11)
    return list(sim.run(simulated_times(T0, 200.0, n)))


@pytest.mark.parametrize(
    ("make_events", "model"),
    [(iot_events, SensorReading), (activity_events, ActivityEvent)],
    ids=["iot", "activity"],
)
def test_events_round_trip_identical_in_per_key_order_on_the_java_partitioners_partition(
    kafka_bootstrap, tmp_topic, make_consumer, make_events, model
):
    n = 5000
    topic = tmp_topic(partitions=3)
    settings = ProducerSettings(kafka_bootstrap_servers=kafka_bootstrap)
    producer = EventProducer(settings.producer_config(), topic)
    sent = make_events(n)
    for event in sent:
        producer.send(event)
    assert producer.flush(30) == 0
    assert (producer.stats.produced, producer.stats.delivered, producer.stats.failed) == (n, n, 0)

    consumer = make_consumer()
    messages = consume_all(consumer, topic, n)
    assert len(messages) == n
    assert settle(consumer) == 0

    sent_by_key: dict[str, list[WireEvent]] = defaultdict(list)
    for event in sent:
        sent_by_key[kafka_key(event)].append(event)
    received_by_key: dict[str, list[WireEvent]] = defaultdict(list)
    partitions_of_key: dict[str, set[int]] = defaultdict(set)
    for msg in messages:
        key = msg.key().decode()
        received_by_key[key].append(model.from_json(msg.value()))
        partitions_of_key[key].add(msg.partition())
    assert received_by_key == sent_by_key  # same events, each key's in production order
    assert {key: p for key, (p,) in partitions_of_key.items()} == {
        key: java_partition(key, 3) for key in sent_by_key
    }
    assert len(set().union(*partitions_of_key.values())) == 3


def test_undeliverable_events_are_counted_and_logged_never_silent(kafka_bootstrap):
    settings = ProducerSettings(kafka_bootstrap_servers=kafka_bootstrap, producer_delivery_timeout_s=1.5)
    logger = structlog.testing.CapturingLogger()
    # The broker does not auto-create topics, so nothing can be delivered here.
    producer = EventProducer(
        settings.producer_config(), "no-such-topic-for-sources", max_failure_logs=3, logger=logger
    )
    for event in iot_events(5):
        producer.send(event)
    producer.flush(15)
    stats = producer.stats
    assert (stats.produced, stats.delivered, stats.failed, stats.in_flight) == (5, 0, 5, 0)
    assert sum(stats.failures.values()) == 5
    warnings = [c for c in logger.calls if c.method_name == "warning"]
    failures = [c for c in warnings if c.args == ("event not delivered",)]
    assert len(failures) == 3  # the first few one by one...
    assert failures[0].kwargs["topic"] == "no-such-topic-for-sources"
    assert failures[0].kwargs["error"] in stats.failures
    assert any("counted, not logged" in c.args[0] for c in warnings)  # ...then counted


def run_plan(topic: str, count: int | None) -> RunPlan:
    return RunPlan(
        Source.IOT, topic, rate=100.0, paced=False, count=count, seed=1, clock="simulated", start_ms=T0
    )


def test_run_stops_at_the_count_with_everything_delivered(kafka_bootstrap, tmp_topic):
    topic = tmp_topic()
    producer = EventProducer(
        ProducerSettings(kafka_bootstrap_servers=kafka_bootstrap).producer_config(), topic
    )
    sim = IotSimulator(IotConfig(), seed=1)
    report = run(
        run_plan(topic, 2000),
        lambda t: sim.emit(t).reading,
        producer,
        SimulatedClock(T0, 100.0),
        Pacer(None),
        StopSignals(),
        Progress(Source.IOT, producer.stats, sys.stderr, 60.0),
        flush_timeout_s=30,
    )
    assert report.ok
    assert (report.produced, report.delivered, report.undelivered, report.stopped_by) == (
        2000,
        2000,
        0,
        "count",
    )


def test_run_stopped_by_a_signal_flushes_what_it_produced(kafka_bootstrap, tmp_topic, make_consumer):
    topic = tmp_topic()
    producer = EventProducer(
        ProducerSettings(kafka_bootstrap_servers=kafka_bootstrap).producer_config(), topic
    )
    sim = IotSimulator(IotConfig(), seed=1)
    signals = StopSignals()

    def make_event(t_ms: int) -> WireEvent:
        if producer.stats.produced == 777:
            signals._handle(signal.SIGTERM, None)  # as if SIGTERM arrived right now
        return sim.emit(t_ms).reading

    report = run(
        run_plan(topic, None),
        make_event,
        producer,
        SimulatedClock(T0, 100.0),
        Pacer(None),
        signals,
        Progress(Source.IOT, producer.stats, sys.stderr, 60.0),
        flush_timeout_s=30,
    )
    assert (report.produced, report.delivered, report.stopped_by) == (778, 778, "SIGTERM")
    consumer = make_consumer()
    assert len(consume_all(consumer, topic, 778)) == 778
    assert settle(consumer) == 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cli_env(kafka_bootstrap: str, **pipeline: object) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINE_")}
    env["PIPELINE_KAFKA_BOOTSTRAP_SERVERS"] = kafka_bootstrap
    env.update({f"PIPELINE_{k.upper()}": str(v) for k, v in pipeline.items()})
    return env


REPORT = re.compile(r"\] ([\d,]+) of ([\d,]+) events delivered")


def delivered_in(report: str) -> tuple[int, int]:
    match = REPORT.search(report)
    assert match, report
    delivered, produced = (int(g.replace(",", "")) for g in match.groups())
    return delivered, produced


def test_cli_counted_run_delivers_exactly_what_the_simulator_makes_in_process(
    kafka_bootstrap, tmp_topic, make_consumer
):
    topic = tmp_topic()
    argv = ["iot", "--count", "3000", "--seed", "5", "--devices", "4", "--start", "2024-01-01T00:00:00Z"]
    result = subprocess.run(
        [sys.executable, "-m", "sources.produce", *argv],
        cwd=ROOT,
        env=cli_env(kafka_bootstrap, iot_topic=topic, producer_metrics_port=0),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert delivered_in(result.stdout) == (3000, 3000)
    assert "stopped by count" in result.stdout

    expected = IotSimulator(IotConfig(devices=4), seed=5).run(simulated_times(1_704_067_200_000, 20.0, 3000))
    by_key: dict[str, list[SensorReading]] = defaultdict(list)
    for r in expected:
        by_key[r.key].append(r.reading)
    received: dict[str, list[SensorReading]] = defaultdict(list)
    for msg in consume_all(make_consumer(), topic, 3000):
        received[msg.key().decode()].append(SensorReading.from_json(msg.value()))
    assert received == by_key


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return response.read().decode()


def metric(text: str, name: str) -> float:
    match = re.search(rf'^{name}\{{source="activity"\}} (\S+)$', text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def test_cli_live_run_serves_metrics_and_stops_gracefully_on_sigterm(
    kafka_bootstrap, tmp_topic, make_consumer
):
    topic = tmp_topic()
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "sources.produce", "activity", "--rate", "300"],
        cwd=ROOT,
        env=cli_env(kafka_bootstrap, activity_topic=topic, producer_metrics_port=port),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        delivered = 0.0
        deadline = time.monotonic() + 60
        while delivered < 300 and time.monotonic() < deadline and proc.poll() is None:
            try:
                delivered = metric(scrape(port), "pipeline_producer_events_delivered_total")
            except OSError:
                pass  # the endpoint is not up yet
            time.sleep(0.2)
        assert delivered >= 300, "the producer never delivered its first 300 events"
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, stderr
    delivered_total, produced = delivered_in(stdout)
    assert delivered_total == produced >= 300
    assert "stopped by SIGTERM" in stdout
    consumer = make_consumer()
    assert len(consume_all(consumer, topic, produced)) == produced
    assert settle(consumer) == 0
