"""End-to-end throughput: the real dataflow process from Kafka to Redis, against a decode-only ceiling.

Preloads simulator events (IoT readings at 2 Hz per device, plus activity events)
into fresh topics (3 partitions each, as the pipeline creates them), then runs
``python -m bytewax.run flows.main`` with ``PIPELINE_KAFKA_STOP_AT_END=true`` from
the beginning of the topics to their end, into the real Redis, once per flow
shape: 1 worker, 2 workers (one process, ``-w 2``) and 2 processes of one worker
each (``-i 0|1 -a host:port;host:port``, as the pipeline tests run them). Figures per run:

* *wall*: all events / time from process start to process exit (includes Python
  start-up, imports, Kafka metadata and the final flush);
* *steady*: all events / time from the first write seen in Redis (the latest
  reading hash appearing, polled every 5 ms) to process exit;
* *peak RSS*: the flow's resident memory at its highest (summed over its processes,
  sampled every 0.2 s with psutil).

The Redis content of every run must equal the first (1-worker) run's
(exact equality of every key): a fast wrong answer doesn't count.
The *ceiling* is a plain confluent-kafka consumer on the same topics that only
batch-consumes and decodes every value with orjson; our figures are reported as a
fraction of it.

The broker and Redis are ``PIPELINE_KAFKA_BOOTSTRAP_SERVERS`` and
``PIPELINE_REDIS_URL`` (``bench/run.py`` starts its own ones). The last line of
output is ``BENCH_JSON {...}`` with every figure, for ``bench/run.py``.

    .venv/bin/python -m bench.bench_e2e [--iot 200000] [--activity 20000] [--runs 1w,2w,2p] [--devices 10]
"""

from __future__ import annotations

import argparse
import resource
import sys
import threading
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # a script as well as a module: reach the project and the test harness

import orjson  # noqa: E402
import redis  # noqa: E402
from confluent_kafka import Consumer, KafkaError, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient  # noqa: E402

from bench.harness import MB, FlowShape, MemorySampler, bar, say  # noqa: E402
from config.settings import load_settings  # noqa: E402
from infra.settings import LocalInfraSettings  # noqa: E402
from sinks.layout import Layout, decode_stats  # noqa: E402
from tests.pipeline_harness import (  # noqa: E402
    delete_topics,
    make_topics,
    produce,
    redis_content,
    simulated_events,
    start_flow,
    wait_flow,
)

T0_MS = 1_700_000_000_000


@dataclass
class FlowRun:
    """One run of the dataflow process(es)."""

    workers: int
    processes: int
    label: str
    events: int
    wall_s: float
    steady_s: float
    cpu_s: float
    """CPU time (user + system) of the flow process: near wall_s x cores means CPU-bound."""
    matches_reference: bool | None  # None for the reference run itself
    peak_rss_bytes: int = 0
    mismatch: str = ""

    @property
    def wall_rate(self) -> float:
        """Events per second of process wall time."""
        return self.events / self.wall_s

    @property
    def steady_rate(self) -> float:
        """Events per second from the first Redis write to exit."""
        return self.events / self.steady_s


def _watch_first_write(client: redis.Redis, key: str, stop: threading.Event, out: list[float]) -> None:
    # Polling rather than keyspace notifications: it needs no Redis config change and 5 ms is
    # far below the runs' lengths.
    while not stop.is_set():
        if client.exists(key):
            out.append(time.perf_counter())
            return
        time.sleep(0.005)


def _show_progress(
    client: redis.Redis, layout: Layout, total: int, label: str, stop: threading.Event
) -> None:
    # The flow's own events-in counter, as the dashboard shows it: a progress bar, not a figure.
    with bar(total, f"flow, {label}", "events") as progress:
        while not stop.wait(0.5):
            seen = decode_stats(client.hgetall(layout.stats())).counters.events_in
            progress.update(min(seen, total) - progress.n)


