"""The flow's Kafka input: one consumer per partition, one item per consumed batch.

Bytewax's own `KafkaSource` builds a Python `KafkaSourceMessage` per message
(a quarter of the end-to-end time in a profile); this source hands each batch
over as it came from librdkafka: lists of raw values, keys and offsets of one
partition (`KafkaBatch`), which `flows.decode` turns into arrays.

What it keeps of Bytewax's source: every partition of every topic is a
partition of the source (``"<partition>-<topic>"``, so recovery snapshots of
either source are interchangeable), its snapshot is the next offset to read,
a first start begins at ``starting_offset`` and a resumed one at its snapshot,
no consumer-group commits, consumer errors become values (never a crash), and
the ``bytewax_kafka_consumer_lag`` gauge.

What it adds:

* ``at_end`` on every batch: whether the consumer had read everything the
  partition held: its next offset has reached the log end that the broker
  reported in its latest fetch response (librdkafka's cached high watermark,
  no round trip), or librdkafka's end-of-partition event came after the
  batch's last message. The event alone is not enough: it only comes when a
  fetch finds nothing for ``fetch.wait.max.ms``, so under steady traffic it
  never comes. Downstream, a stream's watermark only advances with the clock
  while its partition is at its end, so a partition that is merely *slow* (a
  backlog on a busy worker) never looks idle: see `flows.watermark`. A
  partition that reaches its end without new data yields an empty batch saying
  so.
* An idle back-off: after an empty poll the partition asks to be woken
  ``idle_poll`` later instead of being polled in a loop (Bytewax's partition
  asks for no wake-up, so idle partitions cost a good part of a core).

Keys, values and offsets are read with the C methods of `confluent_kafka.Message`
mapped over the batch: no Python object per message.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import structlog
from bytewax.connectors.kafka import BYTEWAX_CONSUMER_LAG_GAUGE
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, TopicPartition
from confluent_kafka.admin import AdminClient

log = structlog.get_logger()

# The C methods, unbound: map() calls them without a Python frame per message.
_value = Message.value
_key = Message.key
_offset = cast("Callable[[Message], int]", Message.offset)  # a data message always has its offset
_error = Message.error


@dataclass(frozen=True, slots=True)
class ConsumerFault:
    """A consumer error reported for a partition (becomes a dead letter downstream)."""

    error: str
    offset: int | None = None
    key: bytes | None = None
    value: bytes | None = None


@dataclass(frozen=True, slots=True)
class KafkaBatch:
    """What one poll of one partition returned, raw, in offset order."""

    topic: str
    partition: int
    values: list[bytes | None]
    keys: list[bytes | None]
    offsets: list[int]
    at_end: bool
    """The consumer had read the whole partition (nothing was pending) after this batch."""
    faults: tuple[ConsumerFault, ...] = field(default=())

    def __len__(self) -> int:
        """Messages in the batch, consumer errors included."""
        return len(self.values) + len(self.faults)


def list_partitions(client: AdminClient, topics: Iterable[str], timeout_s: float = 30.0) -> list[str]:
    """Every partition of `topics`, named ``"<partition>-<topic>"`` as Bytewax's Kafka source names them."""
    parts: list[str] = []
    for topic in topics:
        # One topic at a time, as Bytewax does, so a broker that auto-creates topics does so.
        metadata = client.list_topics(topic, timeout=timeout_s).topics[topic]
        if metadata.error is not None:
            raise RuntimeError(f"error listing partitions of Kafka topic {topic!r}: {metadata.error.str()}")
        parts.extend(f"{idx}-{topic}" for idx in sorted(metadata.partitions))
    return parts


