"""Dead-letter tooling: list, inspect, count and replay the pipeline's dead letters.

Usage::

    python -m sinks.dlq list    [--error-type T] [--topic T] [--stage S] [--limit N] [--scan-last N] [--json]
    python -m sinks.dlq inspect POSITION [--full] [--json]
    python -m sinks.dlq count   [--error-type T] [--topic T] [--stage S] [--scan-last N] [--json]
    python -m sinks.dlq replay  (POSITION... | --error-type T / --topic T / --stage S) [--dry-run] [--json]

A POSITION is a dead letter's offset in the DLQ topic (``41``, partition 0), or
``PARTITION:OFFSET`` (``2:41``) when the DLQ has several partitions. Filters
match a dead letter's error type, source topic and failed stage exactly.

The DLQ topic (``PIPELINE_DLQ_TOPIC``) is read with a plain, assigned consumer:
it joins no group and commits nothing, so it never disturbs anything else.
Payloads are shown safely: control and format characters (terminal escapes,
bidi overrides) escaped, binary as a hex dump, long ones cut unless ``--full``.

``replay`` sends each chosen dead letter's original key and value back to its
source topic (the partition it came from when that still exists), marked with
the header ``x-dlq-replayed-from`` (`sinks.replay`). It refuses, with the reason:

* a dead letter of a message that was itself a replay (marker on the dead
  letter's record, put there by the dataflow, or on the failed source message
  when Kafka still has it), so a message that keeps failing is never looped;
* a dead letter whose source topic is not one of the pipeline's input topics
  (``PIPELINE_IOT_TOPIC``, ``PIPELINE_ACTIVITY_TOPIC``), e.g. the DLQ itself;
* a record of the DLQ topic that is not a readable `DeadLetter`.

Replaying the same dead letter twice sends it twice. ``--dry-run`` shows what
would be sent. Exit status: 0 when everything chosen was shown or replayed, 1
when something was refused, failed or not found, 2 for bad arguments or settings.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import structlog
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from pydantic import ValidationError

from config.logging import configure_logging
from config.settings import load_settings
from sinks.replay import DlqPosition, replay_marker, replayed_from
from sinks.settings import DlqToolSettings
from sources.models import DeadLetter

log = structlog.get_logger(__name__)

UNREADABLE = "UnreadableDeadLetter"
"""Error type under which records of the DLQ topic that are not a `DeadLetter` are listed."""

PREVIEW_CHARS = 60
INSPECT_BYTES = 4096
"""Payload bytes `inspect` shows unless --full."""

_FATAL_READ_ERRORS = {
    KafkaError.UNKNOWN_TOPIC_OR_PART,
    KafkaError.TOPIC_AUTHORIZATION_FAILED,
    KafkaError._UNKNOWN_PARTITION,
    KafkaError._UNKNOWN_TOPIC,
}
"""Consumer errors that waiting will not cure; librdkafka recovers from the others itself."""


class DlqError(RuntimeError):
    """The DLQ topic could not be read (missing, timed out); the message says what to do."""


# --- records and selection -------------------------------------------------


@dataclass(frozen=True, slots=True)
class DlqRecord:
    """One record of the DLQ topic: a `DeadLetter`, or why it is not one."""

    position: DlqPosition
    timestamp_ms: int | None
    """The record's Kafka timestamp (ms), when it has one."""
    headers: tuple[tuple[str, bytes | None], ...]
    dead_letter: DeadLetter | None
    unreadable: str | None = None
    """Why the value is not a `DeadLetter` (then `dead_letter` is None)."""
    raw: bytes | None = field(default=None, repr=False)
    """The record's value when it is unreadable, to show it."""

    @property
    def replayed_from(self) -> str | None:
        """The dead letter the failed message had been replayed from (the dataflow's marker)."""
        return replayed_from(self.headers)

    @property
    def error_type(self) -> str:
        """The dead letter's error type (`UNREADABLE` for a record that is not one)."""
        return UNREADABLE if self.dead_letter is None else self.dead_letter.error_type

    @property
    def source_topic(self) -> str | None:
        """The topic the failed message came from."""
        return None if self.dead_letter is None else self.dead_letter.topic

    @property
    def stage(self) -> str | None:
        """The pipeline stage that failed."""
        return None if self.dead_letter is None else self.dead_letter.stage


