"""The replay marker: how a message replayed from the dead-letter topic is recognised (pure).

``python -m sinks.dlq replay`` sends a dead letter's original key and value back to
its source topic with one extra Kafka header, ``x-dlq-replayed-from``, whose value
names the dead letter it came from (``<dlq topic>:<partition>:<offset>``). If that
message fails again, its new dead letter points at it (topic, partition, offset), and
the tool reads the failed message's own headers there and refuses to replay it once
more: a fix that did not work sends a message back to the DLQ once, never round and
round. (The dead letter's Kafka record does not copy the marker: the flow's input
does not carry headers, so the check needs the failed message still in its topic.)

Headers are what confluent-kafka's ``Message.headers()`` holds: a sequence of
``(name, value)`` pairs (or None).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Self

REPLAY_HEADER = "x-dlq-replayed-from"
"""Kafka header on a replayed message; its value is the `DlqPosition` it was replayed from."""

HeaderValue = bytes | str | None
Headers = Iterable[tuple[str, HeaderValue]] | None


@dataclass(frozen=True, slots=True, order=True)
class DlqPosition:
    """Where a record sits in the dead-letter topic."""

    topic: str
    partition: int
    offset: int

    def __str__(self) -> str:
        # Kafka topic names cannot contain ':', so this parses back unambiguously.
        return f"{self.topic}:{self.partition}:{self.offset}"

    @classmethod
    def parse(cls, text: str) -> Self:
        """Inverse of `str`; raises `ValueError` naming the expected form."""
        topic, _, rest = text.strip().partition(":")
        partition, _, offset = rest.partition(":")
        if not topic or not partition.isdigit() or not offset.isdigit():
            raise ValueError(f"expected <topic>:<partition>:<offset>, got {text!r}")
        return cls(topic, int(partition), int(offset))


def replay_marker(position: DlqPosition) -> tuple[str, bytes]:
    """The header that marks a message as replayed from the dead letter at `position`."""
    return REPLAY_HEADER, str(position).encode()


def replayed_from(headers: Headers) -> str | None:
    """The dead letter a message was replayed from, or None if it is not a replay.

    Args:
        headers: The message's Kafka headers (None when it has none).

    Returns:
        The marker's value as text (``<dlq topic>:<partition>:<offset>``, undecodable
        bytes replaced), or None.
    """
    for name, value in headers or ():
        if name == REPLAY_HEADER:
            if value is None:
                return ""
            return value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    return None
