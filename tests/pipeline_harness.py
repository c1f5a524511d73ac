"""Runs the real dataflow process against the real Kafka and Redis, and compares Redis content.

Test support, not product code: produce simulator events (with bad messages mixed
in) into fresh topics, run ``python -m bytewax.run flows.main`` as separate
processes (workers, processes, recovery, kills), and dump everything under a key
prefix into plain Python structures, so two runs compare with ``==``.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import redis
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from prometheus_client.parser import text_string_to_metric_families

from infra import local
from infra.settings import LocalInfraSettings
from sinks.layout import Layout, decode_stats
from sources.activity import ActivityConfig, ActivitySimulator
from sources.clock import simulated_times
from sources.iot import IotConfig, IotSimulator
from tests.kafka_batches import RawMessage

ROOT = Path(__file__).resolve().parent.parent

# Fields of the stats hash that record *when* the sink wrote, not *what*.
VOLATILE_STATS_FIELDS = {b"last_write_ms", b"circuit_state"}


@dataclass
class PipelineTopics:
    """Fresh topics for one test, and the environment that points the flow at them."""

    iot: str
    activity: str
    dlq: str
    prefix: str
    bootstrap: str
    redis_url: str
    extra_env: dict[str, str] = field(default_factory=dict)

    def env(self, prefix: str | None = None, **overrides: str) -> dict[str, str]:
        """The flow's environment: these topics, a key prefix, stop at the end, no metrics port."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINE_")}
        env.update(
            {
                "PIPELINE_KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
                "PIPELINE_IOT_TOPIC": self.iot,
                "PIPELINE_ACTIVITY_TOPIC": self.activity,
                "PIPELINE_DLQ_TOPIC": self.dlq,
                "PIPELINE_REDIS_URL": self.redis_url,
                "PIPELINE_REDIS_PREFIX": prefix or self.prefix,
                "PIPELINE_KAFKA_STOP_AT_END": "true",
                "PIPELINE_FLOW_METRICS_PORT": "0",
                "PIPELINE_LOG_FORMAT": "json",
                **self.extra_env,
                **overrides,
            }
        )
        return env


def make_topics(admin: AdminClient, bootstrap: str, redis_url: str) -> PipelineTopics:
    """Create the three topics with the pipeline's partition counts (3, 3, 1)."""
    from sources.topics import TopicSpec, ensure_topics

    tag = uuid.uuid4().hex[:10]
    topics = PipelineTopics(
        f"iot-{tag}", f"activity-{tag}", f"dlq-{tag}", f"e2e-{tag}:", bootstrap, redis_url
    )
    ensure_topics(admin, [TopicSpec(topics.iot, 3), TopicSpec(topics.activity, 3), TopicSpec(topics.dlq, 1)])
    return topics


def delete_topics(admin: AdminClient, topics: PipelineTopics) -> None:
    """Remove the test's topics."""
    for fut in admin.delete_topics([topics.iot, topics.activity, topics.dlq], operation_timeout=30).values():
        fut.result(timeout=30)


def simulated_events(
    iot_count: int, activity_count: int, start_ms: int, seed: int = 11, devices: int = 10
) -> tuple[list[tuple[bytes, bytes]], list[tuple[bytes, bytes]]]:
    """(key, value) pairs of IoT readings (2 Hz per device) and activity events (50/s)."""
    iot = IotSimulator(IotConfig(devices=devices), seed=seed)
    readings = [
        (r.key.encode(), r.reading.to_json())
        for r in iot.run(simulated_times(start_ms, 2.0 * devices, iot_count))
    ]
    activity = ActivitySimulator(ActivityConfig(), seed=seed)
    events = [
        (e.user_id.encode(), e.to_json())
        for e in activity.run(simulated_times(start_ms, 50.0, activity_count))
    ]
    return readings, events