@dataclass(frozen=True, slots=True)
class Selection:
    """Which dead letters a command is about: exact matches on each given field."""

    error_type: str | None = None
    topic: str | None = None
    stage: str | None = None

    def __bool__(self) -> bool:
        return any(v is not None for v in (self.error_type, self.topic, self.stage))

    def matches(self, record: DlqRecord) -> bool:
        """True if `record` has every field this selection names."""
        return (
            (self.error_type is None or record.error_type == self.error_type)
            and (self.topic is None or record.source_topic == self.topic)
            and (self.stage is None or record.stage == self.stage)
        )


def parse_record(msg: Message) -> DlqRecord:
    """Turn a consumed DLQ message into a `DlqRecord`; never raises on a bad value."""
    ts_type, ts = msg.timestamp()
    position = DlqPosition(msg.topic() or "", msg.partition() or 0, msg.offset() or 0)
    headers = message_headers(msg)
    value = msg.value()
    try:
        if value is None:
            raise ValueError("the record has no value (a tombstone)")
        dead_letter = DeadLetter.from_json(value)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"])
        reason = f"not a DeadLetter: {where + ': ' if where else ''}{first['msg']}"
        return DlqRecord(position, ts if ts_type else None, headers, None, reason, value)
    except ValueError as exc:
        reason = f"not a DeadLetter: {exc}"
        return DlqRecord(position, ts if ts_type else None, headers, None, reason, value)
    return DlqRecord(position, ts if ts_type else None, headers, dead_letter)


def message_headers(msg: Message) -> tuple[tuple[str, bytes | None], ...]:
    """A consumed message's headers as (name, bytes or None) pairs."""
    raw = msg.headers() or ()
    pairs = raw.items() if isinstance(raw, dict) else raw
    return tuple((str(name), value.encode() if isinstance(value, str) else value) for name, value in pairs)


# --- reading the DLQ topic ---------------------------------------------------


