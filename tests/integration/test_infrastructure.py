"""The services under test are the real thing and behave as the pipeline relies on."""

from __future__ import annotations

import time
from collections import defaultdict

import pytest
from confluent_kafka import KafkaError

from infra import local
from infra.settings import LocalInfraSettings
from sources.topics import TopicOutcome, TopicSpec, ensure_topics


def test_kafka_returns_10000_keyed_messages_complete_and_in_per_key_order(
    tmp_topic, make_producer, make_consumer
):
    topic = tmp_topic(partitions=3)
    producer = make_producer(**{"enable.idempotence": True, "acks": "all", "linger.ms": 5})
    keys = [f"device-{i}" for i in range(25)]
    sent: dict[str, list[int]] = defaultdict(list)
    for seq in range(10_000):
        key = keys[seq % len(keys)]
        producer.produce(topic, key=key.encode(), value=str(seq).encode())
        sent[key].append(seq)
        producer.poll(0)
    assert producer.flush(30) == 0

    consumer = make_consumer()
    consumer.subscribe([topic])
    received: dict[str, list[int]] = defaultdict(list)
    partitions_of_key: dict[str, set[int]] = defaultdict(set)
    total = 0
    deadline = time.monotonic() + 60
    while total < 10_000 and time.monotonic() < deadline:
        for msg in consumer.consume(num_messages=1000, timeout=1.0):
            if msg.error():
                assert msg.error().code() == KafkaError._PARTITION_EOF, msg.error()
                continue
            key = msg.key().decode()
            received[key].append(int(msg.value()))
            partitions_of_key[key].add(msg.partition())
            total += 1

    assert total == 10_000
    assert received == sent  # complete, and each key's messages in production order
    assert all(len(p) == 1 for p in partitions_of_key.values())  # a key lives on one partition
    assert len(set().union(*partitions_of_key.values())) == 3  # and keys spread over all three


def test_redis_pipeline_round_trip(redis_client, key_prefix):
    pipe = redis_client.pipeline(transaction=False)
    pipe.hset(f"{key_prefix}h", mapping={"a": "1", "b": "2"})
    pipe.zadd(f"{key_prefix}z", {"x": 1.5, "y": 2.5})
    pipe.hgetall(f"{key_prefix}h")
    pipe.zrange(f"{key_prefix}z", 0, -1, withscores=True)
    _, _, fields, members = pipe.execute()
    assert fields == {b"a": b"1", b"b": b"2"}
    assert members == [(b"x", 1.5), (b"y", 2.5)]


def test_ensure_topics_is_idempotent_and_reports_a_partition_mismatch(kafka_admin, tmp_topic):
    existing = tmp_topic(partitions=2)
    fresh = f"test-fresh-{time.monotonic_ns()}"
    specs = [TopicSpec(existing, 3), TopicSpec(fresh, 3)]
    try:
        first = ensure_topics(kafka_admin, specs)
        second = ensure_topics(kafka_admin, specs)
    finally:
        kafka_admin.delete_topics([fresh])[fresh].result(timeout=30)

    assert [r.outcome for r in first] == [TopicOutcome.MISMATCH, TopicOutcome.CREATED]
    assert first[0].actual_partitions == 2
    assert [r.outcome for r in second] == [TopicOutcome.MISMATCH, TopicOutcome.EXISTS]


def test_a_second_start_of_running_services_is_detected_not_doubled(infra_settings: LocalInfraSettings):
    before = local.status(infra_settings)
    assert before["kafka"] and before["redis"], "make test starts both services"
    assert local.start(infra_settings) == []
    assert local.status(infra_settings) == before


@pytest.mark.slow
def test_local_redis_starts_and_stops_on_its_own_port_leaving_no_process(tmp_path, redis_url):
    s = LocalInfraSettings(redis_url="redis://127.0.0.1:16999/0", state_dir=tmp_path)
    try:
        assert local.start(s, "redis") == ["redis"]
        pid = local.status(s)["redis"]
        assert pid is not None
    finally:
        local.stop(s, "redis")
    assert local.status(s)["redis"] is None
    assert not local._alive(pid, "redis-server")
