"""The live pipeline end to end: real Kafka in, the real dataflow process, real Redis out.

Every test runs ``python -m bytewax.run flows.main`` as separate processes on fresh
topics, to the end of the topics (``PIPELINE_KAFKA_STOP_AT_END``), and compares the
Redis content with a reference: the same flow run in-process on the same messages
(Bytewax's testing source), itself checked against numpy on raw events.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections import defaultdict
from collections.abc import Iterator

import numpy as np
import pytest
import redis
from bytewax.testing import TestingSink, TestingSource, run_main

from flows.dataflow import build_flow
from flows.settings import FlowSettings
from infra import local
from infra.settings import LocalInfraSettings
from sinks.layout import Layout, decode_stats, decode_window_stats
from sinks.redis_sink import RedisSink
from sources.models import DeadLetter, Metric, SensorReading
from tests.kafka_batches import as_batches
from tests.pipeline_harness import (
    PipelineTopics,
    committed_epoch,
    consume_all,
    delete_topics,
    events_in,
    free_port,
    init_recovery,
    kill_after,
    make_topics,
    metric_total,
    produce,
    redis_content,
    run_flow,
    run_with_kills,
    simulated_events,
    start_flow,
)

pytestmark = pytest.mark.slow

START_MS = int(time.time() * 1000) - 3 * 3600 * 1000  # three hours ago: history, nothing "in the future"
BAD_MESSAGES = [
    (b"device-000", b"not json at all"),
    (
        b"device-001",
        b'{"device_id":"device-001","event_time":1,"temperature":1,"humidity":1,"pressure":1000}',
    ),
    (
        b"device-002",
        b'{"schema_version":1,"device_id":"device-002","event_time":1700000000000,'
        b'"temperature":NaN,"humidity":50,"pressure":1000}',
    ),
    (b"\xff\xfe", b"\x00\x01\x02 binary junk"),
    (None, b""),
]


def _interleave(good: list, bad: list, every: int) -> list:
    out, bad_iter = [], iter(bad)
    for i, item in enumerate(good):
        out.append(item)
        if i % every == every - 1:
            out.extend(b for b in [next(bad_iter, None)] if b is not None)
    out.extend(bad_iter)
    return out


@pytest.fixture(scope="module")
def loaded(kafka_bootstrap: str, kafka_admin, redis_url: str) -> Iterator[PipelineTopics]:
    """Topics holding 12,000 readings (10 devices, 10 minutes), 3,000 activity events and bad messages."""
    topics = make_topics(kafka_admin, kafka_bootstrap, redis_url)
    readings, events = simulated_events(12_000, 3_000, START_MS)
    produce(kafka_bootstrap, topics.iot, _interleave(readings, BAD_MESSAGES, 2_000))
    produce(kafka_bootstrap, topics.activity, events)
    yield topics
    delete_topics(kafka_admin, topics)


@pytest.fixture(scope="module")
def one_worker_content(loaded: PipelineTopics, redis_url: str) -> dict[str, object]:
    """Redis content after one single-worker run of the flow process."""
    run_flow(loaded.env())
    return redis_content(redis.Redis.from_url(redis_url), loaded.prefix)


def _reference(topics: PipelineTopics, prefix: str) -> tuple[dict[str, object], list[DeadLetter]]:
    """The same flow in-process (testing source over the same messages) into Redis under `prefix`."""
    messages = consume_all(topics.bootstrap, topics.iot) + consume_all(topics.bootstrap, topics.activity)
    settings = FlowSettings(
        kafka_bootstrap_servers=topics.bootstrap,
        iot_topic=topics.iot,
        activity_topic=topics.activity,
        dlq_topic=topics.dlq,
        redis_url=topics.redis_url,
        redis_prefix=prefix,
    )
    dead: list[DeadLetter] = []
    run_main(
        build_flow(settings, TestingSource(as_batches(messages)), RedisSink(settings), TestingSink(dead))
    )
    return redis_content(redis.Redis.from_url(topics.redis_url), prefix), dead


def test_the_flow_process_fills_redis_exactly_like_the_reference(loaded, one_worker_content, redis_url):
    reference, dead = _reference(loaded, loaded.prefix + "ref:")
    assert one_worker_content == reference
    assert len(dead) == len(BAD_MESSAGES)

    client = redis.Redis.from_url(redis_url)
    stats = decode_stats(client.hgetall(Layout(loaded.prefix).stats()))
    assert stats.counters.events_in == 12_000 + 3_000 + len(BAD_MESSAGES)
    assert stats.counters.dead_letters == len(BAD_MESSAGES)


def test_window_averages_in_redis_equal_numpy_over_the_raw_events(loaded, one_worker_content, redis_url):
    readings = [
        SensorReading.from_json(m.value)
        for m in consume_all(loaded.bootstrap, loaded.iot)
        if m.key == b"device-003"
        and m.value
        and m.value.startswith(b'{"schema_version":1,"device_id":"device-003"')
    ]
    by_window: dict[int, list[float]] = defaultdict(list)
    for r in readings:
        by_window[r.event_time // 10_000 * 10_000].append(r.temperature)
    client = redis.Redis.from_url(redis_url)
    key = Layout(loaded.prefix).window_series("10s", "device-003", Metric.TEMPERATURE)
    stored = {
        int(score): decode_window_stats(m, "10s", "device-003", "temperature")
        for m, score in client.zrange(key, 0, -1, withscores=True)
    }
    assert set(stored) == set(by_window)
    for start, values in by_window.items():
        ws = stored[start]
        assert ws.count == len(values)
        assert ws.avg == pytest.approx(np.mean(values), rel=1e-12)
        assert (ws.min, ws.max) == (min(values), max(values))
        assert ws.p99 == pytest.approx(np.percentile(values, 99), rel=1e-12)


def test_every_bad_message_is_in_the_dead_letter_topic_with_its_context(loaded, one_worker_content):
    letters = [DeadLetter.from_json(m.value) for m in consume_all(loaded.bootstrap, loaded.dlq)]
    originals = sorted((d.original_key() or b"", d.original_value() or b"") for d in letters)
    assert originals == sorted((k or b"", v) for k, v in BAD_MESSAGES)
    for d in letters:
        assert d.topic == loaded.iot
        assert d.partition is not None and d.offset is not None
        assert d.stage and d.error_type and d.error_message


def test_two_workers_give_the_same_redis_content(loaded, one_worker_content, redis_url):
    prefix = loaded.prefix + "w2:"
    run_flow(loaded.env(prefix), workers=2)
    assert redis_content(redis.Redis.from_url(redis_url), prefix) == one_worker_content


def test_two_processes_give_the_same_redis_content(loaded, one_worker_content, redis_url):
    prefix = loaded.prefix + "p2:"
    run_flow(loaded.env(prefix), processes=2)
    assert redis_content(redis.Redis.from_url(redis_url), prefix) == one_worker_content


def test_a_flow_killed_twice_and_resumed_from_recovery_ends_like_an_uninterrupted_run(
    kafka_bootstrap, kafka_admin, redis_url, tmp_path
):
    topics = make_topics(kafka_admin, kafka_bootstrap, redis_url)
    try:
        readings, events = simulated_events(150_000, 10_000, START_MS, seed=5)
        produce(kafka_bootstrap, topics.iot, readings)
        produce(kafka_bootstrap, topics.activity, events)
        client = redis.Redis.from_url(redis_url)

        run_flow(topics.env(topics.prefix + "clean:"))
        clean = redis_content(client, topics.prefix + "clean:")

        prefix = topics.prefix + "killed:"
        env = topics.env(prefix, PIPELINE_KAFKA_BATCH_SIZE="200")
        recovery = tmp_path / "recovery"
        init_recovery(recovery)
        seen = run_with_kills(env, recovery, client, prefix, kill_at=[5_000, 10_000])
        assert all(n < 160_000 for n in seen), f"killed too late to prove anything: {seen}"
        assert redis_content(client, prefix) == clean
    finally:
        delete_topics(kafka_admin, topics)


def _preload_and_run_clean(
    bootstrap: str, topics: PipelineTopics, redis_url: str, seed: int
) -> dict[str, object]:
    """Produce simulator traffic to `topics`, run the flow over it uninterrupted; its Redis content."""
    readings, events = simulated_events(60_000, 5_000, START_MS, seed=seed)
    produce(bootstrap, topics.iot, readings)
    produce(bootstrap, topics.activity, events)
    run_flow(topics.env(topics.prefix + "clean:"))
    return redis_content(redis.Redis.from_url(redis_url), topics.prefix + "clean:")


def _outage_env(topics: PipelineTopics, redis_url: str, **extra: str) -> dict[str, str]:
    """The flow's env for a Redis outage: small batches, a breaker that trips and probes within seconds."""
    return topics.env(
        topics.prefix,
        PIPELINE_REDIS_URL=redis_url,
        PIPELINE_KAFKA_BATCH_SIZE="100",
        PIPELINE_SINK_BREAKER_FAILURE_THRESHOLD="2",
        PIPELINE_SINK_BREAKER_RESET_TIMEOUT_S="1",
        PIPELINE_SINK_RETRIES="0",
        PIPELINE_SINK_SOCKET_CONNECT_TIMEOUT_S="0.2",
        **extra,
    )