class DlqReader:
    """A plain consumer (assigned partitions, no group membership, no commits) on the DLQ topic."""

    def __init__(self, settings: DlqToolSettings) -> None:
        """Create the consumer; it connects lazily.

        Args:
            settings: Broker, security, the DLQ topic and the read timeout.
        """
        self.settings = settings
        self.topic = settings.dlq_topic
        self._partitions: dict[str, list[int]] = {}
        # group.id is required by librdkafka, but nothing joins the group or commits to it.
        self._consumer = Consumer(
            settings.kafka_client_config()
            | {
                "group.id": f"dlq-tool-{uuid.uuid4().hex[:12]}",
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "enable.partition.eof": True,
                "auto.offset.reset": "earliest",
            }
        )

    def __enter__(self) -> DlqReader:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the consumer (no commits: it never had a group)."""
        self._consumer.close()

    def partitions(self, topic: str | None = None) -> list[int]:
        """Partition ids of `topic` (default: the DLQ topic); raises `DlqError` if it does not exist."""
        topic = topic or self.topic
        if topic not in self._partitions:  # one metadata request per topic and run
            meta = self._consumer.list_topics(topic, timeout=self.settings.dlq_read_timeout_s).topics.get(
                topic
            )
            if meta is None or meta.error is not None:
                raise DlqError(
                    f"topic {topic!r} does not exist (create the pipeline's topics: python -m sources.topics)"
                )
            self._partitions[topic] = sorted(meta.partitions)
        return self._partitions[topic]

    def scan(self, scan_last: int | None = None) -> Iterator[DlqRecord]:
        """Every record of the DLQ topic as it is now (records written meanwhile are not waited for).

        Args:
            scan_last: Read only the newest N records of each partition.

        Raises:
            DlqError: The topic is missing, or reading it took longer than ``dlq_read_timeout_s``.
        """
        starts: dict[int, int] = {}
        ends: dict[int, int] = {}
        timeout = self.settings.dlq_read_timeout_s
        for p in self.partitions():
            low, high = self._consumer.get_watermark_offsets(TopicPartition(self.topic, p), timeout=timeout)
            start = low if scan_last is None else max(low, high - scan_last)
            if high > start:
                starts[p], ends[p] = start, high
        for msg in self._read(self.topic, {p: (starts[p], ends[p]) for p in starts}):
            yield parse_record(msg)

    def fetch(self, partition: int, offset: int) -> DlqRecord | None:
        """The DLQ record at `partition`/`offset`, None if there is none (never written, or deleted)."""
        if partition not in self.partitions():
            return None
        msg = self._message_at(self.topic, partition, offset)
        return None if msg is None else parse_record(msg)

    def source_headers(self, dead_letter: DeadLetter) -> list[tuple[str, bytes | None]] | None:
        """Headers of the message `dead_letter` was made from, None when Kafka no longer has it."""
        if dead_letter.partition is None or dead_letter.offset is None:
            return None
        try:
            if dead_letter.partition not in self.partitions(dead_letter.topic):
                return None
        except DlqError:
            return None
        msg = self._message_at(dead_letter.topic, dead_letter.partition, dead_letter.offset)
        return None if msg is None else list(message_headers(msg))

    def _message_at(self, topic: str, partition: int, offset: int) -> Message | None:
        tp = TopicPartition(topic, partition)
        low, high = self._consumer.get_watermark_offsets(tp, timeout=self.settings.dlq_read_timeout_s)
        if not low <= offset < high:
            return None
        # A deleted or compacted offset yields the next one, which _read leaves out.
        return next(self._read(topic, {partition: (offset, offset + 1)}), None)

    def _read(self, topic: str, ranges: dict[int, tuple[int, int]]) -> Iterator[Message]:
        """The messages of `topic` at offsets [start, end) of each partition, per partition in order."""
        if not ranges:
            return
        self._consumer.assign([TopicPartition(topic, p, start) for p, (start, _) in ranges.items()])
        pending = {p for p, (start, end) in ranges.items() if end > start}
        deadline = time.monotonic() + self.settings.dlq_read_timeout_s
        try:
            while pending:
                if time.monotonic() > deadline:
                    raise DlqError(
                        f"reading {topic} took longer than {self.settings.dlq_read_timeout_s:.0f}s "
                        f"(partitions {sorted(pending)} unfinished); raise PIPELINE_DLQ_READ_TIMEOUT_S "
                        "or read less with --scan-last"
                    )
                for msg in self._consumer.consume(num_messages=500, timeout=0.5):
                    p = msg.partition() or 0
                    err = msg.error()
                    if err is not None:
                        if err.code() == KafkaError._PARTITION_EOF:
                            pending.discard(p)
                        elif err.fatal() or err.code() in _FATAL_READ_ERRORS:
                            raise DlqError(f"reading {topic}[{p}] failed: {err.str()}")
                        else:
                            log.warning("dlq_read_retrying", topic=topic, partition=p, error=err.str())
                        continue
                    if p not in pending:
                        continue
                    end = ranges[p][1]
                    offset = msg.offset() or 0  # None only on error events, handled above
                    if offset >= end:  # written after we looked: not part of this scan
                        pending.discard(p)
                        continue
                    yield msg
                    if offset >= end - 1:
                        pending.discard(p)
        finally:
            self._consumer.unassign()


# --- list and count ----------------------------------------------------------


def recent(records: Iterable[DlqRecord], selection: Selection, limit: int) -> list[DlqRecord]:
    """The newest `limit` records matching `selection`, oldest first (by failure time, then position)."""
    kept: deque[DlqRecord] = deque(maxlen=limit)
    for record in sorted((r for r in records if selection.matches(r)), key=_age):
        kept.append(record)
    return list(kept)


def _age(record: DlqRecord) -> tuple[int, DlqPosition]:
    failed = record.dead_letter.failed_at if record.dead_letter else (record.timestamp_ms or 0)
    return failed, record.position


@dataclass(frozen=True)
class DlqCounts:
    """Dead letters counted by error type, by stage and by source topic."""

    total: int
    by_error_type: dict[str, int]
    by_stage: dict[str, int]
    by_source_topic: dict[str, int]
    replays: int
    """How many are failures of replayed messages (not replayable again)."""


def count(records: Iterable[DlqRecord], selection: Selection = Selection()) -> DlqCounts:
    """Count the records matching `selection` (most frequent first in each breakdown)."""
    errors: Counter[str] = Counter()
    stages: Counter[str] = Counter()
    topics: Counter[str] = Counter()
    replays = total = 0
    for record in records:
        if not selection.matches(record):
            continue
        total += 1
        errors[record.error_type] += 1
        stages[record.stage or "?"] += 1
        topics[record.source_topic or "?"] += 1
        replays += record.replayed_from is not None
    return DlqCounts(
        total, dict(errors.most_common()), dict(stages.most_common()), dict(topics.most_common()), replays
    )


# --- replay ------------------------------------------------------------------


class ReplayStatus(StrEnum):
    """What `replay` did with one dead letter."""

    REPLAYED = "replayed"
    WOULD_REPLAY = "would_replay"
    REFUSED = "refused"
    FAILED = "failed"
    NOT_FOUND = "not_found"


@dataclass(frozen=True)
class ReplayResult:
    """The outcome for one chosen dead letter."""

    position: DlqPosition
    status: ReplayStatus
    reason: str = ""
    target: str | None = None
    """Where it went (or would go): ``topic[partition]``."""


def refusal(
    record: DlqRecord,
    settings: DlqToolSettings,
    source_headers: Callable[[DeadLetter], Iterable[tuple[str, bytes | None]] | None],
) -> str | None:
    """Why `record` must not be replayed, or None if it may be.

    Args:
        record: The chosen DLQ record.
        settings: Names the pipeline's input topics, the only replay targets.
        source_headers: Headers of the failed message itself, None if Kafka no longer has it.
    """
    dl = record.dead_letter
    if dl is None:
        return f"not a readable dead letter ({record.unreadable})"
    if record.replayed_from is not None:
        return f"it failed again after being replayed from {record.replayed_from}"
    inputs = {settings.iot_topic, settings.activity_topic}
    if dl.topic not in inputs:
        allowed = ", ".join(sorted(inputs))
        return f"its source topic {dl.topic!r} is not an input topic of the pipeline ({allowed})"
    origin = replayed_from(source_headers(dl))
    if origin is not None:
        return f"the failed message was itself replayed from {origin}"
    return None


def replay(
    reader: DlqReader,
    records: Sequence[DlqRecord],
    *,
    dry_run: bool = False,
) -> list[ReplayResult]:
    """Send each replayable record's original key and value back to its source topic, marked.

    Args:
        reader: Reads the DLQ (and the failed source messages, for the loop check).
        records: The chosen dead letters, in the order to send them.
        dry_run: Decide and report, send nothing.

    Returns:
        One result per record, in order. Replays are confirmed by the broker (acks=all)
        within ``dlq_replay_timeout_s``; unconfirmed ones are `ReplayStatus.FAILED`.
    """
    settings = reader.settings
    results: list[ReplayResult | None] = [None] * len(records)
    producer = None
    if not dry_run:
        producer = Producer(
            settings.kafka_client_config() | {"enable.idempotence": True, "acks": "all", "linger.ms": 5}
        )
    for i, record in enumerate(records):
        reason = refusal(record, settings, reader.source_headers)
        if reason is not None:
            results[i] = ReplayResult(record.position, ReplayStatus.REFUSED, reason)
            continue
        dl = record.dead_letter
        assert dl is not None  # refusal() said so
        try:
            partitions = reader.partitions(dl.topic)
        except DlqError as exc:
            results[i] = ReplayResult(record.position, ReplayStatus.REFUSED, str(exc))
            continue
        # The partition it came from keeps per-key order; if that is gone, the key decides.
        partition = dl.partition if dl.partition in partitions else None
        target = f"{dl.topic}[{'by key' if partition is None else partition}]"
        if dry_run:
            results[i] = ReplayResult(record.position, ReplayStatus.WOULD_REPLAY, target=target)
            continue
        assert producer is not None
        _send(producer, record, dl, partition, target, results, i)
    if producer is not None:
        left = producer.flush(settings.dlq_replay_timeout_s)
        if left:
            log.warning("dlq_replay_unconfirmed", messages=left)
    done = [
        r
        if r is not None
        else ReplayResult(
            records[i].position,
            ReplayStatus.FAILED,
            f"not confirmed by the broker within {settings.dlq_replay_timeout_s:.0f}s",
        )
        for i, r in enumerate(results)
    ]
    log.info(
        "dlq_replay_done",
        dry_run=dry_run,
        **Counter(r.status.value for r in done),
    )
    return done


def _send(
    producer: Producer,
    record: DlqRecord,
    dl: DeadLetter,
    partition: int | None,
    target: str,
    results: list[ReplayResult | None],
    i: int,
) -> None:
    def delivered(err: KafkaError | None, msg: Message) -> None:
        if err is None:
            results[i] = ReplayResult(
                record.position,
                ReplayStatus.REPLAYED,
                target=f"{msg.topic()}[{msg.partition()}]@{msg.offset()}",
            )
        else:
            results[i] = ReplayResult(record.position, ReplayStatus.FAILED, err.str(), target)

    kwargs: dict[str, Any] = {} if partition is None else {"partition": partition}
    try:
        producer.produce(
            dl.topic,
            value=dl.original_value(),
            key=dl.original_key(),
            headers=[replay_marker(record.position)],
            on_delivery=delivered,
            **kwargs,
        )
    except (KafkaException, BufferError, ValueError) as exc:
        results[i] = ReplayResult(
            record.position, ReplayStatus.FAILED, f"{type(exc).__name__}: {exc}", target
        )
    producer.poll(0)


# --- safe display --------------------------------------------------------------


def safe_text(text: str, keep_newlines: bool = False) -> str:
    """`text` with every non-printable character escaped (terminal escapes, NUL, bidi overrides...)."""
    if text.isprintable():
        return text
    out = []
    for ch in text:
        if ch.isprintable() or (keep_newlines and ch == "\n"):
            out.append(ch)
        else:
            code = ord(ch)
            out.append(
                f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"
            )
    return "".join(out)


def preview(data: bytes | None, chars: int = PREVIEW_CHARS) -> str:
    """A one-line, safe, short view of a payload."""
    if data is None:
        return "(tombstone)"
    size = f"({len(data)} B)"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return f"binary {data[: chars // 3].hex(' ')}{' …' if len(data) > chars // 3 else ''} {size}"
    shown = safe_text(text[:chars])[:chars]  # escapes lengthen it: cut again
    return f"{shown}{'…' if len(shown) < len(safe_text(text[: chars + 1])) else ''} {size}"


def hexdump(data: bytes) -> list[str]:
    """Classic 16-bytes-a-line hex dump lines."""
    lines = []
    for at in range(0, len(data), 16):
        chunk = data[at : at + 16]
        ascii_ = "".join(chr(b) if 0x20 <= b < 0x7F else "." for b in chunk)
        lines.append(f"{at:08x}  {chunk.hex(' '):<47}  |{ascii_}|")
    return lines


def _iso(ms: int | None) -> str:
    if ms is None:
        return "-"
    try:
        return (
            datetime.fromtimestamp(ms / 1000, tz=UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z")
        )
    except (OverflowError, OSError, ValueError):
        return f"{ms} ms (out of range)"


def summary(record: DlqRecord) -> dict[str, Any]:
    """A record's listing as JSON-able data (no payload, a safe preview of it)."""
    dl = record.dead_letter
    out: dict[str, Any] = {
        "position": f"{record.position.partition}:{record.position.offset}",
        "partition": record.position.partition,
        "offset": record.position.offset,
        "failed_at": None if dl is None else dl.failed_at,
        "source_topic": record.source_topic,
        "source_partition": None if dl is None else dl.partition,
        "source_offset": None if dl is None else dl.offset,
        "stage": record.stage,
        "error_type": record.error_type,
        "replayed_from": record.replayed_from,
    }
    if dl is None:
        out |= {"unreadable": record.unreadable, "payload_bytes": len(record.raw or b"")}
    else:
        value = dl.original_value()
        out |= {"payload_bytes": None if value is None else len(value), "payload_preview": preview(value)}
    return out


