"""The whole hostile corpus mixed into good traffic, through the real dataflow process.

Two runs of ``python -m bytewax.run flows.main`` (real Kafka, real Redis), each on its
own fresh topics:

* *clean*: simulator traffic for both topics plus the corpus's accepted cases
  (`Expect.VALID` and `Expect.DUPLICATE`) at seeded random positions;
* *noisy*: the same messages in the same order, with every bad case of `tests.hostile`
  (`Expect.DEAD_LETTER`, both topics) interleaved at seeded random positions.

What "processed exactly as without the noise" means: the noise is the set of messages
the decoder must reject. Odd-but-legal messages and exact duplicates of good messages are
*not* noise: a duplicate reading is a valid reading that arrived twice at two offsets (it
is not a redelivery of one offset, which recovery makes idempotent), so the product
processes it like any other valid message, and it is in both runs. Then the noisy run's
Redis content equals the clean run's exactly, apart from the two counters the noise must
move (events in: +1 per bad message; dead letters: one per bad message). Every bad message
is on the DLQ topic with the topic, partition and offset Kafka gave it when it was
produced, the stage and error, and its original bytes; no good message is.

The corpus's 2 MB payloads do not fit the input topics' limit (the broker's default, as
`sources.topics` creates them): the test proves the broker refuses them, so they can
never reach the flow; every other case, up to 900 KB, goes through.
"""

from __future__ import annotations

import random
import subprocess
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import pytest
import redis
from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient

from sinks.layout import Layout, decode_stats
from sources.models import DeadLetter
from sources.topics import DLQ_MAX_MESSAGE_BYTES, TopicSpec, ensure_topics
from tests.hostile import CASES, Expect, HostileCase, Topic, bad_kinds
from tests.pipeline_harness import (
    PipelineTopics,
    consume_all,
    delete_topics,
    redis_content,
    simulated_events,
    start_flow,
)

pytestmark = pytest.mark.slow

START_MS = int(time.time() * 1000) - 2 * 3600 * 1000  # two hours ago: history, nothing "in the future"
SEED = 20261126
GOOD_IOT = 8_000
GOOD_ACTIVITY = 3_000
STATS = "pipeline:stats"

Pair = tuple[bytes | None, bytes | None]


@dataclass(frozen=True)
class Planned:
    """One message of a run, in production order."""

    key: bytes | None
    value: bytes | None
    case: HostileCase | None
    """The hostile case it is, None for simulator traffic."""

    @property
    def bad(self) -> bool:
        """Whether the decoder must reject it."""
        return self.case is not None and self.case.expect is Expect.DEAD_LETTER


def _scatter(good: Sequence[Pair], extra: Sequence[HostileCase], rng: random.Random) -> list[Planned]:
    """`good` in order with each of `extra` inserted at a random position."""
    out = [Planned(k, v, None) for k, v in good]
    for case in extra:
        out.insert(rng.randrange(len(out) + 1), Planned(case.key, case.value, case))
    return out


@dataclass(frozen=True)
class Plan:
    """Both runs' messages per topic: the noisy one is the clean one plus the bad cases."""

    noisy: dict[Topic, list[Planned]]

    def clean(self, topic: Topic) -> list[Planned]:
        """The same messages without the noise, in the same order."""
        return [p for p in self.noisy[topic] if not p.bad]


def _plan() -> Plan:
    rng = random.Random(SEED)
    readings, events = simulated_events(GOOD_IOT, GOOD_ACTIVITY, START_MS, seed=SEED % 1000)
    good = {Topic.IOT: readings, Topic.ACTIVITY: events}
    noisy = {}
    for topic in Topic:
        cases = [c for c in CASES if c.topic is topic and c.fits_default_kafka_limit]
        rng.shuffle(cases)
        noisy[topic] = _scatter(good[topic], cases, rng)
    return Plan(noisy)


