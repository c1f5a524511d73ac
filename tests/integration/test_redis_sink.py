"""The Bytewax sink against real Redis processes: a dataflow's output, Redis outages, backpressure.

The fault tests start their own redis-server (infra.local, a free port) so they can
stop and restart it; the uninterrupted reference goes to the shared test Redis.
"""

from __future__ import annotations

import contextlib
import pickle
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest
import redis
import structlog
from bytewax import operators as op
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSource, run_main
from prometheus_client import REGISTRY

from infra import local
from infra.settings import LocalInfraSettings
from sinks.records import CircuitState
from sinks.redis_sink import RedisSink, RedisSinkPartition, sink_key
from sinks.settings import SinkSettings
from sinks.writer import PendingWrites, RedisWriter, SinkRecord
from tests.sink_samples import T0, dump, live_batch

NOW_MS = 1_800_000_000_000

# Small enough that an outage is noticed within milliseconds: connection refused is immediate.
FAST_FAILURE = {
    "sink_retries": 1,
    "sink_backoff_base_s": 0.005,
    "sink_backoff_cap_s": 0.02,
    "sink_socket_timeout_s": 2.0,
    "sink_socket_connect_timeout_s": 2.0,
}


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def own_redis(tmp_path) -> Iterator[LocalInfraSettings]:
    """A redis-server of this test's own, on a free port, stopped afterwards."""
    settings = LocalInfraSettings(redis_url=f"redis://127.0.0.1:{free_port()}/0", state_dir=tmp_path)
    local.start_redis(settings)
    yield settings
    local.redis_service(settings).stop()


def reference(redis_url: str, prefix: str, batches: list[list[SinkRecord]]) -> dict:
    """Content after writing `batches` to a healthy Redis, one flush each."""
    writer = RedisWriter(SinkSettings(redis_url=redis_url, redis_prefix=prefix), now_ms=lambda: NOW_MS)
    writer.setup()
    for batch in batches:
        writer.add(batch)
        writer.flush()
    writer.close()
    with redis.Redis.from_url(redis_url) as client:
        return dump(client, prefix)


def gauge(name: str, partition: str = "0") -> float | None:
    return REGISTRY.get_sample_value(name, {"partition": partition})


def wait_until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met before the deadline"
        time.sleep(0.01)


def test_the_sink_writes_a_dataflows_output_as_the_writer_would(redis_url, redis_client, key_prefix):
    batches = [live_batch(T0 + i * 10_000) for i in range(5)]
    flow = Dataflow("sink_test")
    results = op.input(
        "records", flow, TestingSource([item for batch in batches for item in batch], batch_size=7)
    )
    op.output(
        "write_redis",
        op.key_on("key_for_redis", results, sink_key),
        RedisSink(SinkSettings(redis_url=redis_url, redis_prefix=key_prefix), now_ms=lambda: NOW_MS),
    )

    run_main(flow)

    assert dump(redis_client, key_prefix) == reference(redis_url, "ref:", batches) != {}


def test_redis_down_longer_than_the_breaker_threshold_loses_nothing(
    own_redis, redis_url, redis_client, key_prefix
):
    url = own_redis.redis_url.get_secret_value()
    clock = FakeClock()
    settings = SinkSettings(
        redis_url=url,
        redis_prefix=key_prefix,
        sink_breaker_failure_threshold=3,
        sink_breaker_reset_timeout_s=30,
        **FAST_FAILURE,
    )
    sink = RedisSink(settings, clock=clock, now_ms=lambda: NOW_MS)
    part = sink.build_part("write_redis", "0", None)
    transitions: list[CircuitState] = []
    part.breaker.add_listener(lambda _old, new: transitions.append(new))
    batches = [live_batch(T0 + i * 10_000) for i in range(16)]
    own = redis.Redis.from_url(url)

    for batch in batches[:3]:
        part.write_batch(batch)
    own.save()  # so the restarted server comes back with what was written before the outage
    local.redis_service(own_redis).stop()

    for batch in batches[3:9]:  # Redis is down: nothing raises, results wait in the buffer
        part.write_batch(batch)
    assert part.circuit_state is CircuitState.OPEN
    assert gauge("pipeline_sink_circuit_state") == 2
    buffered = part.buffered
    assert buffered > len(batches[3])
    assert gauge("pipeline_sink_buffered_records") == buffered

    clock.now += 30  # the probe after the reset timeout fails too: open again
    part.write_batch(batches[9])
    assert part.circuit_state is CircuitState.OPEN

    local.start_redis(own_redis)
    part.write_batch(batches[10])  # still open: only buffered
    assert part.buffered > buffered
    clock.now += 30
    part.write_batch(batches[11])  # the probe: half-open, written, closed
    assert (part.circuit_state, part.buffered) == (CircuitState.CLOSED, 0)
    for batch in batches[12:]:
        part.write_batch(batch)
    part.close()

    assert transitions == [
        CircuitState.OPEN,
        CircuitState.HALF_OPEN,
        CircuitState.OPEN,
        CircuitState.HALF_OPEN,
        CircuitState.CLOSED,
    ]
    assert gauge("pipeline_sink_circuit_state") == 0
    assert dump(own, key_prefix) == reference(redis_url, key_prefix, batches)
    own.close()


