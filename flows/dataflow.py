"""The dataflow, built around any input and output (`build_flow`).

::

    read_kafka ─► decode ─┬─► write_dlq                          (dead letters)
                          ├─► iot ─────┐   (windows, alerts, trends, latest)
                          ├─► activity ├─► write_sink              (typed records)
                          └─► pipeline ┘   (absolute counters)

The source yields `bytewax.connectors.kafka.KafkaSourceMessage` items from both
topics (told apart by ``msg.topic``); the sink receives the typed records of
`sinks.records` plus `SensorReading` as "latest reading of its device"; the
dead-letter sink receives `DeadLetter` models.
"""

from __future__ import annotations

from typing import Any

import bytewax.operators as op
from bytewax.connectors.kafka import KafkaSource
from bytewax.dataflow import Dataflow
from bytewax.inputs import Source
from bytewax.outputs import Sink

from flows.clock import Clock, SystemClock
from flows.decode import Decoder
from flows.logic import IotParams, SinkRecord
from flows.operators import activity_analytics, count_pipeline, decode, iot_analytics
from flows.settings import FlowSettings
from sources.models import DeadLetter

FLOW_ID = "analytics"


def kafka_source(settings: FlowSettings) -> KafkaSource:
    """Bytewax's Kafka source on both topics, from the beginning of each partition.

    Offsets live in Bytewax's recovery snapshots, not in a consumer group.
    """
    config = {k: str(v) for k, v in settings.kafka_client_config().items()}
    return KafkaSource(
        brokers=settings.kafka_bootstrap_servers.split(","),
        topics=[settings.iot_topic, settings.activity_topic],
        add_config=config,
        batch_size=settings.kafka_batch_size,
    )


def build_flow(
    settings: FlowSettings,
    source: Source[Any] | None = None,
    sink: Sink[SinkRecord] | None = None,
    dlq_sink: Sink[DeadLetter] | None = None,
    *,
    clock: Clock | None = None,
) -> Dataflow:
    """Build the analytics dataflow.

    Args:
        settings: What to compute and where the topics are.
        source: Input of `KafkaSourceMessage` from both topics; Bytewax's Kafka source when None.
        sink: Receives the analytics records (required: the Redis sink in production).
        dlq_sink: Receives the dead letters (required: the dead-letter topic in production).
        clock: The flow's clock; the system clock when None. Tests and benchmarks pass a
            `flows.clock.ManualClock` to make the flow purely event-time driven.

    Raises:
        ValueError: If `sink` or `dlq_sink` is missing.
    """
    if sink is None:
        raise ValueError(
            "build_flow needs a sink for the analytics records (in production the Redis sink of "
            "sinks/, in tests bytewax.testing.TestingSink)"
        )
    if dlq_sink is None:
        raise ValueError(
            "build_flow needs a dead-letter sink (in production a Kafka sink on the dead-letter topic, "
            "in tests bytewax.testing.TestingSink)"
        )
    clock = clock if clock is not None else SystemClock()
    if source is None:
        source = kafka_source(settings)
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
        "activity", decoded.activity, settings.activity_ms, settings.lateness_ms, clock
    )
    counters = count_pipeline("pipeline", decoded.counts, iot.late, activity.late)
    records = op.merge("collect_records", iot.records, activity.records, counters)
    op.output("write_sink", records, sink)
    return flow