def _make_topics(admin: AdminClient, bootstrap: str, redis_url: str, tag: str) -> PipelineTopics:
    """Fresh topics as `sources.topics` makes them: inputs at the broker's default limit, a 4 MiB DLQ."""
    t = PipelineTopics(f"iot-{tag}", f"activity-{tag}", f"dlq-{tag}", f"hostile-{tag}:", bootstrap, redis_url)
    dlq_config = (("max.message.bytes", str(DLQ_MAX_MESSAGE_BYTES)),)
    specs = [TopicSpec(t.iot, 3), TopicSpec(t.activity, 3), TopicSpec(t.dlq, 1, config=dlq_config)]
    ensure_topics(admin, specs)
    return t


def _produce(bootstrap: str, topic: str, planned: Sequence[Planned]) -> list[tuple[int, int]]:
    """Produce in order (idempotent, so order holds per partition); (partition, offset) of each."""
    where: list[tuple[int, int] | None] = [None] * len(planned)

    def report(i: int):
        def on_delivery(err: KafkaError | None, msg: object) -> None:
            assert err is None, f"message {i} not delivered: {err}"
            where[i] = (msg.partition(), msg.offset())  # type: ignore[attr-defined]

        return on_delivery

    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 20})
    for i, p in enumerate(planned):
        while True:
            try:
                producer.produce(topic, value=p.value, key=p.key, on_delivery=report(i))
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    assert producer.flush(60) == 0
    assert all(w is not None for w in where)
    return [w for w in where if w is not None]


@dataclass
class Run:
    """One run's topics, where each message landed, the flow's output and exit status."""

    topics: PipelineTopics
    planned: dict[Topic, list[Planned]]
    where: dict[Topic, list[tuple[int, int]]]
    output: str
    returncode: int

    def topic_name(self, topic: Topic) -> str:
        """The Kafka topic of `topic` in this run."""
        return self.topics.iot if topic is Topic.IOT else self.topics.activity


def _run(admin: AdminClient, bootstrap: str, redis_url: str, planned: dict[Topic, list[Planned]]) -> Run:
    topics = _make_topics(admin, bootstrap, redis_url, uuid.uuid4().hex[:10])
    where = {
        Topic.IOT: _produce(bootstrap, topics.iot, planned[Topic.IOT]),
        Topic.ACTIVITY: _produce(bootstrap, topics.activity, planned[Topic.ACTIVITY]),
    }
    [proc] = start_flow(topics.env(PIPELINE_KAFKA_BATCH_SIZE="500"))
    try:
        out, _ = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        pytest.fail(f"the dataflow hung:\n{out.decode(errors='replace')[-3000:]}")
    return Run(topics, planned, where, out.decode(errors="replace"), proc.returncode)


@pytest.fixture(scope="module")
def runs(kafka_bootstrap: str, kafka_admin: AdminClient, redis_url: str) -> Iterator[tuple[Run, Run]]:
    """(clean, noisy): the flow process run to the end of each run's topics."""
    plan = _plan()
    clean = _run(kafka_admin, kafka_bootstrap, redis_url, {t: plan.clean(t) for t in Topic})
    noisy = _run(kafka_admin, kafka_bootstrap, redis_url, plan.noisy)
    yield clean, noisy
    for run in (clean, noisy):
        delete_topics(kafka_admin, run.topics)


def _bad(run: Run) -> dict[tuple[str, int, int], Planned]:
    """The bad messages by (topic, partition, offset) as Kafka acknowledged them."""
    return {
        (run.topic_name(topic), *run.where[topic][i]): p
        for topic in Topic
        for i, p in enumerate(run.planned[topic])
        if p.bad
    }