def test_a_full_buffer_blocks_the_dataflow_until_redis_is_back(own_redis, redis_url, key_prefix):
    url = own_redis.redis_url.get_secret_value()
    batches = [live_batch(T0 + i * 10_000) for i in range(3)]
    two_batches = PendingWrites()
    for item in batches[0] + batches[1]:
        two_batches.add(item)
    settings = SinkSettings(
        redis_url=url,
        redis_prefix=key_prefix,
        sink_buffer_max_records=len(two_batches),  # the third batch goes beyond it
        sink_partitions=1,  # the whole bound is this one partition's
        sink_breaker_failure_threshold=1,
        sink_breaker_reset_timeout_s=0.2,
        **FAST_FAILURE,
    )
    part = RedisSink(settings, now_ms=lambda: NOW_MS).build_part("write_redis", "0", None)
    local.redis_service(own_redis).stop()

    part.write_batch(batches[0])
    part.write_batch(batches[1])
    assert part.buffered == settings.sink_buffer_max_records  # at the bound: returned at once
    blocked = threading.Thread(target=part.write_batch, args=(batches[2],))
    blocked.start()
    wait_until(lambda: gauge("pipeline_sink_backpressure") == 1)
    assert blocked.is_alive()

    local.start_redis(own_redis)
    blocked.join(timeout=30)

    assert not blocked.is_alive()
    assert (part.buffered, gauge("pipeline_sink_backpressure")) == (0, 0)
    with redis.Redis.from_url(url) as own:
        assert dump(own, key_prefix) == reference(redis_url, key_prefix, batches)
    part.close()


def test_close_writes_the_buffer_once_redis_is_back(own_redis, redis_url, key_prefix):
    url = own_redis.redis_url.get_secret_value()
    batches = [live_batch(T0 + i * 10_000) for i in range(4)]
    settings = SinkSettings(
        redis_url=url,
        redis_prefix=key_prefix,
        sink_breaker_failure_threshold=1,
        sink_breaker_reset_timeout_s=0.2,
        sink_close_timeout_s=30,
        **FAST_FAILURE,
    )
    part = RedisSink(settings, now_ms=lambda: NOW_MS).build_part("write_redis", "0", None)
    local.redis_service(own_redis).stop()
    for batch in batches:
        part.write_batch(batch)
    assert part.circuit_state is CircuitState.OPEN
    local.start_redis(own_redis)

    part.close()

    with redis.Redis.from_url(url) as own:
        assert dump(own, key_prefix) == reference(redis_url, key_prefix, batches)


def test_close_gives_up_loudly_when_redis_stays_down(own_redis, key_prefix):
    settings = SinkSettings(
        redis_url=own_redis.redis_url.get_secret_value(),
        redis_prefix=key_prefix,
        sink_close_timeout_s=0.1,
        **FAST_FAILURE,
    )
    part: RedisSinkPartition = RedisSink(settings).build_part("write_redis", "0", None)
    local.redis_service(own_redis).stop()
    part.write_batch(live_batch(T0))

    with structlog.testing.capture_logs() as logs:
        part.close()

    [event] = [e for e in logs if e["event"] == "sink_closed_with_unwritten_records"]
    assert event["records"] == part.buffered > 0


def test_a_partition_resumed_from_its_snapshot_writes_what_redis_never_took(own_redis, redis_url, key_prefix):
    url = own_redis.redis_url.get_secret_value()
    batches = [live_batch(T0 + i * 10_000) for i in range(6)]
    settings = SinkSettings(
        redis_url=url,
        redis_prefix=key_prefix,
        sink_breaker_failure_threshold=1,
        sink_close_timeout_s=0,
        **FAST_FAILURE,
    )
    sink = RedisSink(settings, now_ms=lambda: NOW_MS)
    crashed = sink.build_part("write_redis", "0", None)
    for batch in batches[:2]:
        crashed.write_batch(batch)
    with redis.Redis.from_url(url) as own, contextlib.suppress(redis.ConnectionError):
        own.shutdown(save=True)  # the restarted server comes back with what it acknowledged
    local.redis_service(own_redis).stop()
    for batch in batches[2:4]:
        crashed.write_batch(batch)
    stored = pickle.dumps(crashed.snapshot())  # what Bytewax keeps; then the process dies
    assert crashed.buffered > 0

    local.start_redis(own_redis)
    resumed = sink.build_part("write_redis", "0", pickle.loads(stored))
    assert resumed.buffered == 0  # written at once: Redis is back
    for batch in batches[4:]:
        resumed.write_batch(batch)
    resumed.close()

    with redis.Redis.from_url(url) as own:
        assert dump(own, key_prefix) == reference(redis_url, key_prefix, batches)