def run_flow_timed(
    env: dict[str, str], client: redis.Redis, prefix: str, shape: FlowShape, events: int
) -> FlowRun:
    """Run the dataflow to the end of its topics; time it and sample its memory."""
    stop = threading.Event()
    first: list[float] = []
    watcher = threading.Thread(
        target=_watch_first_write, args=(client, Layout(prefix).latest(), stop, first), daemon=True
    )
    watcher.start()
    shower = threading.Thread(
        target=_show_progress, args=(client, Layout(prefix), events, shape.label, stop), daemon=True
    )
    shower.start()
    usage_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    procs = start_flow(env, workers=shape.workers, processes=shape.processes)
    with MemorySampler([p.pid for p in procs]) as memory:
        wait_flow(procs, timeout_s=3600)
    ended = time.perf_counter()
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_s = usage.ru_utime + usage.ru_stime - usage_before.ru_utime - usage_before.ru_stime
    stop.set()
    watcher.join()
    shower.join()
    first_write = first[0] if first else started
    return FlowRun(
        shape.workers,
        shape.processes,
        shape.label,
        events,
        ended - started,
        ended - first_write,
        cpu_s,
        None,
        memory.peak_rss,
    )


def describe_mismatch(got: dict[str, object], want: dict[str, object], exc: AssertionError) -> str:
    """Which keys differ (the harness's bare assert says nothing outside pytest)."""
    keys = sorted(set(got) | set(want))
    differ = [k for k in keys if got.get(k) != want.get(k)]
    parts = [f"{len(differ)} of {len(keys)} keys differ: {differ[:8]}"]
    for k in differ[:2]:
        g, w = got.get(k), want.get(k)
        if isinstance(g, dict) and isinstance(w, dict):
            fields = sorted({f for f in set(g) | set(w) if g.get(f) != w.get(f)}, key=str)[:5]
            parts.append(f"{k}: fields {[(f, g.get(f), w.get(f)) for f in fields]}")
        elif isinstance(g, list) and isinstance(w, list):
            parts.append(
                f"{k}: {len(g)} vs {len(w)} members; first differing: {[m for m in g if m not in w][:2]}"
            )
    if not differ:
        parts.append(f"alerts: {str(exc)[:300]}")
    return "; ".join(parts)[:2000]


