"""The flow's custom operators: each one step of the pipeline diagram.

Shapes (``Keyed[X]`` is a stream of ``(key, X)``)::

    decode            Stream[KafkaBatch]         -> iot: Keyed[IotBlock] (by device)
                                                    activity: Keyed[ActivityBlock] (one key)
                                                    dead_letters: Stream[DeadLetter]
                                                    counts: Stream[CounterDelta]
    iot_analytics     Keyed[IotBlock]      -> records: Stream[SinkRecord], late: Keyed[LateCount]
    activity_analytics Keyed[ActivityBlock] -> records: Stream[SinkRecord], late: Keyed[LateCount]
    count_pipeline    Stream[CounterDelta] + Keyed[LateCount]... -> Stream[PipelineCounters]

Every step works batch-wise (`flat_map_batch`, `stateful_batch`): one Python
call per batch, and one item per key per batch between steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Stream, operator
from bytewax.operators import KeyedStream

from flows.clock import Clock
from flows.decode import ActivityBlock, Decoder, IotBlock
from flows.logic import (
    ACTIVITY_KEY,
    PIPELINE_KEY,
    CounterDelta,
    CountersLogic,
    IotParams,
    KeyOutput,
    LateCount,
    SinkRecord,
    activity_builder,
    device_builder,
)
from sinks.records import PipelineCounters
from sources.models import DeadLetter

_IOT, _ACTIVITY, _DEAD, _COUNT = range(4)


@dataclass(frozen=True)
class DecodeOut:
    """Streams out of `decode`."""

    iot: KeyedStream[IotBlock]
    """One block per device per batch, keyed by device id."""
    activity: KeyedStream[ActivityBlock]
    """One block per activity partition per batch, all under one key."""
    dead_letters: Stream[DeadLetter]
    """Messages that could not be decoded or validated."""
    counts: Stream[CounterDelta]
    """Messages read, dead letters and newest event time, one per batch."""


@dataclass(frozen=True)
class AnalyticsOut:
    """Streams out of an analytics step."""

    records: Stream[SinkRecord]
    """Typed records for the sink."""
    late: KeyedStream[LateCount]
    """Late-event counts per key (device id, or ``activity``), when they change."""


def _explode(decoder: Decoder, batch: list[Any]) -> list[tuple[int, Any]]:
    decoded = decoder.decode(batch)
    items: list[tuple[int, Any]] = [(_IOT, (b.device_id, b)) for b in decoded.iot]
    items.extend((_ACTIVITY, (ACTIVITY_KEY, b)) for b in decoded.activity)
    items.extend((_DEAD, d) for d in decoded.dead)
    items.append(
        (
            _COUNT,
            CounterDelta(
                events_in=decoded.events_in, dead_letters=len(decoded.dead), newest_ms=decoded.newest_ms
            ),
        )
    )
    return items


@operator
def decode(step_id: str, up: Stream[Any], decoder: Decoder) -> DecodeOut:
    """Decode and validate raw Kafka batches of both topics; failures become dead letters."""
    tagged = op.flat_map_batch("decode_batch", up, lambda batch: _explode(decoder, batch))
    return DecodeOut(
        iot=op.filter_map("iot_blocks", tagged, lambda t: t[1] if t[0] == _IOT else None),
        activity=op.filter_map("activity_blocks", tagged, lambda t: t[1] if t[0] == _ACTIVITY else None),
        dead_letters=op.filter_map("dead_letters", tagged, lambda t: t[1] if t[0] == _DEAD else None),
        counts=op.filter_map("batch_counts", tagged, lambda t: t[1] if t[0] == _COUNT else None),
    )


def _split(step_id: str, outputs: KeyedStream[KeyOutput]) -> AnalyticsOut:
    records = op.flat_map_batch(f"{step_id}_records", outputs, lambda b: [r for _, o in b for r in o.records])
    late = op.flat_map_batch(
        f"{step_id}_late", outputs, lambda b: [(o.late.key, o.late) for _, o in b if o.late is not None]
    )
    return AnalyticsOut(records, late)


@operator
def iot_analytics(step_id: str, up: KeyedStream[IotBlock], params: IotParams, clock: Clock) -> AnalyticsOut:
    """Per device: windows with p99, z-score alerts, trends and the latest reading."""
    outputs = op.stateful_batch("devices", up, device_builder(params, clock))
    return _split("split", outputs)


@operator
def activity_analytics(
    step_id: str,
    up: KeyedStream[ActivityBlock],
    window_ms: int,
    lateness_ms: int,
    clock: Clock,
    partitions: int = 1,
) -> AnalyticsOut:
    """Site activity windows (closed once all the topic's `partitions` passed them) and the leaderboard."""
    outputs = op.stateful_batch("site", up, activity_builder(window_ms, lateness_ms, clock, partitions))
    return _split("split", outputs)


@operator
def count_pipeline(
    step_id: str, counts: Stream[CounterDelta], *late: KeyedStream[LateCount]
) -> Stream[PipelineCounters]:
    """Absolute pipeline counters (events in, dead letters, late events, newest event time)."""
    late_deltas = [
        op.map(f"late_delta_{i}", s, lambda kv: CounterDelta(late_events=kv[1].delta))
        for i, s in enumerate(late)
    ]
    merged = op.merge("all_deltas", counts, *late_deltas)
    keyed = op.key_on("to_one_key", merged, lambda _: PIPELINE_KEY)
    totals = op.stateful_batch("totals", keyed, CountersLogic)
    return op.key_rm("unkey", totals)
