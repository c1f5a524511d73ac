"""Faults against real processes: the broker bounced, a producer killed, Redis flapping, the flow crashed.

Each test runs the product's own entry points as subprocesses (``python -m
bytewax.run flows.main``, ``python -m sources.produce``, ``python -m dashapp``)
and judges them by what they leave behind: the Redis content compared with an
uninterrupted run's, the Kafka topic read back, the HTTP answers. Services a
test stops or crashes are its own (a private broker or redis-server), never the
suite's shared ones.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import redis
from confluent_kafka.admin import AdminClient
from dash import Dash
from prometheus_client.parser import text_string_to_metric_families

from dashapp import ids
from dashapp.app import create_app
from dashapp.callbacks.data import Status
from dashapp.callbacks.figures import STATUS_LOOK
from dashapp.settings import DashSettings
from infra import local
from infra.settings import LocalInfraSettings
from sinks.layout import Layout, decode_stats
from sources.produce import RunPlan, Source, build_parser, event_clock, event_factory, settings_overrides
from sources.producer import kafka_key
from sources.settings import ProducerSettings
from sources.topics import TopicSpec, ensure_topics
from tests.dash_client import post_tick
from tests.dash_process import dash_process
from tests.pipeline_harness import (
    ROOT,
    PipelineTopics,
    consume_all,
    delete_topics,
    events_in,
    free_port,
    init_recovery,
    make_topics,
    private_kafka,
    produce,
    redis_content,
    run_flow,
    run_with_kills,
    simulated_events,
    start_flow,
    wait_flow,
    wait_for_events_in,
)
from tests.seed import Fleet, Seeder, device_ids, reading

pytestmark = pytest.mark.slow

START_MS = int(time.time() * 1000) - 3 * 3600 * 1000  # three hours ago: history, nothing "in the future"
OUTAGE_S = 8.0
"""How long the broker stays down: longer than the flow's allowed lateness (5 s), so an idle
watermark that kept advancing through the outage would make the resumed events late."""


def _load(topics: PipelineTopics, iot: int, activity: int, seed: int) -> int:
    readings, events = simulated_events(iot, activity, START_MS, seed=seed)
    produce(topics.bootstrap, topics.iot, readings)
    produce(topics.bootstrap, topics.activity, events)
    return iot + activity


def _alive_for(procs: list[subprocess.Popen[bytes]], seconds: float, what: str) -> None:
    """Fail if any of `procs` ends within `seconds` (polled, so a crash is seen when it happens)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for p in procs:
            if p.poll() is not None:
                out = p.stdout.read().decode(errors="replace") if p.stdout else ""
                raise AssertionError(f"{what}: a process exited ({p.returncode}):\n{out[-3000:]}")
        time.sleep(0.1)


def _diff(got: dict[str, object], want: dict[str, object]) -> str:
    """Which keys differ, and both runs' pipeline counters (late events, dead letters)."""
    keys = sorted(k for k in got.keys() | want.keys() if got.get(k) != want.get(k))
    stats = "pipeline:stats"
    return f"{len(keys)} keys differ, e.g. {keys[:5]}; stats {got.get(stats)} vs {want.get(stats)}"


def _signal(procs: list[subprocess.Popen[bytes]], sig: signal.Signals) -> None:
    for p in procs:
        os.kill(p.pid, sig)


def _reap(*procs: subprocess.Popen[bytes]) -> None:
    """Kill what still runs; print every process's output (pytest shows it when the test failed)."""
    for p in procs:
        if p.poll() is None:
            p.kill()
        out = p.communicate()[0] if p.stdout and not p.stdout.closed else b""
        print(f"--- {' '.join(map(str, p.args))[-80:]} exited {p.returncode}:")
        print(out.decode(errors="replace")[-4000:])


# --- producers -----------------------------------------------------------------------------------

PRODUCER_ARGS = ("--start", str(START_MS), "--seed", "7")
"""Simulated clock from a fixed start and a fixed seed: the events are known in advance."""


def _start_producer(env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "sources.produce", "iot", *PRODUCER_ARGS, *args],
        env={"PIPELINE_PRODUCER_METRICS_PORT": "0", **env, "PIPELINE_PRODUCER_PROGRESS_INTERVAL_S": "1"},
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def _producer_report(out: bytes) -> dict[str, Any]:
    """The producer's final ``finished`` log line."""
    for line in reversed(out.decode(errors="replace").splitlines()):
        if line.startswith("{") and json.loads(line).get("event") == "finished":
            return dict(json.loads(line))
    raise AssertionError(f"no final report in the producer's output:\n{out.decode(errors='replace')[-3000:]}")