def produce(bootstrap: str, topic: str, pairs: Iterable[tuple[bytes | None, bytes | None]]) -> int:
    """Produce every pair (idempotent, acks=all); return how many were acknowledged."""
    delivered = 0

    def on_delivery(err: KafkaError | None, _msg: object) -> None:
        nonlocal delivered
        assert err is None, err
        delivered += 1

    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "linger.ms": 20,
            "compression.type": "lz4",
            "partitioner": "murmur2_random",
        }
    )
    for key, value in pairs:
        while True:
            try:
                producer.produce(topic, value=value, key=key, on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    assert producer.flush(60) == 0
    return delivered


def consume_all(bootstrap: str, topic: str, timeout_s: float = 30.0) -> list[RawMessage]:
    """Every message of `topic`, per partition in offset order (`as_batches` makes input items of them)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "unused",
            "enable.partition.eof": True,
            "enable.auto.commit": False,
        }
    )
    try:
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, 0) for p in parts])
        out: list[RawMessage] = []
        at_end: set[int] = set()
        deadline = time.monotonic() + timeout_s
        while len(at_end) < len(parts) and time.monotonic() < deadline:
            for msg in consumer.consume(1000, 0.5):
                err = msg.error()
                if err is not None:
                    assert err.code() == KafkaError._PARTITION_EOF, err
                    at_end.add(msg.partition())
                    continue
                out.append(RawMessage(topic, msg.partition(), msg.offset(), msg.key(), msg.value()))
        assert len(at_end) == len(parts), f"did not reach the end of {topic} in {timeout_s}s"
        return out
    finally:
        consumer.close()


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def init_recovery(directory: Path, partitions: int = 2) -> None:
    """Create Bytewax's recovery partitions (``python -m bytewax.recovery``)."""
    directory.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "bytewax.recovery", str(directory), str(partitions)], check=True)


def committed_epoch(directory: Path) -> int:
    """The epoch a flow restarted on `directory` would resume from: the oldest commit of its partitions.

    Bytewax commits an epoch in every recovery partition once all of that epoch's
    snapshots (input offsets and every stateful step) are stored; -1 before the first.
    """
    epochs = []
    for part in sorted(directory.glob("*.sqlite3")):
        # Read-only and short-lived: the running flow keeps writing these files.
        with contextlib.closing(sqlite3.connect(f"file:{part}?mode=ro", uri=True, timeout=10)) as db:
            row = db.execute("SELECT MAX(commit_epoch) FROM commits").fetchone()
        epochs.append(-1 if row is None or row[0] is None else int(row[0]))
    return min(epochs, default=-1)


def metric_total(port: int, name: str) -> float | None:
    """Sum over all label sets of the sample `name` served on ``127.0.0.1:port``; None while unreachable."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return None
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    )


def flow_argv(workers: int = 1, recovery: Path | None = None) -> list[str]:
    """The dataflow's command line."""
    argv = [sys.executable, "-m", "bytewax.run", "flows.main", "-w", str(workers)]
    if recovery is not None:
        argv += ["-r", str(recovery), "-s", "1", "-b", "0"]
    return argv