def test_the_mix_holds_every_bad_kind_of_the_corpus_for_both_topics(runs):
    _, noisy = runs
    bad = [p.case for msgs in noisy.planned.values() for p in msgs if p.bad]
    over_limit = {c.kind for c in CASES if not c.fits_default_kafka_limit}  # the last test's
    assert {c.kind for c in bad if c is not None} == set(bad_kinds()) - over_limit
    assert {c.topic for c in bad if c is not None} == set(Topic)
    sizes = [len(p.value or b"") for msgs in noisy.planned.values() for p in msgs if p.bad]
    assert max(sizes) > 800_000 and min(sizes) == 0


def test_the_flow_runs_to_the_end_of_both_runs_without_stopping(runs):
    for run in runs:
        assert run.returncode == 0, run.output[-3000:]
        assert "Traceback" not in run.output, run.output[-3000:]


def test_every_bad_message_is_on_the_dlq_with_its_context_and_original_bytes(runs):
    _, noisy = runs
    letters = [DeadLetter.from_json(m.value) for m in consume_all(noisy.topics.bootstrap, noisy.topics.dlq)]
    by_place = {(d.topic, d.partition, d.offset): d for d in letters}
    assert len(by_place) == len(letters), "a message was dead-lettered twice"
    expected = _bad(noisy)
    assert set(by_place) == set(expected), "dead letters differ from the bad messages produced"
    for place, planned in expected.items():
        dead = by_place[place]
        assert dead.original_value() == planned.value, planned.case
        assert dead.original_key() == planned.key, planned.case
        assert dead.stage in {"decode", "validate"}, planned.case
        assert dead.error_type and dead.error_message, planned.case


def test_the_clean_run_dead_letters_nothing(runs):
    clean, _ = runs
    assert consume_all(clean.topics.bootstrap, clean.topics.dlq) == []


def test_good_messages_give_exactly_the_redis_content_of_the_run_without_noise(runs, redis_url):
    clean, noisy = runs
    client = redis.Redis.from_url(redis_url)
    want = redis_content(client, clean.topics.prefix)
    got = redis_content(client, noisy.topics.prefix)
    assert len(want) > 100, "the clean run wrote too little to compare"
    want_stats, got_stats = want.pop(STATS), got.pop(STATS)
    assert got == want
    # The stats hash differs only by the counters the noise must move (checked below).
    moved = {b"events_in", b"dead_letters"}
    assert {k: v for k, v in got_stats.items() if k not in moved} == {  # type: ignore[union-attr]
        k: v
        for k, v in want_stats.items()  # type: ignore[union-attr]
        if k not in moved
    }


def test_the_counters_count_every_message_and_every_dead_letter(runs, redis_url):
    clean, noisy = runs
    client = redis.Redis.from_url(redis_url)
    bad = len(_bad(noisy))
    for run, dead in ((clean, 0), (noisy, bad)):
        counters = decode_stats(client.hgetall(Layout(run.topics.prefix).stats())).counters
        assert counters.events_in == sum(len(m) for m in run.planned.values())
        assert counters.dead_letters == dead


def test_payloads_over_the_topic_limit_are_refused_by_kafka_and_never_reach_the_flow(runs):
    _, noisy = runs
    too_big = [c for c in CASES if not c.fits_default_kafka_limit]
    assert too_big, "the corpus lost its over-limit cases"
    # A client that would send them: the broker is what must refuse.
    producer = Producer({"bootstrap.servers": noisy.topics.bootstrap, "message.max.bytes": 8 * 1024 * 1024})
    errors: list[KafkaError] = []
    for case in too_big:
        producer.produce(
            noisy.topic_name(case.topic),
            value=case.value,
            key=case.key,
            on_delivery=lambda err, _msg: errors.append(err),
        )
    producer.flush(60)
    assert len(errors) == len(too_big)
    assert all(e is not None and e.code() == KafkaError.MSG_SIZE_TOO_LARGE for e in errors), errors
    with pytest.raises(KafkaException):
        # And the producers' own default limit refuses them before sending.
        Producer({"bootstrap.servers": noisy.topics.bootstrap}).produce(
            noisy.topics.iot, value=too_big[0].value
        )