def detail(record: DlqRecord) -> dict[str, Any]:
    """A record with everything it holds, as JSON-able data (payload as in the `DeadLetter`)."""
    out = summary(record)
    out.pop("payload_preview", None)
    out["kafka_timestamp"] = record.timestamp_ms
    out["headers"] = {
        name: (None if v is None else v.decode("utf-8", "replace")) for name, v in record.headers
    }
    if record.dead_letter is None:
        out["raw_value"] = None if record.raw is None else record.raw.decode("utf-8", "replace")
    else:
        out["dead_letter"] = record.dead_letter.model_dump(mode="json")
    return out


def format_list(records: list[DlqRecord], scanned: int, matched: int, topic: str) -> str:
    """The human-readable listing."""
    head = f"{topic}: {scanned} records scanned, {matched} match, showing the newest {len(records)}"
    if not records:
        return head
    rows = [("POS", "FAILED AT (UTC)", "SOURCE", "STAGE", "ERROR", "REPLAY OF", "PAYLOAD")]
    for r in records:
        s = summary(r)
        source = (
            "-"
            if r.dead_letter is None
            else f"{s['source_topic']}[{s['source_partition']}]@{s['source_offset']}"
        )
        payload = s.get("payload_preview") or safe_text(r.unreadable or "")
        rows.append(
            (
                s["position"],
                _iso(s["failed_at"]),
                safe_text(source),
                safe_text(r.stage or "-"),
                safe_text(r.error_type),
                safe_text(r.replayed_from or "-"),
                payload,
            )
        )
    widths = [max(len(row[c]) for row in rows) for c in range(len(rows[0]) - 1)]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=True)) + "  " + row[-1]
        for row in rows
    ]
    return "\n".join([head, *lines])


