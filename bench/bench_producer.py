"""Producer throughput: batching + LZ4 against one synchronous send per event, on a real broker.

Run from the repository root with the project's environment::

    .venv/bin/python bench/bench_producer.py                   # 200,000 batched, 3,000 synchronous
    .venv/bin/python bench/bench_producer.py --quick           # 50,000 / 1,000: well under a minute
    .venv/bin/python bench/bench_producer.py --events 1000000 --sync-events 5000

The broker is ``PIPELINE_KAFKA_BOOTSTRAP_SERVERS`` (default 127.0.0.1:9092, the one
``make up`` starts). ``--start-services`` starts a local broker with ``infra.local``
when none answers there (ports and state from the same ``PIPELINE_`` variables) and
stops it afterwards. Each run uses a fresh 3-partition topic, deleted at the end.

Both modes send the same pre-serialised IoT readings with the same safety
(``enable.idempotence``, ``acks=all``), so the figures compare only how events
travel: *batched* is the pipeline's producer configuration (``batch.size`` 16 KB,
``linger.ms``, LZ4, delivery reports served by ``poll``); *synchronous* is
``produce`` then ``flush`` for every event, no linger, no compression. For
context it also prints the simulator's own rate, the batched run with a 1 MB
``batch.size`` (librdkafka's default: the 16 KB batches are what limits the
pipeline's figure on one local broker), and *simulate + produce*, the CLI's
whole path (simulator, validation, JSON, `EventProducer`). Figures are events per second of wall time
from the first send until every event is acknowledged.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # a script as well as a module

from confluent_kafka import KafkaError, Message, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from bench.harness import bar
from config.settings import load_settings
from infra import local
from infra.settings import LocalInfraSettings
from sources.clock import simulated_times
from sources.iot import IotConfig, IotSimulator
from sources.producer import EventProducer
from sources.settings import ProducerSettings

T0 = 1_700_000_000_000


@dataclass(frozen=True)
class Figure:
    """One measured throughput."""

    name: str
    events: int
    seconds: float

    @property
    def rate(self) -> float:
        """Events per second."""
        return self.events / self.seconds


class Deliveries:
    """Counts delivery reports; any failure aborts the benchmark (a figure must be all delivered)."""

    def __init__(self) -> None:
        self.delivered = 0

    def __call__(self, err: KafkaError | None, _msg: Message) -> None:
        """Librdkafka's delivery callback."""
        if err is not None:
            raise RuntimeError(f"delivery failed: {err}")
        self.delivered += 1


def make_payloads(n: int) -> tuple[list[tuple[bytes, bytes]], Figure]:
    sim = IotSimulator(IotConfig(), seed=1)
    started = time.perf_counter()
    payloads = [(r.key.encode(), r.reading.to_json()) for r in sim.run(simulated_times(T0, 20.0, n))]
    return payloads, Figure("simulate + validate + JSON only", n, time.perf_counter() - started)


def bench_batched(
    conf: dict, topic: str, payloads: list[tuple[bytes, bytes]], name: str = "batched + LZ4 (pipeline config)"
) -> Figure:
    deliveries = Deliveries()
    producer = Producer({**conf, "on_delivery": deliveries})
    started = time.perf_counter()
    for key, value in payloads:
        while True:
            try:
                producer.produce(topic, value, key)
                break
            except BufferError:
                producer.poll(0.01)
        producer.poll(0)
    remaining = producer.flush(60)
    seconds = time.perf_counter() - started
    assert remaining == 0 and deliveries.delivered == len(payloads), "not every event was delivered"
    return Figure(name, len(payloads), seconds)


def bench_sync(conf: dict, topic: str, payloads: list[tuple[bytes, bytes]]) -> Figure:
    deliveries = Deliveries()
    sync_conf = {**conf, "linger.ms": 0, "compression.type": "none", "on_delivery": deliveries}
    producer = Producer(sync_conf)
    started = time.perf_counter()
    for key, value in payloads:
        producer.produce(topic, value, key)
        producer.flush(30)
    seconds = time.perf_counter() - started
    assert deliveries.delivered == len(payloads), "not every event was delivered"
    return Figure("synchronous, produce + flush each", len(payloads), seconds)