class KafkaPartitionReader(StatefulSourcePartition[KafkaBatch, int]):
    """Reads one Kafka partition with its own consumer (manual assignment, no group)."""

    def __init__(
        self,
        step_id: str,
        config: dict[str, Any],
        topic: str,
        partition: int,
        offset: int,
        *,
        batch_size: int,
        tail: bool,
        idle_poll: timedelta,
    ) -> None:
        """Assign the consumer to `partition` of `topic` at `offset` (a real offset or a logical one)."""
        self._topic = topic
        self._partition = partition
        self._offset = offset
        self._batch_size = batch_size
        self._tail = tail
        self._idle_poll = idle_poll
        self._at_end = False
        self._finished = False
        self._was_empty = False
        self._lag_gauge = BYTEWAX_CONSUMER_LAG_GAUGE.labels(step_id=step_id, topic=topic, partition=partition)
        config = {**config, "enable.partition.eof": True}
        if int(config.get("statistics.interval.ms", 0)):
            config["stats_cb"] = self._on_stats
        self._consumer = Consumer(config)
        self._consumer.assign([TopicPartition(topic, partition, offset)])
        self._tp = TopicPartition(topic, partition)

    def _on_stats(self, stats_json: str) -> None:
        # Called by librdkafka every statistics.interval.ms from inside consume(); as in Bytewax,
        # only once the position is a real offset (not OFFSET_BEGINNING / OFFSET_END).
        try:
            stats = json.loads(stats_json)["topics"][self._topic]["partitions"][str(self._partition)]
        except (KeyError, ValueError):
            return
        if self._offset >= 0:
            self._lag_gauge.set(max(int(stats["ls_offset"]) - self._offset, 0))

    def next_batch(self) -> list[KafkaBatch]:
        """Poll the partition once: at most one `KafkaBatch` (none when nothing came)."""
        if self._finished:
            raise StopIteration
        # Non-blocking: librdkafka fetches in its own threads, so whatever has arrived is
        # already queued. Any timeout here would be the worker thread waiting on one empty
        # partition while the others' data and the sink wait too (Bytewax's source used 1 ms:
        # with 6 partitions idle-polled every few ms, up to a third of the worker's time).
        msgs = self._consumer.consume(self._batch_size, 0)
        self._was_empty = not msgs
        if not msgs:
            if self._at_end or not self._read_to_log_end():
                return []
            # Caught up without an event (the last fetch brought nothing we had not delivered).
            self._at_end = True
            return [KafkaBatch(self._topic, self._partition, [], [], [], True)]
        if any(map(_error, msgs)):
            data, faults, eof_last = self._sort_out(msgs)
        else:
            data, faults, eof_last = msgs, (), False
        was_at_end = self._at_end
        if data:
            self._offset = _offset(data[-1]) + 1
            self._at_end = eof_last or self._read_to_log_end()
        elif eof_last:
            self._at_end = True
        if eof_last and not self._tail:
            self._finished = True  # emit this batch, stop at the next call
        if not data and not faults and was_at_end:
            return []  # the end-of-partition event of a partition already known to be at its end
        return [
            KafkaBatch(
                topic=self._topic,
                partition=self._partition,
                values=list(map(_value, data)),
                keys=list(map(_key, data)),
                offsets=list(map(_offset, data)),
                at_end=self._at_end,
                faults=faults,
            )
        ]

    def _read_to_log_end(self) -> bool:
        """Whether the next offset has reached the log end of the broker's latest fetch response."""
        if self._offset < 0:
            return False  # still a logical offset: the end-of-partition event will tell
        _low, high = self._consumer.get_watermark_offsets(self._tp, cached=True)
        return high >= 0 and self._offset >= high

    def _sort_out(self, msgs: list[Message]) -> tuple[list[Message], tuple[ConsumerFault, ...], bool]:
        """Split messages from errors; whether the partition's end was the last thing reported."""
        data: list[Message] = []
        faults: list[ConsumerFault] = []
        eof_last = False
        for msg in msgs:
            err = msg.error()
            if err is None:
                data.append(msg)
                eof_last = False
            elif err.code() == KafkaError._PARTITION_EOF:
                eof_last = True
            else:
                offset = msg.offset()
                log.warning(
                    "kafka_consumer_error", topic=self._topic, partition=self._partition, error=str(err)
                )
                faults.append(
                    ConsumerFault(
                        error=str(err),
                        offset=offset if offset is not None and offset >= 0 else None,
                        key=msg.key(),
                        value=msg.value() if isinstance(msg.value(), bytes) else None,
                    )
                )
        return data, tuple(faults), eof_last

    def next_awake(self) -> datetime | None:
        """After an empty poll, come back `idle_poll` later; otherwise at once."""
        return datetime.now(UTC) + self._idle_poll if self._was_empty else None

    def snapshot(self) -> int:
        """The next offset to read (a logical offset before the first message)."""
        return self._offset

    def close(self) -> None:
        """Leave the broker."""
        self._consumer.close()


class KafkaInput(FixedPartitionedSource[KafkaBatch, int]):
    """Every partition of `topics`; see the module docstring."""

    def __init__(
        self,
        config: dict[str, Any],
        topics: Iterable[str],
        *,
        tail: bool = True,
        starting_offset: int = OFFSET_BEGINNING,
        batch_size: int = 5000,
        idle_poll: timedelta = timedelta(milliseconds=5),
    ) -> None:
        """Configure the input.

        Args:
            config: librdkafka properties (``bootstrap.servers`` and security at least).
            topics: Topics to read, every partition of each.
            tail: Keep reading after the end of a partition (False: stop there).
            starting_offset: Where a first start reads from (``OFFSET_BEGINNING`` or ``OFFSET_END``);
                a resumed partition starts at its snapshot.
            batch_size: Most messages per poll of a partition.
            idle_poll: Wait after an empty poll before polling that partition again.
        """
        if isinstance(topics, str):
            raise TypeError("topics must be an iterable of names, not a string")
        self._config = dict(config)
        self._topics = list(topics)
        self._tail = tail
        self._starting_offset = starting_offset
        self._batch_size = batch_size
        self._idle_poll = idle_poll

    def list_parts(self) -> list[str]:
        """Each Kafka partition is a partition of the source."""
        admin_config = {k: v for k, v in self._config.items() if k != "statistics.interval.ms"}
        return list_partitions(AdminClient(admin_config), self._topics)

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> KafkaPartitionReader:
        """The reader of ``"<partition>-<topic>"``, at its snapshot or at the starting offset."""
        idx, topic = for_part.split("-", 1)
        if topic not in self._topics:
            raise ValueError(f"recovery holds partition {for_part!r} of a topic this flow does not read")
        config = {
            # Offsets live in Bytewax's recovery snapshots, not in a consumer group.
            "group.id": "BYTEWAX_IGNORED",
            "enable.auto.commit": False,
            **self._config,
        }
        return KafkaPartitionReader(
            step_id,
            config,
            topic,
            int(idx),
            self._starting_offset if resume_state is None else resume_state,
            batch_size=self._batch_size,
            tail=self._tail,
            idle_poll=self._idle_poll,
        )