def start_flow(
    env: dict[str, str], workers: int = 1, processes: int = 1, recovery: Path | None = None
) -> list[subprocess.Popen[bytes]]:
    """Start the dataflow as `processes` cooperating processes of `workers` workers each."""
    argv = flow_argv(workers, recovery)
    if processes == 1:
        return [subprocess.Popen(argv, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)]
    addresses = ";".join(f"127.0.0.1:{free_port()}" for _ in range(processes))
    return [
        subprocess.Popen(
            [*argv, "-i", str(i), "-a", addresses],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for i in range(processes)
    ]


def wait_flow(procs: Sequence[subprocess.Popen[bytes]], timeout_s: float = 180.0) -> None:
    """Wait for every process to end; fail with its output if one failed or hung."""
    deadline = time.monotonic() + timeout_s
    for proc in procs:
        try:
            out, _ = proc.communicate(timeout=max(deadline - time.monotonic(), 1))
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
            out, _ = proc.communicate()
            raise AssertionError(
                f"dataflow hung for {timeout_s}s:\n{out.decode(errors='replace')[-3000:]}"
            ) from None
        assert proc.returncode == 0, (
            f"dataflow exited {proc.returncode}:\n{out.decode(errors='replace')[-3000:]}"
        )


def run_flow(env: dict[str, str], workers: int = 1, processes: int = 1, recovery: Path | None = None) -> None:
    """Run the dataflow to the end of its topics."""
    wait_flow(start_flow(env, workers, processes, recovery))


def kill_after(procs: Sequence[subprocess.Popen[bytes]], seconds: float) -> bool:
    """SIGKILL every process after `seconds`; False if they had all ended by then."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if all(p.poll() is not None for p in procs):
            return False
        time.sleep(0.05)
    for p in procs:
        if p.poll() is None:
            os.kill(p.pid, signal.SIGKILL)
        p.communicate()
    return True


def redis_content(client: redis.Redis, prefix: str) -> dict[str, object]:
    """Everything under `prefix`: hashes as dicts, sorted sets as (member, score) lists."""
    content: dict[str, object] = {}
    for key in sorted(client.scan_iter(match=f"{prefix}*", count=1000)):
        name = key.decode()[len(prefix) :]
        kind = client.type(key)
        if kind == b"hash":
            fields = client.hgetall(key)
            if name == "pipeline:stats":
                fields = {k: v for k, v in fields.items() if k not in VOLATILE_STATS_FIELDS}
            content[name] = fields
        elif kind == b"zset":
            content[name] = client.zrange(key, 0, -1, withscores=True)
        else:
            content[name] = client.dump(key)
    return content


def events_in(client: redis.Redis, prefix: str) -> int:
    """The flow's ``events_in`` counter in Redis under `prefix` (0 before its first write)."""
    return decode_stats(client.hgetall(Layout(prefix).stats())).counters.events_in


def wait_for_events_in(
    client: redis.Redis,
    prefix: str,
    at_least: int,
    procs: Sequence[subprocess.Popen[bytes]],
    timeout_s: float = 60.0,
) -> int:
    """Poll until the flow has written ``events_in >= at_least``; fail if it ended or stalled first."""
    deadline = time.monotonic() + timeout_s
    while (seen := events_in(client, prefix)) < at_least:
        assert all(p.poll() is None for p in procs), (
            f"the flow ended at events_in={seen}, before {at_least}: give it more data"
        )
        assert time.monotonic() < deadline, f"events_in stuck at {seen} < {at_least} for {timeout_s}s"
        time.sleep(0.02)
    return seen


def run_with_kills(
    env: dict[str, str],
    recovery: Path,
    client: redis.Redis,
    prefix: str,
    kill_at: Sequence[int],
    rng: random.Random | None = None,
    max_delay_s: float = 0.3,
) -> list[int]:
    """Run the flow with recovery, SIGKILL it once `events_in` passes each of `kill_at`, then to the end.

    After each kill the flow is started again from `recovery`. Each kill comes a
    random delay (up to `max_delay_s`, from `rng`; a fixed 0.3 s without one) after
    the threshold was seen, so it lands anywhere in a batch, a snapshot or a write.

    Returns:
        ``events_in`` as seen in Redis just before each kill.
    """
    seen: list[int] = []
    for threshold in kill_at:
        procs = start_flow(env, recovery=recovery)
        wait_for_events_in(client, prefix, threshold, procs)
        delay = rng.uniform(0.0, max_delay_s) if rng is not None else max_delay_s
        assert kill_after(procs, delay), "the flow ended before it could be killed: give it more data"
        seen.append(events_in(client, prefix))
    wait_flow(start_flow(env, recovery=recovery))
    return seen


@contextlib.contextmanager
def private_kafka(state_dir: Path, heap: str = "384m") -> Iterator[LocalInfraSettings]:
    """A broker of the test's own (free ports, own state under `state_dir`), stopped afterwards.

    For tests that stop or crash the broker: the suite's broker is shared by every
    test of the session. Restart it with ``local.start(settings, "kafka")``: the
    state directory (and so every topic) is kept.
    """
    settings = LocalInfraSettings(
        kafka_bootstrap_servers=f"127.0.0.1:{free_port()}",
        kafka_controller_port=free_port(),
        state_dir=state_dir,
        kafka_heap=heap,
    )
    local.start(settings, "kafka")
    try:
        yield settings
    except BaseException:
        print(f"--- private broker's log:\n{local.kafka_service(settings).tail(60)}")  # shown on failure
        raise
    finally:
        local.stop(settings, "kafka", sig=signal.SIGKILL)