def _sent_by_key(n: int, *args: str) -> dict[bytes, list[bytes]]:
    """The first `n` events ``python -m sources.produce iot`` sends with these flags, by key, in order."""
    flags = build_parser().parse_args(["iot", *PRODUCER_ARGS, *args])
    settings = ProducerSettings(**settings_overrides(flags))
    plan = RunPlan.resolve(Source.IOT, settings)
    clock = event_clock(plan)
    make = event_factory(Source.IOT, settings, plan.seed)
    by_key: dict[bytes, list[bytes]] = defaultdict(list)
    for _ in range(n):
        event = make(clock())
        by_key[kafka_key(event).encode()].append(event.to_json())
    return by_key


IN_FLIGHT_MAX = 100_000
"""librdkafka's default queue.buffering.max.messages: at most this many sent events are unconfirmed."""


def _assert_topic_holds_what_was_sent(
    bootstrap: str, topic: str, produced: int | None, confirmed: dict[int, int], *args: str
) -> int:
    """The topic holds the producer's events: in order per key, each once, and every confirmed one.

    With `produced` the topic holds exactly that many events; with None (a killed
    producer) a prefix per key of what was sent. Either way, every partition holds
    at least its `confirmed` (delivered) count. Returns how many events the topic holds.
    """
    messages = consume_all(bootstrap, topic)
    sent = _sent_by_key(produced if produced is not None else len(messages) + IN_FLIGHT_MAX, *args)
    in_kafka: dict[bytes, list[bytes]] = defaultdict(list)
    per_partition: Counter[int] = Counter()
    for m in messages:
        assert m.key is not None and m.value is not None
        in_kafka[m.key].append(m.value)
        per_partition[m.partition] += 1
    for key, values in in_kafka.items():
        # A prefix of what was sent to the key: nothing reordered, duplicated or invented.
        assert values == sent[key][: len(values)], f"{key!r}: not what the producer sent, in order, once"
    if produced is not None:
        assert len(messages) == produced, f"{produced} produced, {len(messages)} in {topic}"
    for partition, n in confirmed.items():
        assert per_partition[partition] >= n, (
            f"partition {partition}: {n} confirmed, only {per_partition[partition]} in Kafka"
        )
    return len(messages)


def _scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_a_producer_killed_mid_run_left_every_confirmed_event_in_kafka_once(
    kafka_bootstrap, tmp_topic, redis_url
):
    topic = tmp_topic(3, prefix="killed-producer")
    port = free_port()
    producer = _start_producer(
        {
            **{k: v for k, v in os.environ.items() if not k.startswith("PIPELINE_")},
            "PIPELINE_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
            "PIPELINE_IOT_TOPIC": topic,
            "PIPELINE_PRODUCER_METRICS_PORT": str(port),
            "PIPELINE_LOG_FORMAT": "json",
        },
        "--count",
        "2000000",
        "--rate",
        "0",
    )
    try:
        confirmed: dict[int, int] = {}
        deadline = time.monotonic() + 120
        while sum(confirmed.values()) < 30_000:
            assert producer.poll() is None, "the producer ended before it could be killed"
            assert time.monotonic() < deadline, f"only {sum(confirmed.values())} confirmed in 120 s"
            try:
                samples = _scrape(port)
            except httpx.HTTPError:  # not serving yet
                time.sleep(0.1)
                continue
            confirmed = {
                int(dict(labels)["partition"]): int(value)
                for (name, labels), value in samples.items()
                if name == "pipeline_producer_partition_events_delivered_total"
            }
            produced = int(samples[("pipeline_producer_events_produced_total", (("source", "iot"),))])
        # Right after a scrape: everything confirmed by then has to be in Kafka.
        os.kill(producer.pid, signal.SIGKILL)
        producer.communicate(timeout=30)
        assert produced < 2_000_000, "the producer had finished: killed too late to prove anything"
        held = _assert_topic_holds_what_was_sent(
            kafka_bootstrap, topic, None, confirmed, "--count", "2000000", "--rate", "0"
        )
        assert held >= sum(confirmed.values())
        print(f"killed at {produced} produced, {sum(confirmed.values())} confirmed; {held} in Kafka")
    finally:
        _reap(producer)


# --- the dashboard with Redis flapping -----------------------------------------------------------

API_PATHS = ("/api/v1/devices/latest", "/api/v1/alerts", "/api/v1/activity", "/api/v1/stats")