def format_detail(record: DlqRecord, full: bool = False) -> str:
    """The human-readable view of one record: every field, the payload shown safely."""
    pos = record.position
    lines = [f"dead letter {pos.partition}:{pos.offset} of {pos.topic} (written {_iso(record.timestamp_ms)})"]
    dl = record.dead_letter
    if record.replayed_from is not None:
        lines.append(f"  replay of     {safe_text(record.replayed_from)}  (not replayable again)")
    if dl is None:
        lines.append(f"  unreadable    {safe_text(record.unreadable or '')}")
        lines += _payload_lines("record value", record.raw, full)
        return "\n".join(lines)
    key = dl.original_key()
    lines += [
        f"  source        {safe_text(dl.topic)} partition {dl.partition} offset {dl.offset}",
        f"  key           {'-' if key is None else preview(key, 200)}",
        f"  stage         {safe_text(dl.stage)}",
        f"  error type    {safe_text(dl.error_type)}",
        f"  failed at     {_iso(dl.failed_at)} ({dl.failed_at})",
        "  error message",
        *("    " + safe_text(line) for line in dl.error_message.splitlines()),
    ]
    lines += _payload_lines("payload", dl.original_value(), full)
    return "\n".join(lines)


def _payload_lines(label: str, data: bytes | None, full: bool) -> list[str]:
    if data is None:
        return [f"  {label:<13} (none: a tombstone)"]
    shown = data if full else data[:INSPECT_BYTES]
    cut = "" if len(shown) == len(data) else f", first {len(shown)} shown (--full for all)"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return [f"  {label:<13} {len(data)} bytes, binary{cut}:", *("    " + ln for ln in hexdump(shown))]
    if not text:
        return [f"  {label:<13} 0 bytes (empty)"]
    text_shown = shown.decode("utf-8", "ignore")  # the cut may split a character
    return [
        f"  {label:<13} {len(data)} bytes, UTF-8 text{cut}:",
        *("    " + safe_text(line) for line in text_shown.splitlines()),
    ]


