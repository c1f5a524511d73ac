"""Scaling: throughput and memory of the dataflow process against workers, partitions and devices.

Three sweeps, each run like ``bench.bench_e2e`` (preloaded simulator events, IoT
plus 10% activity, the real ``python -m bytewax.run flows.main`` from the start of
fresh topics to their end, into the real Redis):

* **flow shape**: 1 worker, 2 workers, 2 processes, on 3 partitions, 10 devices;
* **partitions**: the input topics with 1, 2, 4, 6 partitions, read by 2 workers
  (a partition is read by one worker, so fewer partitions than workers idles one);
* **devices**: 10, 100, 1,000, 10,000 keys, 1 worker, 3 partitions (the same number
  of events: more devices mean fewer readings per device per batch and more state).

Each run reports events/s (wall: process start to exit; steady: first Redis write
to exit) and the flow's peak resident memory (psutil, summed over its processes,
sampled every 0.2 s). An empty sweep (``--shapes ''``) is skipped.

    .venv/bin/python -m bench.bench_scaling [--events 500000] [--shapes 1w,2w,2p] [--partitions 1,2,4,6]
        [--devices 10,100,1000,10000]
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402
import redis  # noqa: E402
from confluent_kafka.admin import AdminClient  # noqa: E402

from bench.bench_e2e import T0_MS, run_flow_timed  # noqa: E402
from bench.harness import MB, FlowShape, fresh_topics, say  # noqa: E402
from config.settings import load_settings  # noqa: E402
from infra.settings import LocalInfraSettings  # noqa: E402
from tests.pipeline_harness import PipelineTopics, delete_topics, produce, simulated_events  # noqa: E402


@dataclass
class Point:
    """One run of a sweep."""

    sweep: str
    value: str
    events: int
    wall_events_per_s: float
    steady_events_per_s: float
    peak_rss_mb: float


@functools.lru_cache(maxsize=1)
def _simulated(iot: int, devices: int) -> tuple[list[tuple[bytes, bytes]], list[tuple[bytes, bytes]]]:
    # The partitions sweep and the 10-device point load the same events: simulating them
    # (~36,000 readings/s) once instead of five times saves most of their preload time.
    return simulated_events(iot, iot // 10, T0_MS, devices=devices)


class Loaded:
    """Fresh topics of `partitions` partitions holding `iot` readings of `devices` devices (+10% activity)."""

    def __init__(
        self, admin: AdminClient, bootstrap: str, redis_url: str, iot: int, devices: int, partitions: int
    ) -> None:
        """Create and fill the topics."""
        self.admin = admin
        started = time.perf_counter()
        readings, events = _simulated(iot, devices)
        self.total = len(readings) + len(events)
        self.topics: PipelineTopics = fresh_topics(admin, bootstrap, redis_url, partitions)
        produce(bootstrap, self.topics.iot, readings)
        produce(bootstrap, self.topics.activity, events)
        say(
            "scaling",
            f"preloaded {self.total:,} events ({devices:,} devices, {partitions} partitions) "
            f"in {time.perf_counter() - started:.1f} s",
        )

    def close(self, client: redis.Redis) -> None:
        """Delete the topics and every key written under their prefix."""
        delete_topics(self.admin, self.topics)
        keys = list(client.scan_iter(match=f"{self.topics.prefix}*", count=1000))
        for i in range(0, len(keys), 1000):
            client.delete(*keys[i : i + 1000])


def run_point(
    loaded: Loaded, client: redis.Redis, shape: FlowShape, sweep: str, value: str, tag: str
) -> Point:
    """Run the flow once over `loaded` under its own key prefix."""
    prefix = f"{loaded.topics.prefix}{tag}:"
    say("scaling", f"{sweep} = {value}: dataflow, {shape.label}")
    run = run_flow_timed(loaded.topics.env(prefix=prefix), client, prefix, shape, loaded.total)
    point = Point(sweep, value, loaded.total, run.wall_rate, run.steady_rate, run.peak_rss_bytes / MB)
    say(
        "scaling",
        f"  {point.wall_events_per_s:,.0f} events/s wall, {point.steady_events_per_s:,.0f} steady, "
        f"peak RSS {point.peak_rss_mb:,.0f} MB",
    )
    return point


def _items(text: str) -> list[str]:
    return [t for t in text.split(",") if t.strip()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=500_000, help="IoT readings per run (500,000)")
    parser.add_argument("--shapes", default="1w,2w,2p", help="flow shapes of the first sweep ('' skips)")
    parser.add_argument("--partitions", default="1,2,4,6", help="partition counts ('' skips)")
    parser.add_argument("--partition-flow", default="2w", help="flow shape of the partitions sweep (2w)")
    parser.add_argument("--devices", default="10,100,1000,10000", help="device counts ('' skips)")
    args = parser.parse_args()
    infra = load_settings(LocalInfraSettings)
    bootstrap = infra.kafka_bootstrap_servers
    redis_url = infra.redis_url.get_secret_value()
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 4})
    client = redis.Redis.from_url(redis_url)
    points: list[Point] = []

    if _items(args.shapes):
        loaded = Loaded(admin, bootstrap, redis_url, args.events, 10, 3)
        try:
            for text in _items(args.shapes):
                shape = FlowShape.parse(text)
                points.append(run_point(loaded, client, shape, "flow", shape.label, shape.short))
        finally:
            loaded.close(client)
    partition_shape = FlowShape.parse(args.partition_flow)
    for text in _items(args.partitions):
        loaded = Loaded(admin, bootstrap, redis_url, args.events, 10, int(text))
        try:
            points.append(run_point(loaded, client, partition_shape, "partitions", text, f"p{text}"))
        finally:
            loaded.close(client)
    for text in _items(args.devices):
        loaded = Loaded(admin, bootstrap, redis_url, args.events, int(text), 3)
        try:
            points.append(run_point(loaded, client, FlowShape(), "devices", text, f"d{text}"))
        finally:
            loaded.close(client)

    print(
        f"# bench_scaling: {args.events:,} IoT readings + {args.events // 10:,} activity events per run; "
        f"flow sweep on 3 partitions/10 devices, partitions sweep with {partition_shape.label}, "
        "devices sweep with 1 worker on 3 partitions"
    )
    for p in points:
        print(
            f"{p.sweep:<10} {p.value:>12}: {p.wall_events_per_s:10,.0f} events/s wall, "
            f"{p.steady_events_per_s:10,.0f} steady; flow peak RSS {p.peak_rss_mb:6,.0f} MB"
        )
    payload = {"events": args.events, "points": [p.__dict__ for p in points]}
    print("BENCH_JSON " + orjson.dumps(payload).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
