"""`python -m sinks.dlq` against the real broker: list, count, inspect, replay, and no replay loops."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from confluent_kafka import Consumer, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from pydantic import ValidationError

from sinks.dlq import DlqError, DlqReader, ReplayStatus, Selection, count, recent, replay
from sinks.replay import REPLAY_HEADER, replayed_from
from sinks.settings import DlqToolSettings
from sources.models import DeadLetter
from tests.conftest import ROOT
from tests.hostile import BAD_CASES, DLQ_PRODUCER_CONFIG, DLQ_TOPIC_CONFIG

T0 = 1_700_000_000_000


@dataclass
class Topics:
    dlq: str
    iot: str
    activity: str
    settings: DlqToolSettings

    def env(self) -> dict[str, str]:
        """Environment for the CLI: the same broker and topics as `settings`."""
        s = self.settings
        return os.environ | {
            "PIPELINE_KAFKA_BOOTSTRAP_SERVERS": s.kafka_bootstrap_servers,
            "PIPELINE_DLQ_TOPIC": s.dlq_topic,
            "PIPELINE_IOT_TOPIC": s.iot_topic,
            "PIPELINE_ACTIVITY_TOPIC": s.activity_topic,
            "PIPELINE_DLQ_READ_TIMEOUT_S": "20",
        }


@pytest.fixture
def topics(tmp_topic: Callable[..., str], kafka_bootstrap: str) -> Topics:
    dlq, iot, activity = tmp_topic(1, "dlq"), tmp_topic(3, "iot"), tmp_topic(3, "act")
    settings = DlqToolSettings(
        kafka_bootstrap_servers=kafka_bootstrap,
        dlq_topic=dlq,
        iot_topic=iot,
        activity_topic=activity,
        dlq_read_timeout_s=20,
        dlq_replay_timeout_s=20,
    )
    return Topics(dlq, iot, activity, settings)


@pytest.fixture
def reader(topics: Topics) -> Iterator[DlqReader]:
    with DlqReader(topics.settings) as r:
        yield r


def letter(
    topic: str,
    offset: int,
    *,
    value: bytes | None = b'{"temperature": "hot"}',
    key: bytes | None = b"dev-1",
    partition: int = 1,
    stage: str = "decode",
    error: BaseException | None = None,
) -> DeadLetter:
    return DeadLetter.capture(
        value=value,
        key=key,
        topic=topic,
        partition=partition,
        offset=offset,
        stage=stage,
        error=error or ValueError("bad reading"),
        failed_at=T0 + offset,
    )


def put(producer: Producer, dlq: str, letters: list[DeadLetter], headers=None) -> None:
    for dl in letters:
        producer.produce(dlq, dl.to_json(), key=dl.original_key(), headers=headers)
    assert producer.flush(30) == 0


def read_all(
    consumer: Consumer, topic: str, partitions: int, expected: int, timeout_s: float = 20
) -> list[Message]:
    """Every message of `topic` from the start, waiting (with a deadline) until `expected` arrived."""
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    got: list[Message] = []
    deadline = time.monotonic() + timeout_s
    while len(got) < expected and time.monotonic() < deadline:
        got += [m for m in consumer.consume(100, timeout=0.5) if m.error() is None]
    return got


def high_watermarks(admin_bootstrap: str, topic: str, partitions: int) -> int:
    probe = Consumer({"bootstrap.servers": admin_bootstrap, "group.id": f"probe-{uuid.uuid4().hex}"})
    try:
        return sum(
            probe.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(partitions)
        )
    finally:
        probe.close()


def cli(topics: Topics, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sinks.dlq", *args],
        env=topics.env(),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_list_and_count_filter_by_error_type_source_topic_and_stage(topics, reader, make_producer):
    put(
        make_producer(),
        topics.dlq,
        [
            letter(topics.iot, 0),
            letter(topics.iot, 1, error=KeyError("k"), stage="process"),
            letter(topics.activity, 2),
            letter(topics.activity, 3, error=KeyError("k")),
            letter(topics.iot, 4),
        ],
    )
    records = list(reader.scan())
    assert [r.position.offset for r in records] == [0, 1, 2, 3, 4]
    newest = recent(records, Selection(error_type="ValueError"), limit=2)
    assert [r.dead_letter.offset for r in newest] == [2, 4]
    counts = count(records)
    assert counts.by_error_type == {"ValueError": 3, "KeyError": 2}
    assert counts.by_stage == {"decode": 4, "process": 1}
    assert count(records, Selection(topic=topics.activity, error_type="KeyError")).total == 1

    listed = cli(topics, "list", "--topic", topics.iot, "--json")
    assert listed.returncode == 0, listed.stderr
    data = json.loads(listed.stdout)
    assert (data["scanned"], data["matched"]) == (5, 3)
    assert [d["source_offset"] for d in data["dead_letters"]] == [0, 1, 4]
    counted = cli(topics, "count", "--stage", "decode", "--json")
    assert json.loads(counted.stdout)["by_error_type"] == {"ValueError": 3, "KeyError": 1}
    human = cli(topics, "list", "--error-type", "KeyError", "--limit", "1")
    assert human.returncode == 0
    assert "5 records scanned, 2 match, showing the newest 1" in human.stdout
    assert f"{topics.activity}[1]@3" in human.stdout


def test_inspect_shows_the_full_context_and_the_payload_safely(topics, make_producer):
    hostile = b'{"device_id":"\x1b[2J\x1b]0;pwned\x07"}'
    put(
        make_producer(),
        topics.dlq,
        [letter(topics.iot, 0), letter(topics.iot, 7, value=hostile, partition=2)],
    )

    shown = cli(topics, "inspect", "1")
    assert shown.returncode == 0, shown.stderr
    assert f"source        {topics.iot} partition 2 offset 7" in shown.stdout
    assert "error type    ValueError" in shown.stdout
    assert "bad reading" in shown.stdout
    assert "\x1b" not in shown.stdout and "\x07" not in shown.stdout
    assert '{"device_id":"\\x1b[2J\\x1b]0;pwned\\x07"}' in shown.stdout

    as_json = json.loads(cli(topics, "inspect", "0:1", "--json").stdout)
    assert DeadLetter.from_json(json.dumps(as_json["dead_letter"])).original_value() == hostile

    missing = cli(topics, "inspect", "99")
    assert (missing.returncode, missing.stdout.strip()) == (1, f"no record at 99 in {topics.dlq}")


def test_replay_sends_the_original_bytes_and_key_back_marked(topics, reader, make_producer, make_consumer):
    binary = letter(topics.iot, 10, value=b"\xff\x00raw", key=b"\xfe-key", partition=2)
    text = letter(topics.activity, 11, value=b'{"type":"purchase"}', key=b"user-9", partition=0)
    tombstone = letter(topics.iot, 12, value=None, key=None, partition=1)
    put(make_producer(), topics.dlq, [binary, text, tombstone])

    results = replay(reader, list(reader.scan()))

    assert [r.status for r in results] == [ReplayStatus.REPLAYED] * 3
    got = read_all(make_consumer(), topics.iot, 3, expected=2) + read_all(
        make_consumer(), topics.activity, 3, 1
    )
    sent = {(m.topic(), m.partition(), m.key(), m.value(), replayed_from(m.headers())) for m in got}
    assert sent == {
        (topics.iot, 2, b"\xfe-key", b"\xff\x00raw", f"{topics.dlq}:0:0"),
        (topics.activity, 0, b"user-9", b'{"type":"purchase"}', f"{topics.dlq}:0:1"),
        (topics.iot, 1, None, None, f"{topics.dlq}:0:2"),
    }


def test_a_replayed_message_that_fails_again_is_refused_not_looped(
    topics, reader, make_producer, make_consumer, kafka_bootstrap
):
    producer = make_producer()
    put(producer, topics.dlq, [letter(topics.iot, 3, value=b"not json", partition=0)])
    [first] = replay(reader, list(reader.scan()))
    assert first.status is ReplayStatus.REPLAYED

    # What the dataflow does when the replayed message fails again: a new dead letter that
    # names its position (no headers on its record); the tool finds the marker there.
    [again] = read_all(make_consumer(), topics.iot, 3, expected=1)
    second = DeadLetter.capture(
        value=again.value(),
        key=again.key(),
        topic=again.topic(),
        partition=again.partition(),
        offset=again.offset(),
        stage="decode",
        error=ValueError("still not JSON"),
        failed_at=T0 + 99,
    )
    put(producer, topics.dlq, [second])

    before = high_watermarks(kafka_bootstrap, topics.iot, 3)
    by_position = cli(topics, "replay", "1", "--json")
    by_filter = cli(topics, "replay", "--topic", topics.iot, "--json")

    assert by_position.returncode == 1
    [refused] = json.loads(by_position.stdout)["results"]
    assert (refused["position"], refused["status"]) == ("0:1", "refused")
    assert f"replayed from {topics.dlq}:0:0" in refused["reason"]
    statuses = {r["position"]: r["status"] for r in json.loads(by_filter.stdout)["results"]}
    assert statuses == {"0:0": "replayed", "0:1": "refused"}  # the original may be replayed again
    assert high_watermarks(kafka_bootstrap, topics.iot, 3) == before + 1

    # `list` shows the marker of the dead letter's own record, which the flow does not copy.
    listed = json.loads(cli(topics, "list", "--json").stdout)["dead_letters"]
    assert [d["replayed_from"] for d in listed] == [None, None]


def test_the_loop_guard_also_reads_the_failed_message_when_the_dead_letter_lacks_the_marker(
    topics, reader, make_producer
):
    producer = make_producer()
    # A replayed message sits on the input topic; a flow that forgot to carry the marker
    # wrote its dead letter without headers.
    producer.produce(topics.iot, b"junk", key=b"dev-1", partition=1, headers=[(REPLAY_HEADER, b"dlq:0:5")])
    assert producer.flush(10) == 0
    put(producer, topics.dlq, [letter(topics.iot, 0, value=b"junk", partition=1)])

    [result] = replay(reader, list(reader.scan()))

    assert result.status is ReplayStatus.REFUSED
    assert "the failed message was itself replayed from dlq:0:5" in result.reason


def test_replay_refuses_targets_other_than_the_input_topics(topics, reader, make_producer, kafka_bootstrap):
    put(make_producer(), topics.dlq, [letter(topics.dlq, 0), letter("__consumer_offsets", 1)])

    results = replay(reader, list(reader.scan()))

    assert [r.status for r in results] == [ReplayStatus.REFUSED] * 2
    assert all("not an input topic" in r.reason for r in results)
    assert high_watermarks(kafka_bootstrap, topics.dlq, 1) == 2


def test_dry_run_says_what_would_be_sent_and_sends_nothing(topics, make_producer, kafka_bootstrap):
    put(make_producer(), topics.dlq, [letter(topics.iot, 0, partition=2), letter(topics.activity, 1)])

    done = cli(topics, "replay", "0", "1", "--dry-run", "--json")

    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert [(r["status"], r["target"]) for r in data["results"]] == [
        ("would_replay", f"{topics.iot}[2]"),
        ("would_replay", f"{topics.activity}[1]"),
    ]
    assert high_watermarks(kafka_bootstrap, topics.iot, 3) == 0
    assert high_watermarks(kafka_bootstrap, topics.activity, 3) == 0


def test_replay_needs_a_choice_and_reports_unknown_positions(topics, make_producer):
    put(make_producer(), topics.dlq, [letter(topics.iot, 0)])
    nothing = cli(topics, "replay")
    assert nothing.returncode == 2
    assert "choose dead letters to replay" in nothing.stderr
    unknown = cli(topics, "replay", "0", "7")
    assert unknown.returncode == 1
    assert "not_found" in unknown.stdout and "no record at 7" in unknown.stdout


def test_a_record_that_is_not_a_dead_letter_is_listed_and_never_replayed(topics, reader, make_producer):
    producer = make_producer()
    producer.produce(topics.dlq, b"\x1b[31mjunk")
    assert producer.flush(10) == 0

    [record] = list(reader.scan())
    assert record.dead_letter is None and record.unreadable
    [result] = replay(reader, [record])
    assert result.status is ReplayStatus.REFUSED
    listed = cli(topics, "list")
    assert "UnreadableDeadLetter" in listed.stdout and "\x1b" not in listed.stdout


def test_a_missing_dlq_topic_is_a_clear_error(topics):
    gone = DlqToolSettings(
        kafka_bootstrap_servers=topics.settings.kafka_bootstrap_servers, dlq_topic="no-such-dlq"
    )
    with DlqReader(gone) as reader, pytest.raises(DlqError, match="does not exist"):
        list(reader.scan())


@pytest.fixture
def big_dlq(kafka_admin: AdminClient) -> Iterator[str]:
    """A DLQ topic configured to take the dead letter of every hostile case."""
    name = f"dlq-big-{uuid.uuid4().hex[:12]}"
    fut = kafka_admin.create_topics([NewTopic(name, 1, 1, config=DLQ_TOPIC_CONFIG)])
    fut[name].result(timeout=30)
    yield name
    for f in kafka_admin.delete_topics([name], operation_timeout=30).values():
        f.result(timeout=30)


def test_every_hostile_messages_dead_letter_survives_the_dlq_topic_and_the_tool(
    topics, big_dlq, make_producer, kafka_bootstrap
):
    letters = []
    for i, case in enumerate(BAD_CASES):
        with pytest.raises(ValidationError) as caught:
            case.decoder.from_json(case.value)
        letters.append(
            DeadLetter.capture(
                value=case.value,
                key=case.key,
                topic=topics.iot,
                partition=0,
                offset=i,
                stage="decode",
                error=caught.value,
                failed_at=T0 + i,
            )
        )
    put(make_producer(**DLQ_PRODUCER_CONFIG), big_dlq, letters)

    settings = topics.settings.model_copy(update={"dlq_topic": big_dlq})
    with DlqReader(settings) as reader:
        records = list(reader.scan())
    assert [(r.dead_letter.original_value(), r.dead_letter.original_key()) for r in records] == [
        (c.value, c.key) for c in BAD_CASES
    ]
    assert [r.position.offset for r in records] == list(range(len(BAD_CASES)))

    big = Topics(big_dlq, topics.iot, topics.activity, settings)
    listed = cli(big, "list", "--limit", str(len(BAD_CASES)))
    assert listed.returncode == 0, listed.stderr
    assert len(listed.stdout.splitlines()) == len(BAD_CASES) + 2
    assert all(line.isprintable() for line in listed.stdout.splitlines())
    counted = json.loads(cli(big, "count", "--json").stdout)
    assert counted["by_error_type"] == {"ValidationError": len(BAD_CASES)}