# --- command line --------------------------------------------------------------


def parse_position(text: str, topic: str) -> DlqPosition:
    """``OFFSET`` (partition 0) or ``PARTITION:OFFSET`` of the DLQ topic; raises `ValueError`."""
    partition, sep, offset = text.partition(":")
    if not sep:
        partition, offset = "0", text
    if not partition.isdigit() or not offset.isdigit():
        raise ValueError(f"expected OFFSET or PARTITION:OFFSET, got {text!r}")
    return DlqPosition(topic, int(partition), int(offset))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sinks.dlq",
        description="List, inspect, count and replay the pipeline's dead letters.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def filters(p: argparse.ArgumentParser) -> None:
        p.add_argument("--error-type", help="only dead letters with this error type, e.g. ValidationError")
        p.add_argument("--topic", help="only dead letters from this source topic")
        p.add_argument("--stage", help="only dead letters that failed at this stage, e.g. decode")
        p.add_argument(
            "--scan-last", type=_positive, metavar="N", help="read only the newest N per partition"
        )

    p = sub.add_parser("list", help="the newest dead letters, one line each")
    filters(p)
    p.add_argument("--limit", type=_positive, default=20, help="how many to show (default 20)")
    p = sub.add_parser("inspect", help="one dead letter with its full context")
    p.add_argument("position", help="OFFSET or PARTITION:OFFSET in the DLQ topic")
    p.add_argument(
        "--full", action="store_true", help=f"the whole payload, not its first {INSPECT_BYTES} bytes"
    )
    p = sub.add_parser("count", help="dead letters counted by error type, stage and source topic")
    filters(p)
    p = sub.add_parser("replay", help="send chosen dead letters back to their source topic")
    p.add_argument("positions", nargs="*", help="OFFSET or PARTITION:OFFSET; or choose with the filters")
    filters(p)
    p.add_argument("--dry-run", action="store_true", help="show what would be sent, send nothing")
    for p in sub.choices.values():
        p.add_argument("--json", action="store_true", help="machine-readable output")
    return parser


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _emit(args: argparse.Namespace, data: Any, text: str) -> None:
    print(json.dumps(data, indent=2) if args.json else text)


