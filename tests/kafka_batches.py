"""Raw Kafka messages for tests and benchmarks, cut into the flow's input items (`KafkaBatch`).

Test support, not product code. `as_batches` turns a recorded stream of messages
(any order of topics and partitions) into what the flow's per-partition source
would yield: chunks of at most `size` consecutive messages, each chunk split by
topic and partition, arrival order kept. A batch says ``at_end`` when it is the
last of its partition before a pause of the stream (a `TestingSource` sentinel)
or the stream's end: the consumer would then have read all there was.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from flows.kafka_input import KafkaBatch


@dataclass(frozen=True, slots=True)
class RawMessage:
    """One message as read from Kafka."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


def as_batches(items: Iterable[RawMessage | Any], size: int = 5000) -> list[KafkaBatch | Any]:
    """Cut messages into `KafkaBatch` items (see the module docstring); other items stay in place."""
    out: list[KafkaBatch | Any] = []
    chunk: list[RawMessage] = []
    segment_start = 0

    def flush() -> None:
        groups: dict[tuple[str, int], list[RawMessage]] = {}
        for m in chunk:
            groups.setdefault((m.topic, m.partition), []).append(m)
        for (topic, partition), msgs in groups.items():
            out.append(
                KafkaBatch(
                    topic=topic,
                    partition=partition,
                    values=[m.value for m in msgs],
                    keys=[m.key for m in msgs],
                    offsets=[m.offset for m in msgs],
                    at_end=False,
                )
            )
        chunk.clear()

    def end_segment() -> None:
        flush()
        last: dict[tuple[str, int], int] = {}
        for i in range(segment_start, len(out)):
            b = out[i]
            if isinstance(b, KafkaBatch):
                last[(b.topic, b.partition)] = i
        for i in last.values():
            b = out[i]
            out[i] = KafkaBatch(b.topic, b.partition, b.values, b.keys, b.offsets, True, b.faults)

    for item in items:
        if isinstance(item, RawMessage):
            chunk.append(item)
            if len(chunk) >= size:
                flush()
        else:
            end_segment()
            out.append(item)
            segment_start = len(out)
    end_segment()
    return out
