"""The flow's Kafka input (`flows.kafka_input`) on the broker, and what its end-of-partition flag is for."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from bytewax.testing import TestingSink, run_main
from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Producer

from flows.clock import ManualClock
from flows.dataflow import build_flow, kafka_source
from flows.kafka_input import KafkaBatch, KafkaInput, KafkaPartitionReader
from flows.settings import FlowSettings
from sinks.records import ActivityWindow, PipelineCounters, WindowStats
from tests.pipeline_harness import delete_topics, make_topics, produce, simulated_events

T0 = 1_700_000_000_000


def _produce(make_producer: Callable[..., Producer], topic: str, n: int, partition: int = 0) -> None:
    producer = make_producer()
    for i in range(n):
        producer.produce(topic, value=b"v%d" % i, key=b"k%d" % i, partition=partition)
    assert producer.flush(30) == 0


def _drain(part: KafkaPartitionReader, until: Callable[[list[KafkaBatch]], bool]) -> list[KafkaBatch]:
    """Poll `part` until `until(batches so far)` or it stops; fail after a generous deadline."""
    batches: list[KafkaBatch] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            batches.extend(part.next_batch())
        except StopIteration:
            return batches
        if until(batches):
            return batches
        time.sleep(0.005)
    pytest.fail(f"no end in 60 s; got {sum(len(b.values) for b in batches)} messages")


def _source(bootstrap: str, topic: str, **kwargs: Any) -> KafkaInput:
    return KafkaInput({"bootstrap.servers": bootstrap}, [topic], **kwargs)


def test_a_partition_is_read_raw_in_order_to_its_end_where_it_says_so_and_stops(
    kafka_bootstrap, tmp_topic, make_producer
):
    topic = tmp_topic(partitions=2)
    _produce(make_producer, topic, 1234, partition=1)
    source = _source(kafka_bootstrap, topic, tail=False, batch_size=100)
    assert source.list_parts() == [f"0-{topic}", f"1-{topic}"]
    part = source.build_part("read", f"1-{topic}", None)
    try:
        batches = _drain(part, lambda _: False)
        assert [v for b in batches for v in b.values] == [b"v%d" % i for i in range(1234)]
        assert [k for b in batches for k in b.keys] == [b"k%d" % i for i in range(1234)]
        assert [o for b in batches for o in b.offsets] == list(range(1234))
        assert all(len(b.values) <= 100 and b.partition == 1 and b.topic == topic for b in batches)
        assert batches[-1].at_end and not any(b.at_end for b in batches[:-2])
        assert part.snapshot() == 1234
    finally:
        part.close()
    empty = source.build_part("read", f"0-{topic}", None)
    try:
        [only] = _drain(empty, lambda _: False)
        assert (only.values, only.at_end) == ([], True), "an empty partition says it is at its end"
    finally:
        empty.close()


def test_a_resumed_partition_starts_at_its_snapshot_and_a_first_start_where_told(
    kafka_bootstrap, tmp_topic, make_producer
):
    topic = tmp_topic(partitions=1)
    _produce(make_producer, topic, 50)
    source = _source(kafka_bootstrap, topic, tail=False)
    resumed = source.build_part("read", f"0-{topic}", 40)
    try:
        assert [o for b in _drain(resumed, lambda _: False) for o in b.offsets] == list(range(40, 50))
    finally:
        resumed.close()
    latest = _source(kafka_bootstrap, topic, tail=True, starting_offset=OFFSET_END)
    part = latest.build_part("read", f"0-{topic}", None)
    try:
        assert _drain(part, lambda bs: any(b.at_end for b in bs))[-1].values == []
        _produce(make_producer, topic, 3)
        got = _drain(part, lambda bs: sum(len(b.values) for b in bs) >= 3)
        assert [o for b in got for o in b.offsets] == [50, 51, 52]
        assert part.snapshot() == 53
    finally:
        part.close()


def test_an_idle_partition_asks_to_be_woken_later_instead_of_spinning(kafka_bootstrap, tmp_topic):
    topic = tmp_topic(partitions=1)
    source = _source(kafka_bootstrap, topic, tail=True, idle_poll=timedelta(milliseconds=50))
    part = source.build_part("read", f"0-{topic}", None)
    try:
        _drain(part, lambda bs: any(b.at_end for b in bs))
        assert part.next_batch() == [] or part.next_batch() == []
        wake = part.next_awake()
        assert wake is not None
    finally:
        part.close()


def test_the_flow_source_reads_from_where_the_settings_say(kafka_bootstrap):
    settings = FlowSettings(kafka_bootstrap_servers=kafka_bootstrap, kafka_start_from="latest")
    assert kafka_source(settings)._starting_offset == OFFSET_END
    settings = FlowSettings(kafka_bootstrap_servers=kafka_bootstrap, kafka_stop_at_end=True)
    source = kafka_source(settings)
    assert (source._starting_offset, source._tail) == (OFFSET_BEGINNING, False)


class _StarvedClock:
    """A clock that runs a minute ahead every time it is read.

    To the flow, every batch then arrives a long while after the one before: what a
    worker starved of CPU looks like to a stateful step on another worker while it
    works off a backlog. Deterministic, unlike real starvation.
    """

    def __init__(self, now_ms: int) -> None:
        self._now_ms = now_ms

    def now_ms(self) -> int:
        self._now_ms += 60_000
        return self._now_ms


def _run_to_end(settings: FlowSettings, clock: Any) -> list[Any]:
    out: list[Any] = []
    run_main(build_flow(settings, sink=TestingSink(out), dlq_sink=TestingSink([]), clock=clock))
    return out


def _results(out: list[Any]) -> tuple[dict[Any, Any], dict[Any, Any], PipelineCounters]:
    windows = {(r.window, r.device_id, r.metric, r.start_ms): r for r in out if isinstance(r, WindowStats)}
    activity = {(r.window, r.start_ms): r for r in out if isinstance(r, ActivityWindow)}
    counters = [r for r in out if isinstance(r, PipelineCounters)][-1]
    return windows, activity, counters


def test_a_backlog_delivered_slowly_gives_the_same_results_as_one_delivered_at_once(
    kafka_bootstrap, kafka_admin, redis_url
):
    # A backlog read to its end: partitions are not idle, however long the clock runs between
    # their batches, so no window may close early and no on-time event may become late.
    topics = make_topics(kafka_admin, kafka_bootstrap, redis_url)
    try:
        readings, events = simulated_events(3_000, 1_500, T0)
        produce(kafka_bootstrap, topics.iot, readings)
        produce(kafka_bootstrap, topics.activity, events)
        settings = FlowSettings(
            kafka_bootstrap_servers=kafka_bootstrap,
            iot_topic=topics.iot,
            activity_topic=topics.activity,
            kafka_stop_at_end=True,
            kafka_batch_size=40,
        )
        at_once = _results(_run_to_end(settings, ManualClock(T0 + 86_400_000)))
        starved = _results(_run_to_end(settings, _StarvedClock(T0 + 86_400_000)))
    finally:
        delete_topics(kafka_admin, topics)
    assert at_once[2].events_in == 4_500 and at_once[2].late_events == 0
    assert starved[2].late_events == 0, "events of a slow partition were counted late"
    assert starved[0] == at_once[0]
    assert starved[1] == at_once[1]


def test_under_steady_traffic_batches_say_the_partition_is_read_to_its_end(
    kafka_bootstrap, tmp_topic, make_producer
):
    # librdkafka's end-of-partition event only comes after a fetch that waited fetch.wait.max.ms
    # (500 ms) in vain: with a message every 100 ms it never comes, yet the consumer is caught up.
    topic = tmp_topic(partitions=1)
    part = _source(kafka_bootstrap, topic, tail=True).build_part("read", f"0-{topic}", None)
    producer = make_producer(**{"linger.ms": 0})
    got: list[KafkaBatch] = []
    try:
        _drain(part, lambda bs: any(b.at_end for b in bs))
        for i in range(20):
            producer.produce(topic, value=b"v%d" % i)
            producer.flush(10)
            deadline = time.monotonic() + 0.1
            while time.monotonic() < deadline:
                got.extend(part.next_batch())
                time.sleep(0.005)
        before = sum(len(b.values) for b in got)
        got.extend(_drain(part, lambda bs: before + sum(len(b.values) for b in bs) >= 20))
    finally:
        part.close()
    with_data = [b for b in got if b.values]
    assert sum(len(b.values) for b in with_data) == 20
    caught_up = sum(b.at_end for b in with_data)
    assert caught_up >= len(with_data) // 2, f"{caught_up} of {len(with_data)} batches said at end"