def run(args: argparse.Namespace, settings: DlqToolSettings) -> int:
    """Carry out one parsed command; the exit status."""
    topic = settings.dlq_topic
    with DlqReader(settings) as reader:
        if args.command == "inspect":
            position = parse_position(args.position, topic)
            record = reader.fetch(position.partition, position.offset)
            if record is None:
                _emit(
                    args,
                    {"position": args.position, "found": False},
                    f"no record at {args.position} in {topic}",
                )
                return 1
            _emit(args, detail(record), format_detail(record, args.full))
            return 0

        selection = Selection(args.error_type, args.topic, args.stage)
        if args.command == "replay" and args.positions:
            if selection:
                raise ValueError("choose dead letters either by position or by filters, not both")
            chosen: list[DlqRecord] = []
            missing: list[ReplayResult] = []
            for text in args.positions:
                pos = parse_position(text, topic)
                record = reader.fetch(pos.partition, pos.offset)
                if record is None:
                    missing.append(
                        ReplayResult(pos, ReplayStatus.NOT_FOUND, f"no record at {text} in {topic}")
                    )
                else:
                    chosen.append(record)
            return _report_replay(args, missing + replay(reader, chosen, dry_run=args.dry_run))
        if args.command == "replay" and not selection:
            raise ValueError("choose dead letters to replay: positions, or --error-type/--topic/--stage")

        scanned = 0

        def counted(records: Iterable[DlqRecord]) -> Iterator[DlqRecord]:
            nonlocal scanned
            for record in records:
                scanned += 1
                yield record

        records = counted(reader.scan(args.scan_last))
        if args.command == "list":
            matching = [r for r in records if selection.matches(r)]
            shown = recent(matching, Selection(), args.limit)
            data = {
                "topic": topic,
                "scanned": scanned,
                "matched": len(matching),
                "dead_letters": [summary(r) for r in shown],
            }
            _emit(args, data, format_list(shown, scanned, len(matching), topic))
            return 0
        if args.command == "count":
            counts = count(records, selection)
            data = {"topic": topic, "scanned": scanned, **asdict(counts)}
            _emit(args, data, _format_counts(counts, scanned, topic))
            return 0
        chosen = sorted((r for r in records if selection.matches(r)), key=lambda r: r.position)
        return _report_replay(args, replay(reader, chosen, dry_run=args.dry_run))


def _format_counts(counts: DlqCounts, scanned: int, topic: str) -> str:
    lines = [f"{topic}: {scanned} records scanned, {counts.total} counted ({counts.replays} failed replays)"]
    for title, table in (
        ("by error type", counts.by_error_type),
        ("by stage", counts.by_stage),
        ("by source topic", counts.by_source_topic),
    ):
        lines.append(title)
        lines += [f"  {n:>8}  {safe_text(name)}" for name, n in table.items()] or ["         -"]
    return "\n".join(lines)


def _report_replay(args: argparse.Namespace, results: list[ReplayResult]) -> int:
    tally = Counter(r.status.value for r in results)
    data = {
        "dry_run": args.dry_run,
        "results": [
            {
                "position": f"{r.position.partition}:{r.position.offset}",
                "status": r.status.value,
                "target": r.target,
                "reason": r.reason,
            }
            for r in results
        ],
        **{status.value: tally[status.value] for status in ReplayStatus},
    }
    lines = [
        f"{r.position.partition}:{r.position.offset}  {r.status.value:<12}  "
        + safe_text(r.target or "")
        + (f"  {safe_text(r.reason)}" if r.reason else "")
        for r in results
    ]
    lines.append(", ".join(f"{n} {status}" for status, n in sorted(tally.items())) or "nothing chosen")
    _emit(args, data, "\n".join(lines))
    bad = {ReplayStatus.REFUSED, ReplayStatus.FAILED, ReplayStatus.NOT_FOUND}
    return 1 if any(r.status in bad for r in results) else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point: ``python -m sinks.dlq``."""
    args = _parser().parse_args(argv)
    configure_logging("dlq", level="WARNING")
    settings = load_settings(DlqToolSettings)
    try:
        return run(args, settings)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (DlqError, KafkaException) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