def _poll_until(check: Callable[[], bool], what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"not {what} after {timeout_s}s"
        time.sleep(0.1)


def _ready_is(http: httpx.Client, code: int) -> Callable[[], bool]:
    return lambda: http.get("/ready").status_code == code


def _assert_shows(http: httpx.Client, dash: Dash, fleet: Fleet, seq: int) -> None:
    """The API and the dashboard's tick answer with exactly what `fleet` last wrote."""
    latest = http.get("/api/v1/devices/latest")
    assert latest.status_code == 200, latest.text
    assert {(r["device_id"], r["event_time"]) for r in latest.json()} == {
        (d, reading(d, fleet.index).event_time) for d in fleet.devices
    }
    stats = http.get("/api/v1/stats")
    assert stats.status_code == 200 and stats.json()["events_in"] == fleet.events_in, stats.text
    # The page's tick reads through a cache (TTL 0.2 s): poll until it has seen this data.
    live = STATUS_LOOK[Status.LIVE][0]

    def tick_is_live() -> bool:
        tick = post_tick(http, dash, seq, None, None)
        assert tick.status == 200, f"tick answered {tick.status}"
        return bool(tick.get(ids.STATUS, "children") == live and tick.get(ids.DEVICE, "options"))

    _poll_until(tick_is_live, "live on the dashboard")


def test_the_dashboard_degrades_while_redis_flaps_and_comes_back_live(tmp_path, key_prefix):
    own = LocalInfraSettings(redis_url=f"redis://127.0.0.1:{free_port()}/0", state_dir=tmp_path / "redis")
    url = own.redis_url.get_secret_value()
    local.start(own, "redis")
    try:
        fleet = Fleet(Seeder(redis.Redis.from_url(url), key_prefix), device_ids(3))
        fleet.advance(4)
        settings = {
            "PIPELINE_DASH_CACHE_TTL_S": "0.2",
            "PIPELINE_DASH_REDIS_TIMEOUT_S": "0.5",
            "PIPELINE_DASH_STALE_AFTER_S": "1e9",  # seeded history is old; freshness is not the point
            "PIPELINE_LOG_FORMAT": "json",
        }
        # Only for the callback's request body (the map of outputs); the server is the subprocess.
        dash = create_app(DashSettings(redis_url=url, redis_prefix=key_prefix)).state.dash
        unavailable = STATUS_LOOK[Status.UNAVAILABLE][0]
        with (
            dash_process(url, key_prefix, tmp_path / "dashapp.log", **settings) as server,
            httpx.Client(base_url=server.url, timeout=10) as http,
        ):
            seq = 1
            _assert_shows(http, dash, fleet, seq)
            for round_, sig in enumerate((signal.SIGTERM, signal.SIGKILL, signal.SIGTERM)):
                local.stop(own, "redis", sig=sig)
                _poll_until(_ready_is(http, 503), f"unready with Redis stopped ({sig.name})")
                assert http.get("/health").status_code == 200, "liveness must not depend on Redis"
                for path in API_PATHS:
                    down = http.get(path)
                    assert down.status_code == 503, f"{path}: {down.status_code} {down.text}"
                    assert down.json()["detail"].startswith("Redis unavailable"), down.text
                # Within the cache's TTL a tick may still show the last board read; after it, the
                # degraded one. Every tick meanwhile must answer 200.
                deadline = time.monotonic() + 10
                while True:
                    seq += 1
                    tick = post_tick(http, dash, seq, None, None)
                    assert tick.status == 200, "the tick must answer with the degraded board, not an error"
                    if tick.get(ids.STATUS, "children") == unavailable:
                        break
                    assert time.monotonic() < deadline, "the tick never showed Redis as unreachable"
                    time.sleep(0.1)
                assert http.get("/").status_code == 200, "the page itself must still load"
                assert http.get("/_dash-layout").status_code == 200

                # Back, empty (no persistence): the pipeline writes again, a different fleet each time.
                local.start(own, "redis")
                fleet = Fleet(Seeder(redis.Redis.from_url(url), key_prefix), device_ids(4 + round_))
                fleet.advance(2 + round_)
                _poll_until(_ready_is(http, 200), "ready again")
                seq += 1
                _assert_shows(http, dash, fleet, seq)
            assert server.process.poll() is None, "the dashboard exited"
            log = server.log_text()
        assert "Traceback" not in log, log[-4000:]
        problems = [
            line
            for line in log.splitlines()
            if not line.startswith("{") or json.loads(line).get("level") in {"error", "critical", "exception"}
        ]
        assert not problems, "\n".join(problems[:20])
    finally:
        local.stop(own, "redis")


# --- the Kafka broker stopped and restarted mid-run ----------------------------------------------


@pytest.mark.timeout(900)  # two broker restarts: slow when the machine is busy
def test_the_flow_waits_out_broker_outages_and_ends_like_an_uninterrupted_run(redis_url, tmp_path):
    client = redis.Redis.from_url(redis_url)
    differences: dict[str, tuple[int, str]] = {}
    with private_kafka(tmp_path / "kafka") as broker:
        bootstrap = broker.kafka_bootstrap_servers
        admin = AdminClient({"bootstrap.servers": bootstrap})
        topics = make_topics(admin, bootstrap, redis_url)
        total = _load(topics, 60_000, 5_000, seed=21)
        run_flow(topics.env(topics.prefix + "clean:"))
        clean = redis_content(client, topics.prefix + "clean:")

        # A live producer too, on a topic of its own: it has to ride out every outage.
        live_topic = f"live-{topics.iot}"
        ensure_topics(admin, [TopicSpec(live_topic, 3)])
        producer = _start_producer(topics.env(PIPELINE_IOT_TOPIC=live_topic), "--rate", "100")
        procs: list[subprocess.Popen[bytes]] = []
        try:
            # A graceful stop (controlled shutdown), then a crash: one flow run through each.
            for sig in (signal.SIGTERM, signal.SIGKILL):
                prefix = f"{topics.prefix}{sig.name}:"
                # A small prefetch queue: the flow really runs dry during the outage.
                env = topics.env(
                    prefix, PIPELINE_KAFKA_BATCH_SIZE="200", PIPELINE_KAFKA_CONSUMER_QUEUE_KBYTES="64"
                )
                procs = start_flow(env)
                wait_for_events_in(client, prefix, 3_000, procs)
                # Frozen while the broker goes down (a controlled shutdown takes seconds, in which
                # the flow would read everything): the outage hits it mid-run, whatever the speeds.
                _signal(procs, signal.SIGSTOP)
                local.stop(broker, "kafka", sig=sig)
                _signal(procs, signal.SIGCONT)
                _alive_for([*procs, producer], OUTAGE_S, f"broker down ({sig.name})")
                stalled = events_in(client, prefix)
                assert stalled < total, "the flow read everything before the outage: it proves nothing"
                started = time.monotonic()
                local.start(broker, "kafka")
                print(
                    f"{sig.name} outage: stalled at {stalled}, restart took {time.monotonic() - started:.0f}s"
                )
                wait_flow(procs)
                stats = decode_stats(client.hgetall(Layout(prefix).stats())).counters
                assert (stats.events_in, stats.dead_letters) == (total, 0), f"{sig.name}: {stats}"
                after = redis_content(client, prefix)
                if after != clean:
                    differences[sig.name] = (stats.late_events, _diff(after, clean))

            producer.send_signal(signal.SIGTERM)
            out, _ = producer.communicate(timeout=120)
            assert producer.returncode == 0, out.decode(errors="replace")[-3000:]
            report = _producer_report(out)
            assert report["delivered"] == report["produced"] > 0
            _assert_topic_holds_what_was_sent(bootstrap, live_topic, report["produced"], {}, "--rate", "100")
        finally:
            _reap(*procs, producer)
    # Regression: idle time used to advance watermarks while a partition still had unread data,
    # so events read after an outage longer than the allowed lateness were counted late. Idle
    # time now counts only while the partition is read to its end (flows.watermark).
    assert not differences, differences


# --- the dataflow killed at random points --------------------------------------------------------


@pytest.mark.timeout(900)
def test_a_flow_killed_at_five_random_points_ends_like_an_uninterrupted_run(
    kafka_bootstrap, kafka_admin, redis_url, tmp_path
):
    topics = make_topics(kafka_admin, kafka_bootstrap, redis_url)
    try:
        total = _load(topics, 80_000, 5_000, seed=13)
        client = redis.Redis.from_url(redis_url)
        run_flow(topics.env(topics.prefix + "clean:"))
        clean = redis_content(client, topics.prefix + "clean:")

        rng = random.Random(20261126)
        # Five kill points spread over the run, each in its own fifth, so every restart progresses.
        kill_at = [int(total * rng.uniform(0.9 * i / 5 + 0.02, 0.9 * (i + 1) / 5)) for i in range(5)]
        prefix = topics.prefix + "killed:"
        recovery = tmp_path / "recovery"
        init_recovery(recovery)
        seen = run_with_kills(
            topics.env(prefix, PIPELINE_KAFKA_BATCH_SIZE="200"), recovery, client, prefix, kill_at, rng
        )
        print(f"kill points {kill_at}: killed at events_in {seen} of {total}")
        assert len(seen) == 5 and all(n < total for n in seen), f"killed too late to prove anything: {seen}"
        assert redis_content(client, prefix) == clean
        assert events_in(client, prefix) == total
    finally:
        delete_topics(kafka_admin, topics)
