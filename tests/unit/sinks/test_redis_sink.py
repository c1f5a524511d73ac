"""The Redis sink's partitioning and its recovery state: routing keys, snapshots and their restore.

No Redis here: the partitions point at a port nobody listens on, so every write
fails at once (connection refused) and the records stay buffered, as during an
outage. Writing a restored snapshot to a real Redis is tested in
tests/integration/test_redis_sink.py.
"""

from __future__ import annotations

import pickle
import random
import socket
from collections import Counter
from collections.abc import Iterator

import pytest

from sinks.records import CircuitState, Metric, PageTotal, PipelineCounters
from sinks.redis_sink import RedisSink, RedisSinkPartition, sink_key
from sinks.settings import SinkSettings
from sinks.writer import PendingWrites, SinkRecord
from tests.sink_samples import T0, activity, alert, live_batch, reading, trend, window


def unreachable_settings(**overrides: object) -> SinkSettings:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # free once closed: connections to it are refused
    return SinkSettings(
        redis_url=f"redis://127.0.0.1:{port}/0",  # type: ignore[arg-type]
        sink_retries=0,
        sink_breaker_failure_threshold=2,
        sink_close_timeout_s=0,  # close() gives up at once instead of waiting for Redis
        **overrides,  # type: ignore[arg-type]
    )


def pending_of(records: list[SinkRecord]) -> PendingWrites:
    pending = PendingWrites()
    for record in records:
        pending.add(record)
    return pending


def same_buffer(a: PendingWrites, b: PendingWrites) -> bool:
    return all(getattr(a, slot) == getattr(b, slot) for slot in PendingWrites.__slots__)


@pytest.fixture
def outage_partition() -> Iterator[RedisSinkPartition]:
    part = RedisSink(unreachable_settings()).build_part("write_redis", "0", None)
    yield part
    part.close()


def test_a_buffers_records_rebuild_the_same_buffer_in_any_order():
    batches = [live_batch(T0 + i * 10_000) for i in range(3)]
    pending = pending_of([r for b in batches for r in b])
    records = pending.records()
    assert len(records) == len(pending)
    for seed in range(5):
        shuffled = records[:]
        random.Random(seed).shuffle(shuffled)
        assert same_buffer(pending_of(shuffled), pending)


def test_an_empty_buffer_has_no_records():
    assert PendingWrites().records() == []


def test_a_partition_snapshots_what_redis_has_not_taken(outage_partition):
    batches = [live_batch(T0 + i * 10_000) for i in range(3)]
    for batch in batches:
        outage_partition.write_batch(batch)

    snapshot = outage_partition.snapshot()

    assert outage_partition.circuit_state is CircuitState.OPEN
    assert same_buffer(pending_of(snapshot), pending_of([r for b in batches for r in b]))
    assert len(snapshot) == outage_partition.buffered


def test_a_snapshot_survives_pickling_and_resumes_as_the_same_buffer(outage_partition):
    for i in range(4):
        outage_partition.write_batch(live_batch(T0 + i * 10_000))
    stored = pickle.dumps(outage_partition.snapshot())

    resumed = RedisSink(unreachable_settings()).build_part("write_redis", "0", pickle.loads(stored))

    assert resumed.buffered == outage_partition.buffered
    assert same_buffer(pending_of(resumed.snapshot()), pending_of(outage_partition.snapshot()))
    resumed.close()


def test_a_resumed_partition_merges_new_records_with_the_restored_ones(outage_partition):
    outage_partition.write_batch([reading("dev-1", T0 + 5), window("dev-1", Metric.HUMIDITY, T0, avg=1.0)])
    resumed = RedisSink(unreachable_settings()).build_part("write_redis", "0", outage_partition.snapshot())

    resumed.write_batch([reading("dev-1", T0 + 1), window("dev-1", Metric.HUMIDITY, T0, avg=2.0)])

    held = pending_of(resumed.snapshot())
    assert held.latest["dev-1"].event_time == T0 + 5  # an older reading does not move "latest" back
    assert [w.avg for w in held.windows.values()] == [2.0]  # the re-emitted window replaces the restored one
    resumed.close()


def test_a_first_start_has_nothing_to_resume():
    part = RedisSink(unreachable_settings()).build_part("write_redis", "0", None)
    assert (part.buffered, part.snapshot()) == (0, [])
    part.close()


def test_each_partition_gets_its_share_of_the_buffer_bound():
    sink = RedisSink(unreachable_settings(sink_buffer_max_records=10, sink_partitions=4))
    parts = [sink.build_part("write_redis", p, None) for p in sink.list_parts()]
    assert [p.bound for p in parts] == [3, 3, 3, 3]  # rounded up: never less than the setting in total
    for p in parts:
        p.close()


def test_the_sink_lists_its_configured_partitions():
    assert RedisSink(SinkSettings(sink_partitions=3)).list_parts() == ["0", "1", "2"]


def test_records_that_write_one_redis_entry_share_a_routing_key():
    device = [
        reading("dev-7", T0),
        window("dev-7", Metric.TEMPERATURE, T0),
        window("dev-7", Metric.PRESSURE, T0, window_name="60s", size_ms=60_000),
        trend("dev-7", Metric.HUMIDITY, T0),
        alert("dev-7", T0),
    ]
    assert {sink_key(r) for r in device} == {"device:dev-7"}
    assert (
        sink_key(activity(T0)) == sink_key(activity(T0 + 10_000)) != sink_key(activity(T0, window_name="60s"))
    )
    assert sink_key(PageTotal("/a", 1)) == sink_key(PageTotal("/a", 9)) != sink_key(PageTotal("/b", 1))
    assert sink_key(PipelineCounters(1, 0, 0, None)) == sink_key(PipelineCounters(9, 1, 1, T0))


def test_an_unknown_item_cannot_be_routed():
    with pytest.raises(TypeError, match="cannot route a str"):
        sink_key("dev-1")  # type: ignore[arg-type]


def test_the_partition_of_a_key_is_the_same_in_every_process():
    sink = RedisSink(SinkSettings())
    # adler32, not hash(): Python salts str hashes per process.
    assert sink.part_fn("device:dev-000") == 0x272904A7
    devices = Counter(sink.part_fn(f"device:dev-{d:03d}") % 4 for d in range(100))
    assert len(devices) == 4, "a hundred devices spread over every partition"
