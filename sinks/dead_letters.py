"""The dataflow's dead-letter output: `DeadLetter` records produced to the DLQ topic.

Each worker owns one idempotent producer. `write_batch` returns only after the
broker has acknowledged every dead letter of the batch, so a recovery snapshot
taken after it never covers a dead letter that is not in Kafka (at-least-once).
The record's key is the failed message's original key (DESIGN.md, Kafka contract).
"""

from __future__ import annotations

from typing import Any

import structlog
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from confluent_kafka import KafkaError, Message, Producer

from config.settings import KafkaConnection
from sources.models import DeadLetter
from sources.topics import DLQ_MAX_MESSAGE_BYTES

log = structlog.get_logger(__name__)

DLQ_PRODUCER_CONFIG: dict[str, Any] = {
    "enable.idempotence": True,
    "acks": "all",
    "compression.type": "lz4",
    "linger.ms": 5,
    "message.max.bytes": DLQ_MAX_MESSAGE_BYTES,
}


class DeadLetterWriteError(RuntimeError):
    """The broker did not acknowledge a dead letter; the flow stops rather than lose it."""


class _DeadLetterPartition(StatelessSinkPartition[DeadLetter]):
    def __init__(self, producer: Producer, topic: str, flush_timeout_s: float) -> None:
        self._producer = producer
        self._topic = topic
        self._flush_timeout_s = flush_timeout_s
        self._failures: list[KafkaError] = []

    def _on_delivery(self, err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            self._failures.append(err)

    def write_batch(self, items: list[DeadLetter]) -> None:
        for dead in items:
            value = dead.to_json()
            while True:
                try:
                    self._producer.produce(
                        self._topic, value=value, key=dead.original_key(), on_delivery=self._on_delivery
                    )
                    break
                except BufferError:  # local queue full: let deliveries drain, then retry
                    self._producer.poll(0.1)
        remaining = self._producer.flush(self._flush_timeout_s)
        if self._failures or remaining:
            errors = sorted({str(e) for e in self._failures})
            self._failures.clear()
            log.error("dead_letters_not_delivered", topic=self._topic, undelivered=remaining, errors=errors)
            raise DeadLetterWriteError(f"{remaining} dead letters unacknowledged, errors: {errors}")

    def close(self) -> None:
        self._producer.flush(self._flush_timeout_s)


class DeadLetterSink(DynamicSink[DeadLetter]):
    """Produces `DeadLetter` records to the dead-letter topic, one idempotent producer per worker."""

    def __init__(self, settings: KafkaConnection, flush_timeout_s: float = 60.0) -> None:
        """Configure from the Kafka connection settings (security settings included)."""
        self._settings = settings
        self._flush_timeout_s = flush_timeout_s

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _DeadLetterPartition:
        """One producer for this worker."""
        producer = Producer({**self._settings.kafka_client_config(), **DLQ_PRODUCER_CONFIG})
        return _DeadLetterPartition(producer, self._settings.dlq_topic, self._flush_timeout_s)