def test_redis_down_for_longer_than_the_breaker_threshold_loses_nothing(
    kafka_bootstrap, kafka_admin, redis_url, tmp_path
):
    own = LocalInfraSettings(redis_url=f"redis://127.0.0.1:{free_port()}/0", state_dir=tmp_path / "redis")
    local.start(own, "redis")
    topics = make_topics(kafka_admin, kafka_bootstrap, redis_url)
    try:
        clean = _preload_and_run_clean(kafka_bootstrap, topics, redis_url, seed=9)

        own_url = own.redis_url.get_secret_value()
        flaky = redis.Redis.from_url(own_url)
        env = _outage_env(topics, own_url, PIPELINE_SINK_CLOSE_TIMEOUT_S="60")
        procs = start_flow(env)
        deadline = time.monotonic() + 60
        while events_in(flaky, topics.prefix) == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        # SHUTDOWN SAVE: the restarted server loads this snapshot, so Redis itself loses nothing.
        with contextlib.suppress(redis.ConnectionError):
            flaky.shutdown(save=True)
        local.stop(own, "redis")
        outage_end = time.monotonic() + 4  # > threshold x connect timeout, and several reset timeouts
        while time.monotonic() < outage_end:
            assert procs[0].poll() is None or procs[0].returncode == 0, "the flow died while Redis was down"
            time.sleep(0.1)
        local.start(own, "redis")
        out, _ = procs[0].communicate(timeout=120)
        assert procs[0].returncode == 0, out.decode(errors="replace")[-3000:]
        events = [json.loads(line).get("event") for line in out.decode().splitlines() if line.startswith("{")]
        assert "circuit_opened" in events and "circuit_closed" in events
        assert redis_content(redis.Redis.from_url(own_url), topics.prefix) == clean
    finally:
        local.stop(own, "redis")
        delete_topics(kafka_admin, topics)


