"""Benchmark of the Redis sink's writer: pipelined vs one round trip per command, and batch latency.

Runs against a real redis-server: its own one on a free port (started and stopped
here through infra.local) unless ``--redis-url`` names one. A batch is what the
dataflow emits when the 10 s and 60 s windows of every device close at once:
per device the latest reading, 3 metrics x 2 window kinds, 3 trends; plus an
alert, an activity window, page totals and the counters.

    .venv/bin/python bench/bench_sink.py [--devices 50] [--batches 200] [--redis-url URL]
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # a script, not a package: reach the project and its test samples

import redis  # noqa: E402

from bench.harness import bar  # noqa: E402
from infra import local  # noqa: E402
from infra.settings import LocalInfraSettings  # noqa: E402
from sinks.layout import SinkStatus  # noqa: E402
from sinks.records import CircuitState  # noqa: E402
from sinks.settings import SinkSettings  # noqa: E402
from sinks.writer import PendingWrites, RedisWriter, build_commands  # noqa: E402
from tests.sink_samples import T0, live_batch  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pending(items: list) -> PendingWrites:
    pending = PendingWrites()
    for item in items:
        pending.add(item)
    return pending


def run(redis_url: str, devices: int, batches: int) -> None:
    settings = SinkSettings(redis_url=redis_url, redis_prefix="bench:")
    writer = RedisWriter(settings)
    writer.setup()
    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter(match="bench:*", count=1000):
        client.delete(key)
    inputs = [live_batch(T0 + i * 10_000, devices=devices, pages=20) for i in range(batches)]
    per_batch = len(_pending(inputs[0]))

    few = inputs[: max(5, batches // 4)]
    progress = bar(len(inputs) + 2 * len(few), "sink", "batches")

    # Pipelined: the writer as the sink uses it (encoding + one round trip per batch).
    latencies = []
    started = time.perf_counter()
    for items in inputs:
        t = time.perf_counter()
        writer.add(items)
        writer.flush()
        latencies.append(time.perf_counter() - t)
        progress.update()
    pipelined_s = time.perf_counter() - started
    pipelined_rate = batches * per_batch / pipelined_s

    # Unpipelined: the same commands, each its own round trip.
    status = SinkStatus(0, CircuitState.CLOSED)
    started = time.perf_counter()
    commands = 0
    for items in few:
        progress.update()
        for command in build_commands(_pending(items), writer.layout, settings, status):
            client.execute_command(*command)
            commands += 1
    same_rate = len(few) * per_batch / (time.perf_counter() - started)

    # Record by record: what a sink without batching does, one round trip per record.
    started = time.perf_counter()
    for items in few:
        progress.update()
        pending = _pending(items)
        for kind in (
            pending.latest,
            pending.windows,
            pending.trends,
            pending.alerts,
            pending.activity,
            pending.totals,
        ):
            for record in kind.values():
                for command in build_commands(_pending([record]), writer.layout, settings, status)[:-2]:
                    client.execute_command(*command)  # [:-2]: without the batch's status and notification
    single_rate = len(few) * per_batch / (time.perf_counter() - started)
    progress.close()

    q = statistics.quantiles(latencies, n=100)
    print(f"batch: {per_batch} records ({devices} devices) -> {commands // len(few)} Redis commands")
    print(f"pipelined (the sink):          {pipelined_rate:9,.0f} records/s  ({batches} batches)")
    print(f"same commands, unpipelined:    {same_rate:9,.0f} records/s  ({len(few)} batches)")
    print(f"record by record, unpipelined: {single_rate:9,.0f} records/s  ({len(few)} batches)")
    print(f"ratio pipelined / record by record: {pipelined_rate / single_rate:.1f}x")
    p50, p99 = q[49] * 1e3, q[98] * 1e3
    print(f"batch latency (coalesce + encode + one round trip): p50 {p50:.2f} ms  p99 {p99:.2f} ms")
    for key in client.scan_iter(match="bench:*", count=1000):
        client.delete(key)
    client.close()
    writer.close()


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=50)
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--redis-url", help="an existing Redis (its bench:* keys are deleted)")
    args = parser.parse_args()
    if args.redis_url:
        run(args.redis_url, args.devices, args.batches)
        return
    with tempfile.TemporaryDirectory() as tmp:
        infra = LocalInfraSettings(redis_url=f"redis://127.0.0.1:{_free_port()}/0", state_dir=Path(tmp))
        local.start_redis(infra)
        try:
            run(infra.redis_url.get_secret_value(), args.devices, args.batches)
        finally:
            local.redis_service(infra).stop()


if __name__ == "__main__":
    main()
