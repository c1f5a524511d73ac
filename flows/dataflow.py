"""The dataflow, built around any input and output (`build_flow`).

::

    read_kafka ─► decode ─┬─► write_dlq                          (dead letters)
                          ├─► iot ─────┐   (windows, alerts, trends, latest)
                          ├─► activity ├─► write_sink              (typed records)
                          └─► pipeline ┘   (absolute counters)

The source yields `flows.kafka_input.KafkaBatch` items (one per poll of one
partition of either topic, raw, with an "at the partition's end" flag); the sink receives the typed records of
`sinks.records` plus `SensorReading` as "latest reading of its device"; the
dead-letter sink receives `DeadLetter` models.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import Source
from bytewax.outputs import FixedPartitionedSink, Sink
from confluent_kafka import OFFSET_BEGINNING, OFFSET_END

from flows.clock import Clock, SystemClock
from flows.decode import Decoder
from flows.kafka_input import KafkaInput
from flows.logic import IotParams, SinkRecord
from flows.metrics import FlowMetrics
from flows.operators import activity_analytics, count_pipeline, decode, iot_analytics
from flows.settings import FlowSettings
from sinks.dead_letters import DeadLetterSink
from sinks.redis_sink import RedisSink, sink_key
from sources.models import DeadLetter

FLOW_ID = "analytics"


def kafka_source(settings: FlowSettings) -> KafkaInput:
    """The flow's Kafka input on both topics (`flows.kafka_input`).

    Offsets live only in Bytewax's recovery snapshots (no consumer-group commits):
    a first start reads from ``PIPELINE_KAFKA_START_FROM``, a resumed one from its
    snapshot. Consumer errors become values (dead letters), never a crash.
    """
    config: dict[str, Any] = dict(settings.kafka_client_config())
    config["statistics.interval.ms"] = settings.kafka_statistics_interval_ms
    queue_kbytes = settings.kafka_consumer_queue_kbytes
    config["queued.max.messages.kbytes"] = queue_kbytes
    # One fetch may not exceed the bound either (librdkafka's default per partition is 1 MiB).
    config["max.partition.fetch.bytes"] = min(queue_kbytes * 1024, 1_048_576)
    return KafkaInput(
        config,
        [settings.iot_topic, settings.activity_topic],
        tail=not settings.kafka_stop_at_end,
        starting_offset=OFFSET_BEGINNING if settings.kafka_start_from == "earliest" else OFFSET_END,
        batch_size=settings.kafka_batch_size,
        idle_poll=timedelta(milliseconds=settings.kafka_idle_poll_ms),
    )


def build_flow(
    settings: FlowSettings,
    source: Source[Any] | None = None,
    sink: Sink[SinkRecord] | FixedPartitionedSink[SinkRecord, Any] | None = None,
    dlq_sink: Sink[DeadLetter] | None = None,
    *,
    clock: Clock | None = None,
    metrics: FlowMetrics | None = None,
) -> Dataflow:
    """Build the analytics dataflow.

    Args:
        settings: What to compute, where the topics are, how to write Redis.
        source: Input of `KafkaBatch` items from both topics; `kafka_source` when None.
        sink: Receives the analytics records; the Redis sink (`sinks.redis_sink`) when None. A
            partitioned sink (like that one) receives them keyed by `sinks.redis_sink.sink_key`.
        dlq_sink: Receives the dead letters; the dead-letter topic (`sinks.dead_letters`) when None.
        clock: The flow's clock; the system clock when None. Tests and benchmarks pass a
            `flows.clock.ManualClock` to make the flow purely event-time driven.
        metrics: Takes note of every emitted record for Prometheus; none kept when None.
    """
    clock = clock if clock is not None else SystemClock()
    source = source if source is not None else kafka_source(settings)
    sink = sink if sink is not None else RedisSink(settings)
    dlq_sink = dlq_sink if dlq_sink is not None else DeadLetterSink(settings)
    decoder = Decoder(
        iot_topic=settings.iot_topic,
        activity_topic=settings.activity_topic,
        max_future_ms=settings.max_future_ms,
        clock=clock,
    )

    flow = Dataflow(FLOW_ID)
    messages = op.input("read_kafka", flow, source)
    decoded = decode("decode", messages, decoder)
    op.output("write_dlq", decoded.dead_letters, dlq_sink)
    iot = iot_analytics("iot", decoded.iot, IotParams.from_settings(settings), clock)
    activity = activity_analytics(
        "activity",
        decoded.activity,
        settings.activity_ms,
        settings.lateness_ms,
        clock,
        settings.activity_partitions,
    )
    counters = count_pipeline("pipeline", decoded.counts, iot.late, activity.late)
    records = op.merge("collect_records", iot.records, activity.records, counters)
    if metrics is not None:
        # Batch-wise, passing the records through: one call per batch, not per record.
        records = op.flat_map_batch("observe_records", records, metrics.observe_batch)
    if isinstance(sink, FixedPartitionedSink):
        # The Redis sink is partitioned (its snapshots hold what Redis has not taken yet):
        # it takes (key, record), each key owned by one sink partition, so writes per key stay in order.
        op.output("write_sink", op.key_on("key_for_sink", records, sink_key), sink)
    else:
        op.output("write_sink", records, sink)
    return flow