def test_a_flow_killed_while_redis_is_down_writes_its_buffered_results_after_the_restart(
    kafka_bootstrap, kafka_admin, redis_url, tmp_path
):
    """Results buffered during an outage live in the sink's snapshots, not only in memory.

    The snapshots that hold the Kafka offsets past those results (same epoch) also hold
    them, so a SIGKILL during the outage cannot lose them: the restarted flow writes them.
    """
    own = LocalInfraSettings(redis_url=f"redis://127.0.0.1:{free_port()}/0", state_dir=tmp_path / "redis")
    local.start(own, "redis")
    topics = make_topics(kafka_admin, kafka_bootstrap, redis_url)
    try:
        clean = _preload_and_run_clean(kafka_bootstrap, topics, redis_url, seed=13)

        own_url = own.redis_url.get_secret_value()
        flaky = redis.Redis.from_url(own_url)
        metrics_port = free_port()
        env = _outage_env(
            topics,
            own_url,
            PIPELINE_FLOW_METRICS_PORT=str(metrics_port),
            PIPELINE_SINK_CLOSE_TIMEOUT_S="120",  # at the end of the input it waits for Redis: still alive
        )
        recovery = tmp_path / "recovery"
        init_recovery(recovery)
        procs = start_flow(env, recovery=recovery)
        deadline = time.monotonic() + 60
        while events_in(flaky, topics.prefix) == 0:
            assert procs[0].poll() is None, "the flow ended before Redis could be stopped"
            assert time.monotonic() < deadline, "the flow wrote nothing to Redis"
            time.sleep(0.02)
        # SHUTDOWN SAVE: the restarted server loads what it acknowledged; only the flow can lose results.
        with contextlib.suppress(redis.ConnectionError):
            flaky.shutdown(save=True)
        local.stop(own, "redis")

        deadline = time.monotonic() + 60
        while not metric_total(metrics_port, "pipeline_sink_buffered_records"):
            assert procs[0].poll() is None, "the flow exited while Redis was down"
            assert time.monotonic() < deadline, "the sink never buffered a result while Redis was down"
            time.sleep(0.05)
        # Results are buffered now; once two more epochs are committed, a snapshot whose Kafka
        # offsets lie past them is durable, and a restart resumes after them.
        buffered_at = committed_epoch(recovery)
        deadline = time.monotonic() + 60
        while committed_epoch(recovery) < buffered_at + 2:
            assert procs[0].poll() is None, "the flow exited while Redis was down"
            assert time.monotonic() < deadline, "no snapshot was committed during the outage"
            time.sleep(0.05)
        assert procs[0].poll() is None, "the flow ended before it could be killed"
        kill_after(procs, 0)

        local.start(own, "redis")
        [restarted] = start_flow(env, recovery=recovery)
        out, _ = restarted.communicate(timeout=180)
        assert restarted.returncode == 0, out.decode(errors="replace")[-3000:]
        assert redis_content(flaky, topics.prefix) == clean
        events = [json.loads(line).get("event") for line in out.decode().splitlines() if line.startswith("{")]
        assert "sink_partition_resumed" in events, "the buffered results came back from the snapshots"
        flaky.close()
    finally:
        local.stop(own, "redis")
        delete_topics(kafka_admin, topics)