def bench_cli_path(conf: dict, topic: str, n: int) -> Figure:
    producer = EventProducer(conf, topic)
    sim = IotSimulator(IotConfig(), seed=2)
    started = time.perf_counter()
    for reading in sim.run(simulated_times(T0, 20.0, n)):
        producer.send(reading.reading)
    remaining = producer.flush(60)
    seconds = time.perf_counter() - started
    assert remaining == 0 and producer.stats.delivered == n, "not every event was delivered"
    return Figure("simulate + produce (the CLI's path)", n, seconds)


def broker_answers(bootstrap: str) -> bool:
    try:
        AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 3000}).list_topics(timeout=5)
    except Exception:  # noqa: BLE001 - any failure means "not reachable"
        return False
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000, help="events for the batched runs")
    parser.add_argument("--sync-events", type=int, default=3_000, help="events for the synchronous run")
    parser.add_argument("--quick", action="store_true", help="50,000 batched and 1,000 synchronous events")
    parser.add_argument(
        "--start-services", action="store_true", help="start a local broker via infra.local if none answers"
    )
    args = parser.parse_args()
    if args.quick:
        args.events, args.sync_events = 50_000, 1_000

    settings = load_settings(ProducerSettings)
    bootstrap = settings.kafka_bootstrap_servers
    started_services: list[str] = []
    infra = load_settings(LocalInfraSettings)
    if not broker_answers(bootstrap):
        if not args.start_services:
            print(f"no Kafka broker at {bootstrap}: run `make up`, or pass --start-services", file=sys.stderr)
            return 1
        started_services = local.start(infra, "kafka")
    # log_level 4: librdkafka's info lines (e.g. on shutdown) would garble the figures.
    admin = AdminClient({**settings.kafka_client_config(), "log_level": 4})
    topic = f"bench-producer-{uuid.uuid4().hex[:8]}"
    admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])[topic].result(timeout=30)
    try:
        conf = settings.producer_config()
        # One step per measured run (the sizes set how long each takes).
        progress = bar(5, "producer", "runs")
        progress.set_postfix_str("simulate")
        payloads, simulate = make_payloads(max(args.events, args.sync_events))
        progress.update()
        mean_bytes = sum(len(v) for _, v in payloads) / len(payloads)
        keys = len({k for k, _ in payloads})
        print(
            f"producer benchmark: IoT readings of {mean_bytes:.0f} B on average, {keys} keys, "
            f"broker {bootstrap}, topic {topic} (3 partitions)\n"
            f"  safety in every run: enable.idempotence=true, acks=all; batched: batch.size="
            f"{conf['batch.size']}, linger.ms={conf['linger.ms']}, compression={conf['compression.type']}"
        )
        progress.set_postfix_str("batched")
        batched = bench_batched(conf, topic, payloads[: args.events])
        progress.update()
        progress.set_postfix_str("synchronous")
        sync = bench_sync(conf, topic, payloads[: args.sync_events])
        progress.update()
        big_batches = {**conf, "batch.size": 1_000_000}
        progress.set_postfix_str("batched, 1 MB batches")
        big = bench_batched(big_batches, topic, payloads[: args.events], "batched + LZ4, batch.size 1 MB")
        progress.update()
        progress.set_postfix_str("simulate + produce")
        cli = bench_cli_path(conf, topic, args.events)
        progress.update()
        progress.close()
        for figure in (simulate, batched, sync, big, cli):
            print(
                f"  {figure.name:<36} {figure.rate:>12,.0f} events/s"
                f"  ({figure.events:,} in {figure.seconds:.2f} s)"
            )
        print(f"  {'ratio batched / synchronous':<36} {batched.rate / sync.rate:>12,.1f} x")
    finally:
        admin.delete_topics([topic])[topic].result(timeout=30)
        for name in started_services:
            local.stop(infra, name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
