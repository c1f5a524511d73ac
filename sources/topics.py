"""The pipeline's topics (DESIGN.md, Kafka contract) and their idempotent creation.

``python -m sources.topics`` creates what is missing, leaves what matches alone,
and reports (exit status 1) a topic whose partition count differs from the
settings: changing it would re-shard keys, so that is a decision for a human.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from enum import StrEnum

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from config.settings import KafkaConnection, load_settings

DLQ_MAX_MESSAGE_BYTES = 4 * 1024 * 1024
"""A dead letter carries its original message (up to the source topic's 1 MiB limit, base64
inflated when binary) plus context, so the DLQ topic and its producer allow 4 MiB."""


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """A topic as the pipeline needs it."""

    name: str
    partitions: int
    replication_factor: int = 1
    config: tuple[tuple[str, str], ...] = ()
    """Topic-level configuration set at creation, e.g. ``(("max.message.bytes", "4194304"),)``."""


class TopicOutcome(StrEnum):
    """What `ensure_topics` found or did for one topic."""

    CREATED = "created"
    EXISTS = "exists"
    MISMATCH = "mismatch"


@dataclass(frozen=True, slots=True)
class TopicReport:
    """Outcome for one topic; `actual_partitions` is set when it already existed."""

    spec: TopicSpec
    outcome: TopicOutcome
    actual_partitions: int | None = None

    def __str__(self) -> str:
        if self.outcome is TopicOutcome.MISMATCH:
            return (
                f"{self.spec.name}: has {self.actual_partitions} partitions, settings say "
                f"{self.spec.partitions} (not changed)"
            )
        return f"{self.spec.name}: {self.outcome.value} ({self.spec.partitions} partitions)"


def topic_specs(settings: KafkaConnection) -> list[TopicSpec]:
    """The three topics of the pipeline, named and sized by `settings`."""
    return [
        TopicSpec(settings.iot_topic, settings.iot_partitions),
        TopicSpec(settings.activity_topic, settings.activity_partitions),
        TopicSpec(
            settings.dlq_topic,
            settings.dlq_partitions,
            config=(("max.message.bytes", str(DLQ_MAX_MESSAGE_BYTES)),),
        ),
    ]


def _visible_partitions(admin: AdminClient, name: str, timeout_s: float) -> int:
    """Partition count of an existing topic, once the broker's metadata shows it.

    A broker's metadata lags a topic's creation by a moment; until then the topic is
    unknown to it, which must not read as "0 partitions".
    """
    deadline = time.monotonic() + timeout_s
    while True:
        meta = admin.list_topics(name, timeout=timeout_s).topics.get(name)
        if meta is not None and meta.error is None and meta.partitions:
            return len(meta.partitions)
        if time.monotonic() >= deadline:
            reason = (
                f"topic {name} exists, but the broker's metadata did not show it within {timeout_s:.0f} s"
            )
            raise KafkaException(KafkaError(KafkaError._UNKNOWN_TOPIC, reason))
        time.sleep(0.05)


def ensure_topics(admin: AdminClient, specs: list[TopicSpec], timeout_s: float = 30.0) -> list[TopicReport]:
    """Create missing topics; report existing ones and partition-count mismatches."""
    existing = admin.list_topics(timeout=timeout_s).topics
    reports: dict[str, TopicReport] = {}
    to_create = []
    for spec in specs:
        meta = existing.get(spec.name)
        if meta is None:
            to_create.append(spec)
            continue
        actual = len(meta.partitions)
        outcome = TopicOutcome.EXISTS if actual == spec.partitions else TopicOutcome.MISMATCH
        reports[spec.name] = TopicReport(spec, outcome, actual)
    if to_create:
        futures = admin.create_topics(
            [
                NewTopic(
                    s.name,
                    num_partitions=s.partitions,
                    replication_factor=s.replication_factor,
                    config=dict(s.config),
                )
                for s in to_create
            ],
            operation_timeout=timeout_s,
        )
        for spec in to_create:
            try:
                futures[spec.name].result(timeout=timeout_s)
                reports[spec.name] = TopicReport(spec, TopicOutcome.CREATED)
            except KafkaException as exc:
                # It exists but our listing missed it: another process created it meanwhile,
                # or it was created so recently that the broker's metadata did not show it yet.
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise
                actual = _visible_partitions(admin, spec.name, timeout_s)
                outcome = TopicOutcome.EXISTS if actual == spec.partitions else TopicOutcome.MISMATCH
                reports[spec.name] = TopicReport(spec, outcome, actual)
    return [reports[s.name] for s in specs]


def main() -> int:
    """Create the pipeline's topics; exit 1 if an existing one does not match."""
    settings = load_settings(KafkaConnection)
    admin = AdminClient(settings.kafka_client_config())
    reports = ensure_topics(admin, topic_specs(settings))
    for report in reports:
        print(f"[topics] {report}", file=sys.stderr)
    return 1 if any(r.outcome is TopicOutcome.MISMATCH for r in reports) else 0


if __name__ == "__main__":
    sys.exit(main())