def ceiling(bootstrap: str, topics: list[str], expected: int) -> tuple[int, float]:
    """Batch-consume every message of `topics` and decode it with orjson; (messages, seconds)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "bench-ceiling",
            "enable.partition.eof": True,
            "enable.auto.commit": False,
            "log_level": 4,
        }
    )
    try:
        assignment = []
        for topic in topics:
            parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
            assignment += [TopicPartition(topic, p, 0) for p in parts]
        started = time.perf_counter()
        consumer.assign(assignment)
        at_end: set[tuple[str | None, int | None]] = set()
        count = 0
        deadline = time.monotonic() + 600
        while len(at_end) < len(assignment) and time.monotonic() < deadline:
            for msg in consumer.consume(10_000, 0.5):
                err = msg.error()
                if err is not None:
                    assert err.code() == KafkaError._PARTITION_EOF, err
                    at_end.add((msg.topic(), msg.partition()))
                    continue
                orjson.loads(msg.value())  # type: ignore[arg-type]
                count += 1
        seconds = time.perf_counter() - started
    finally:
        consumer.close()
    assert count == expected, f"ceiling consumer read {count} of {expected} messages"
    return count, seconds


def _progress(msg: str) -> None:
    say("e2e", msg)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iot", type=int, default=200_000, help="IoT readings to preload (default 200,000)")
    parser.add_argument("--activity", type=int, default=None, help="activity events (default IoT / 10)")
    parser.add_argument("--devices", type=int, default=10, help="simulated devices (default 10)")
    parser.add_argument(
        "--runs",
        default="1w,2w,2p",
        help="flow shapes, comma-separated: Nw = one process of N workers, Np = N processes "
        "(default 1w,2w,2p; the first is the reference for the content check)",
    )
    args = parser.parse_args()
    activity_count = args.iot // 10 if args.activity is None else args.activity
    shapes = [FlowShape.parse(s) for s in args.runs.split(",")]

    infra = load_settings(LocalInfraSettings)
    bootstrap = infra.kafka_bootstrap_servers
    redis_url = infra.redis_url.get_secret_value()
    client = redis.Redis.from_url(redis_url)
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 4})

    _progress(f"simulating {args.iot:,} IoT readings ({args.devices} devices) + {activity_count:,} activity")
    readings, events = simulated_events(args.iot, activity_count, T0_MS, devices=args.devices)
    total = len(readings) + len(events)
    topics = make_topics(admin, bootstrap, redis_url)
    prefixes: list[str] = []
    try:
        t = time.perf_counter()
        produce(bootstrap, topics.iot, readings)
        produce(bootstrap, topics.activity, events)
        _progress(f"preloaded {total:,} events in {time.perf_counter() - t:.1f} s")
        del readings, events

        _progress("ceiling: plain batch consumer + orjson decode")
        _, ceil_s = ceiling(bootstrap, [topics.iot, topics.activity], total)
        ceil_rate = total / ceil_s

        runs: list[FlowRun] = []
        reference: dict[str, object] | None = None
        for shape in shapes:
            prefix = f"{topics.prefix}{shape.short}:"
            prefixes.append(prefix)
            _progress(f"dataflow, {shape.label}, to the end of the topics")
            run = run_flow_timed(topics.env(prefix=prefix), client, prefix, shape, total)
            content = redis_content(client, prefix)
            if reference is None:
                reference = content
                assert content, "the reference run wrote nothing to Redis"
            else:
                run.matches_reference = content == reference
                if not run.matches_reference:
                    run.mismatch = describe_mismatch(
                        content, reference, AssertionError("Redis content differs from the reference run")
                    )
            runs.append(run)
            _progress(
                f"  {run.wall_rate:,.0f} events/s wall, {run.steady_rate:,.0f} events/s steady, "
                f"peak RSS {run.peak_rss_bytes / MB:,.0f} MB"
            )
    finally:
        delete_topics(admin, topics)
        for prefix in prefixes:
            keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
            if keys:
                client.delete(*keys)

    print(
        f"# bench_e2e {datetime.now(UTC):%Y-%m-%d %H:%M} UTC: {args.iot:,} IoT readings "
        f"({args.devices} devices) + {activity_count:,} activity events, 3 partitions each, "
        f"broker {bootstrap}"
    )
    print(f"ceiling (batch consume + orjson decode): {ceil_rate:12,.0f} events/s  ({ceil_s:.2f} s)")
    for run in runs:
        check = {None: "reference", True: "same Redis content", False: "REDIS CONTENT DIFFERS"}
        print(
            f"dataflow, {run.label}: {run.wall_rate:12,.0f} events/s wall ({run.wall_s:.2f} s), "
            f"{run.steady_rate:,.0f} events/s steady ({run.steady_s:.2f} s); "
            f"{run.steady_rate / ceil_rate:.0%} of ceiling steady, {run.wall_rate / ceil_rate:.0%} wall; "
            f"flow CPU {run.cpu_s:.2f} s; peak RSS {run.peak_rss_bytes / MB:,.0f} MB; "
            f"{check[run.matches_reference]}"
        )
        if run.mismatch:
            print(f"  mismatch: {run.mismatch}")
    result = {
        "iot_events": args.iot,
        "activity_events": activity_count,
        "devices": args.devices,
        "ceiling_events_per_s": ceil_rate,
        "runs": [
            {
                **asdict(run),
                "wall_events_per_s": run.wall_rate,
                "steady_events_per_s": run.steady_rate,
                "fraction_of_ceiling_wall": run.wall_rate / ceil_rate,
                "fraction_of_ceiling_steady": run.steady_rate / ceil_rate,
            }
            for run in runs
        ],
    }
    print("BENCH_JSON " + orjson.dumps(result).decode())
    return 0 if all(run.matches_reference is not False for run in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
