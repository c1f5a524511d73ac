"""The pipeline's topics (DESIGN.md, Kafka contract) and their idempotent creation.

``python -m sources.topics`` creates what is missing, leaves what matches alone,
and reports (exit status 1) a topic whose partition count differs from the
settings: changing it would re-shard keys, so that is a decision for a human.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from enum import StrEnum

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from config.settings import KafkaConnection, load_settings


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """A topic as the pipeline needs it."""

    name: str
    partitions: int
    replication_factor: int = 1


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
        TopicSpec(settings.dlq_topic, settings.dlq_partitions),
    ]


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
                NewTopic(s.name, num_partitions=s.partitions, replication_factor=s.replication_factor)
                for s in to_create
            ],
            operation_timeout=timeout_s,
        )
        for spec in to_create:
            try:
                futures[spec.name].result(timeout=timeout_s)
                reports[spec.name] = TopicReport(spec, TopicOutcome.CREATED)
            except KafkaException as exc:
                # Another process created it between our listing and our request.
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise
                actual = len(admin.list_topics(spec.name, timeout=timeout_s).topics[spec.name].partitions)
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
