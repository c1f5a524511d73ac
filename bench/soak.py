"""Soak: the whole stack at a steady rate for a long time, with faults injected, then an honest count.

``make soak DURATION=30m`` (or ``python -m bench.soak --duration 30m``) runs Kafka and
Redis (`infra.local`, started unless they answer), both producers at a steady rate, the
dataflow with recovery, and the dashboard, each as its ``python -m infra.stack exec NAME``
line (the commands `make up` runs). Meanwhile, on a seeded schedule, it injects:

* ``flow_kill``: SIGKILL the dataflow, restart it a few seconds later (it resumes from
  its recovery snapshots);
* ``redis_restart``: Redis stopped (``SHUTDOWN SAVE``: it keeps what it acknowledged)
  and started again after a few seconds;
* ``redis_pause``: Redis frozen with SIGSTOP for several seconds (a hung server), then
  SIGCONT;
* ``producer_kill``: SIGKILL one producer, restart it;

and, every ``--bad-every`` seconds, a few bad messages of the hostile corpus
(`tests.hostile`) into the input topics, so the dead-letter path is exercised too.

At the end it stops the producers, lets the flow drain, and reports, from independent
sources:

* **produced**: messages in the input topics (the broker's offsets), and the part the
  producers confirmed by delivery reports (their final report, or their last scraped
  metrics for an incarnation killed with SIGKILL, which is then a lower bound);
* **processed** and **dead-lettered**: the flow's counters in Redis (and its metrics),
  and the dead-letter topic's messages, checked against the bad messages injected;
* **lost** = in Kafka - processed - dead-lettered: must be 0;
* memory over time: RSS of the flow and the dashboard (from /proc), Redis
  ``used_memory``, sampled every ``--sample-every`` seconds;
* window completeness: every (device, 10 s window) that has readings in Kafka and has
  closed (the device's newest reading is past its end plus the allowed lateness) is in
  Redis for every metric, with exactly that many readings; the same for activity windows;
* alerts in Redis by severity (no ground truth here: producer restarts re-seed the
  simulator; ``bench/bench_detection.py`` measures detection quality).

Results: ``bench/results/soak-latest.{json,md}`` (``--name`` changes the stem). Exit
status 1 when anything was lost, a dead letter is missing, a closed window is missing
or miscounted in Redis, or a process died without being killed.
"""

from __future__ import annotations

import argparse
import contextlib
import heapq
import json
import os
import platform
import random
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import redis
import structlog
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from pydantic import ValidationError

from config.logging import configure_logging
from config.settings import load_settings
from flows.settings import FlowSettings, window_name
from infra import local
from infra.settings import StackSettings
from infra.stack import child_env, init_recovery
from infra.wait import probe_for
from sinks.layout import Layout, decode_activity, decode_alert, decode_stats, decode_window_stats
from sources.models import ActivityEvent, DeadLetter, Metric, SensorReading
from sources.topics import ensure_topics, topic_specs

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
PROCESS_NAMES = ("producer-iot", "producer-activity", "flow", "dashboard")
FAULT_KINDS = ("flow_kill", "redis_restart", "redis_pause", "producer_kill")

log = structlog.get_logger()


# --- the schedule (pure) -------------------------------------------------------


@dataclass(frozen=True, order=True)
class Fault:
    """One fault: when (seconds after the start), what, and for how long it lasts."""

    at_s: float
    kind: str
    down_s: float
    target: str = ""
    """Which producer, for ``producer_kill``."""


def fault_schedule(
    seed: int, duration_s: float, every_s: float, kinds_used: tuple[str, ...] = FAULT_KINDS
) -> list[Fault]:
    """Faults about every `every_s` seconds, kinds in seeded rounds that each hold every kind once.

    They start after a warm-up and end before a cool-down (15 % of the run, at most 60 s
    each), so the first and last minutes see the steady state.
    """
    rng = random.Random(seed)
    margin = min(60.0, 0.15 * duration_s)
    start, end = margin, duration_s - margin
    faults: list[Fault] = []
    kinds: list[str] = []
    t = start + rng.uniform(0, every_s / 2)
    while t < end:
        if not kinds:
            kinds = list(kinds_used)
            rng.shuffle(kinds)
        kind = kinds.pop()
        down = {
            "flow_kill": rng.uniform(1, 5),
            "redis_restart": rng.uniform(2, 8),
            "redis_pause": rng.uniform(3, 12),
            "producer_kill": rng.uniform(1, 3),
        }[kind]
        target = rng.choice(["producer-iot", "producer-activity"]) if kind == "producer_kill" else ""
        faults.append(Fault(round(t, 2), kind, round(down, 2), target))
        t += every_s * rng.uniform(0.6, 1.4)
    return faults


def parse_duration(text: str) -> float:
    """Seconds of ``90``, ``45s``, ``10m``, ``1h`` or ``1h30m``."""
    match = re.fullmatch(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s?)?", text.strip())
    if not match or not text.strip() or not any(match.groups()):
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 30m, 45s, 1h)")
    h, m, s = (float(g) if g else 0.0 for g in match.groups())
    return h * 3600 + m * 60 + s


# --- processes -----------------------------------------------------------------


def rss_mb(pid: int | None) -> float | None:
    """Resident memory of a process, MiB (read from /proc: no psutil dependency for one number)."""
    if pid is None:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


@dataclass
class Managed:
    """One stack process and its incarnations."""

    name: str
    proc: subprocess.Popen[bytes] | None = None
    incarnations: int = 0
    killed: bool = False
    """The current incarnation was killed on purpose (its exit is not a failure)."""
    logs: list[Path] = field(default_factory=list)
    unexpected_exits: list[str] = field(default_factory=list)


class Stack:
    """Starts, kills and restarts the stack's processes (each its ``infra.stack exec`` line)."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        """Run processes with `env`, their output in `log_dir`."""
        self.env = env
        self.log_dir = log_dir
        self.procs = {name: Managed(name) for name in PROCESS_NAMES}

    def start(self, name: str) -> None:
        """Start (or restart) `name`."""
        m = self.procs[name]
        m.incarnations += 1
        path = self.log_dir / f"{name}.{m.incarnations}.log"
        m.logs.append(path)
        with path.open("ab") as out:
            m.proc = subprocess.Popen(
                [sys.executable, "-m", "infra.stack", "exec", name],
                env=self.env,
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own group: a kill reaches it and its children only
            )
        m.killed = False

    def pid(self, name: str) -> int | None:
        """Pid of `name` while it runs."""
        proc = self.procs[name].proc
        return proc.pid if proc is not None and proc.poll() is None else None

    def kill(self, name: str) -> None:
        """SIGKILL `name` (a crash, as far as it can tell)."""
        m = self.procs[name]
        if m.proc is not None and m.proc.poll() is None:
            m.killed = True
            os.killpg(m.proc.pid, signal.SIGKILL)
            m.proc.wait()

    def stop(self, name: str, timeout_s: float = 90.0) -> int | None:
        """SIGTERM `name` and wait for it (SIGKILL after `timeout_s`); its exit status."""
        m = self.procs[name]
        if m.proc is None or m.proc.poll() is not None:
            return None if m.proc is None else m.proc.returncode
        m.killed = True
        os.killpg(m.proc.pid, signal.SIGTERM)
        try:
            return m.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            log.warning("did not stop in time, killing", process=name, timeout_s=timeout_s)
            os.killpg(m.proc.pid, signal.SIGKILL)
            return m.proc.wait()

    def check(self) -> None:
        """Record and restart a process that ended without being killed (a failure of the run)."""
        for name, m in self.procs.items():
            if m.proc is not None and m.proc.poll() is not None and not m.killed:
                tail = m.logs[-1].read_text(errors="replace").splitlines()[-20:]
                m.unexpected_exits.append(f"exit {m.proc.returncode}: " + " | ".join(tail))
                log.error("process died", process=name, returncode=m.proc.returncode)
                self.start(name)

    def stop_all(self) -> None:
        """Stop every process still running."""
        for name in PROCESS_NAMES:
            self.stop(name)


def log_events(path: Path, event: str) -> Iterator[dict[str, Any]]:
    """The JSON log lines of `path` whose event is `event`."""
    with contextlib.suppress(OSError):
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    record = json.loads(line)
                    if record.get("event") == event:
                        yield record


def scrape(url: str) -> dict[str, float]:
    """Prometheus text of `url` as {series: value}; empty when it does not answer."""
    try:
        with urllib.request.urlopen(url, timeout=3) as resp:  # noqa: S310 - our own loopback URL
            text = resp.read().decode()
    except (OSError, urllib.error.URLError):
        return {}
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            with contextlib.suppress(ValueError):
                out[name] = float(value)
    return out


def http_status(url: str) -> int | None:
    """Status code of GET `url`; None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=3) as resp:  # noqa: S310 - our own loopback URL
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return None


# --- Kafka counts -----------------------------------------------------------------


def topic_count(consumer: Consumer, topic: str) -> int:
    """Messages in `topic`: the sum over partitions of high minus low watermark."""
    parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    total = 0
    for p in parts:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
        total += high - low
    return total


def read_topic(bootstrap: str, topic: str) -> Iterator[tuple[int, int, bytes | None, bytes | None]]:
    """(partition, offset, key, value) of every message of `topic`, to its current end."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "soak-reader",
            "enable.partition.eof": True,
            "enable.auto.commit": False,
        }
    )
    try:
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, 0) for p in parts])
        at_end: set[int] = set()
        while len(at_end) < len(parts):
            for msg in consumer.consume(5000, 1.0):
                err = msg.error()
                if err is not None:
                    if err.code() != KafkaError._PARTITION_EOF:
                        raise RuntimeError(f"reading {topic}: {err}")
                    at_end.add(cast(int, msg.partition()))
                    continue
                yield cast(int, msg.partition()), cast(int, msg.offset()), msg.key(), msg.value()
    finally:
        consumer.close()


# --- bad messages ----------------------------------------------------------------


class BadTrickle:
    """Produces a few bad messages of the hostile corpus now and then; remembers where they landed."""

    def __init__(self, bootstrap: str, topics: dict[str, str], seed: int) -> None:
        """Send to `topics` ({"iot": name, "activity": name})."""
        from tests.hostile import BAD_CASES

        # Small ones: the soak is about the steady state, the hostile-input test covers the huge ones.
        self.cases = [c for c in BAD_CASES if len(c.value or b"") < 20_000]
        self.topics = topics
        self.rng = random.Random(seed)
        self.producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
        self.delivered: dict[tuple[str, int, int], str] = {}
        self.failed = 0

    def _reporter(self, name: str) -> Callable[[KafkaError | None, Any], None]:
        def on_delivery(err: KafkaError | None, msg: Any) -> None:
            if err is None:
                self.delivered[(msg.topic(), msg.partition(), msg.offset())] = name
            else:
                self.failed += 1

        return on_delivery

    def send(self, count: int) -> None:
        """Produce `count` random bad cases (delivery reported later)."""
        for case in self.rng.sample(self.cases, count):
            self.producer.produce(
                self.topics[case.topic.value],
                value=case.value,
                key=case.key,
                on_delivery=self._reporter(case.name),
            )
        self.producer.poll(0)

    def flush(self) -> None:
        """Wait for every delivery report."""
        self.producer.flush(60)


# --- the run ------------------------------------------------------------------


@dataclass
class Options:
    """What the soak runs (command-line options)."""

    duration_s: float
    iot_rate: float
    activity_rate: float
    devices: int
    seed: int
    fault_every_s: float
    faults: tuple[str, ...]
    sample_every_s: float
    bad_every_s: float
    drain_timeout_s: float
    out_dir: Path
    name: str


class Soak:
    """One soak run: prepare, run with faults, drain, count."""

    def __init__(self, opts: Options, base: StackSettings) -> None:
        """Fresh topics, key prefix and recovery folder for this run (tagged by its start time)."""
        self.opts = opts
        self.tag = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
        run_dir = base.state_dir.resolve() / f"soak-{self.tag}"
        self.s = base.model_copy(
            update={
                "iot_topic": f"soak-{self.tag}.iot",
                "activity_topic": f"soak-{self.tag}.activity",
                "dlq_topic": f"soak-{self.tag}.dlq",
                "redis_prefix": f"soak-{self.tag}:",
                "recovery_dir": run_dir / "recovery",
                "snapshot_interval_s": 5,
            }
        )
        self.run_dir = run_dir
        self.layout = Layout(self.s.redis_prefix)
        self.redis_url = self.s.redis_url.get_secret_value()
        self.started_services: list[str] = []
        self.samples: list[dict[str, Any]] = []
        self.faults_done: list[dict[str, Any]] = []
        self.last_delivered: dict[tuple[str, int], float] = {}

    # --- set-up ---

    def env(self) -> dict[str, str]:
        """The stack processes' environment: this run's topics, prefix, rates and ports."""
        s = self.s
        env = child_env(s)
        env.update(
            {
                "PIPELINE_KAFKA_BOOTSTRAP_SERVERS": s.kafka_bootstrap_servers,
                "PIPELINE_REDIS_URL": self.redis_url,
                "PIPELINE_STATE_DIR": str(s.state_dir),
                "PIPELINE_IOT_TOPIC": s.iot_topic,
                "PIPELINE_ACTIVITY_TOPIC": s.activity_topic,
                "PIPELINE_DLQ_TOPIC": s.dlq_topic,
                "PIPELINE_REDIS_PREFIX": s.redis_prefix,
                "PIPELINE_RECOVERY_DIR": str(s.recovery_dir),
                "PIPELINE_SNAPSHOT_INTERVAL_S": str(s.snapshot_interval_s),
                "PIPELINE_FLOW_METRICS_PORT": str(s.flow_metrics_port),
                "PIPELINE_PRODUCER_METRICS_PORT": str(s.producer_metrics_port),
                "PIPELINE_ACTIVITY_PRODUCER_METRICS_PORT": str(s.activity_producer_metrics_port),
                "PIPELINE_DASH_PORT": str(s.dash_port),
                "PIPELINE_IOT_RATE": str(self.opts.iot_rate),
                "PIPELINE_ACTIVITY_RATE": str(self.opts.activity_rate),
                "PIPELINE_IOT_DEVICES": str(self.opts.devices),
                "PIPELINE_PRODUCER_SEED": str(self.opts.seed),
                "PIPELINE_LOG_FORMAT": "json",
                "PIPELINE_KAFKA_START_FROM": "earliest",
            }
        )
        return env

    def prepare(self) -> None:
        """Redis (ours: the faults stop it), Kafka unless one answers, topics, recovery."""
        s = self.s
        local.start(s, "redis", started=self.started_services)
        if not probe_for("kafka", s)():
            local.start(s, "kafka", started=self.started_services)
        ensure_topics(AdminClient(s.kafka_client_config()), topic_specs(s))
        init_recovery(s)
        (self.run_dir / "logs").mkdir(parents=True, exist_ok=True)

    # --- sampling ---

    def _redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis_url, socket_timeout=2, socket_connect_timeout=2)

    def events_in(self) -> tuple[int, int, int] | None:
        """(events in, dead letters, late events) of the flow's counters in Redis; None if it fails."""
        try:
            c = decode_stats(self._redis().hgetall(self.layout.stats())).counters
        except redis.RedisError:
            return None
        return c.events_in, c.dead_letters, c.late_events

    def in_kafka(self, consumer: Consumer) -> int:
        """Messages in both input topics."""
        return topic_count(consumer, self.s.iot_topic) + topic_count(consumer, self.s.activity_topic)

    def _producer_url(self, name: str) -> str:
        port = (
            self.s.producer_metrics_port if name == "producer-iot" else self.s.activity_producer_metrics_port
        )
        return f"http://127.0.0.1:{port}/metrics"

    def sample(self, stack: Stack, consumer: Consumer, t: float) -> None:
        """One row of the time series."""
        try:
            info = self._redis().info("memory")
            used = round(int(info["used_memory"]) / 2**20, 2)
        except redis.RedisError:
            used = None
        counters = self.events_in()
        for name in ("producer-iot", "producer-activity"):
            delivered = [v for k, v in scrape(self._producer_url(name)).items() if "events_delivered" in k]
            if delivered:
                self.last_delivered[(name, stack.procs[name].incarnations)] = delivered[0]
        row = {
            "t_s": round(t, 1),
            "flow_rss_mb": rss_mb(stack.pid("flow")),
            "dashboard_rss_mb": rss_mb(stack.pid("dashboard")),
            "redis_used_memory_mb": used,
            "in_kafka": self.in_kafka(consumer),
            "events_in": counters[0] if counters else None,
            "late_events": counters[2] if counters else None,
            "dashboard_ready": http_status(f"http://127.0.0.1:{self.s.dash_port}/ready"),
        }
        self.samples.append(row)
        log.info("sample", **row)

    # --- faults ---

    def _redis_pid(self) -> int | None:
        return local.redis_service(self.s).pid()

    def _start_redis(self) -> None:
        local.start_redis(self.s)

    def inject(self, fault: Fault, stack: Stack) -> Callable[[], None]:
        """Start `fault`; return what ends it."""
        if fault.kind == "flow_kill":
            stack.kill("flow")
            return lambda: stack.start("flow")
        if fault.kind == "producer_kill":
            stack.kill(fault.target)
            return lambda: stack.start(fault.target)
        if fault.kind == "redis_pause":
            pid = self._redis_pid()
            assert pid is not None, "redis is not running"
            os.kill(pid, signal.SIGSTOP)
            return lambda: os.kill(pid, signal.SIGCONT)
        if fault.kind == "redis_restart":
            # SHUTDOWN SAVE: the restarted server loads what it acknowledged (a restart, not data loss).
            with contextlib.suppress(redis.ConnectionError):
                self._redis().shutdown(save=True)
            local.redis_service(self.s).stop()
            return lambda: self._start_redis()
        raise ValueError(fault.kind)

    # --- the run ---

    def run(self) -> dict[str, Any]:
        """Everything: prepare, run with faults, drain, count; the report."""
        opts = self.opts
        started_at = datetime.now(UTC)
        self.prepare()
        stack = Stack(self.env(), self.run_dir / "logs")
        consumer = Consumer({"bootstrap.servers": self.s.kafka_bootstrap_servers, "group.id": "soak-counts"})
        trickle = BadTrickle(
            self.s.kafka_bootstrap_servers,
            {"iot": self.s.iot_topic, "activity": self.s.activity_topic},
            opts.seed,
        )
        schedule = fault_schedule(opts.seed, opts.duration_s, opts.fault_every_s, opts.faults)
        log.info("soak starting", tag=self.tag, faults=len(schedule), duration_s=opts.duration_s)
        try:
            for name in PROCESS_NAMES:
                stack.start(name)
            t0 = time.monotonic()
            # (when, order, what): fault starts and ends, samples, bad messages
            queue: list[tuple[float, int, str, Any]] = []
            order = iter(range(10**9))
            for f in schedule:
                heapq.heappush(queue, (f.at_s, next(order), "fault", f))
            heapq.heappush(queue, (0.0, next(order), "sample", None))
            heapq.heappush(queue, (opts.bad_every_s / 2, next(order), "bad", None))
            pending_ends: list[tuple[Fault, Callable[[], None], float]] = []
            while True:
                now = time.monotonic() - t0
                if now >= opts.duration_s:
                    break
                while queue and queue[0][0] <= now:
                    at, _, what, item = heapq.heappop(queue)
                    if what == "sample":
                        self.sample(stack, consumer, now)
                        heapq.heappush(queue, (at + opts.sample_every_s, next(order), "sample", None))
                    elif what == "bad":
                        trickle.send(2)
                        heapq.heappush(queue, (at + opts.bad_every_s, next(order), "bad", None))
                    elif what == "fault":
                        log.info("fault", kind=item.kind, down_s=item.down_s, target=item.target or None)
                        end = self.inject(item, stack)
                        pending_ends.append((item, end, now))
                        heapq.heappush(queue, (now + item.down_s, next(order), "end", len(pending_ends) - 1))
                    elif what == "end":
                        fault, end, began = pending_ends[item]
                        end()
                        self.faults_done.append(
                            {
                                "kind": fault.kind,
                                "target": fault.target or None,
                                "at_s": round(began, 1),
                                "down_s": round(now - began, 1),
                            }
                        )
                        log.info("fault over", kind=fault.kind)
                stack.check()
                trickle.producer.poll(0)
                time.sleep(0.2)
            # Faults still in progress end now (the steady state must be back for the drain).
            for _, _, what, item in sorted(queue):
                if what == "end":
                    fault, end, began = pending_ends[item]
                    end()
                    self.faults_done.append(
                        {"kind": fault.kind, "target": fault.target or None, "at_s": round(began, 1)}
                    )
            run_s = time.monotonic() - t0
            producer_exit = {name: stack.stop(name) for name in ("producer-iot", "producer-activity")}
            trickle.flush()
            drain_s = self.drain(consumer, t0)
            self.sample(stack, consumer, time.monotonic() - t0)
            flow_metrics = scrape(f"http://127.0.0.1:{self.s.flow_metrics_port}/metrics")
            stack.check()
            return self.report(
                stack, consumer, trickle, started_at, run_s, drain_s, producer_exit, flow_metrics
            )
        finally:
            stack.stop_all()
            consumer.close()
            for name in reversed(self.started_services):
                local.SERVICES[name](self.s).stop()

    def drain(self, consumer: Consumer, t0: float) -> float:
        """Wait until the flow has counted every message in the input topics; seconds it took."""
        since = time.monotonic()
        deadline = since + self.opts.drain_timeout_s
        total = topic_count(consumer, self.s.iot_topic) + topic_count(consumer, self.s.activity_topic)
        while time.monotonic() < deadline:
            counters = self.events_in()
            if counters is not None and counters[0] >= total:
                break
            time.sleep(1.0)
        else:
            log.warning("drain timed out", in_kafka=total, counters=self.events_in())
        # Let the last results reach Redis (snapshots and sink batches), then count.
        time.sleep(2.0)
        return time.monotonic() - since

    # --- counting ---

    def producers_confirmed(self, stack: Stack) -> dict[str, Any]:
        """Delivery-report counts per producer, summed over incarnations."""
        out = {}
        for name in ("producer-iot", "producer-activity"):
            m = stack.procs[name]
            total, exact = 0, True
            for i, path in enumerate(m.logs, start=1):
                finished = list(log_events(path, "finished"))
                if finished:
                    total += int(finished[-1]["delivered"])
                else:
                    # Killed: its last scrape is a lower bound of what it had confirmed.
                    total += int(self.last_delivered.get((name, i), 0))
                    exact = False
            out[name] = {"confirmed": total, "incarnations": m.incarnations, "exact": exact}
        return out

    def completeness(self) -> dict[str, Any]:
        """Closed tumbling windows from Kafka's readings and events versus what Redis holds."""
        flow = load_settings(FlowSettings)  # what the stack's flow runs with (same environment)
        lateness_ms, window_ms = flow.lateness_ms, flow.tumbling_ms
        bootstrap = self.s.kafka_bootstrap_servers
        counts: dict[str, Counter[int]] = defaultdict(Counter)
        newest: dict[str, int] = {}
        for _, _, _, value in read_topic(bootstrap, self.s.iot_topic):
            try:
                r = SensorReading.model_validate_json(value or b"")
            except ValidationError:
                continue
            counts[r.device_id][r.event_time // window_ms * window_ms] += 1
            newest[r.device_id] = max(newest.get(r.device_id, 0), r.event_time)
        client = self._redis()
        name = window_name(window_ms)
        expected = present = exact = open_at_end = 0
        missing: list[str] = []
        for device, windows in counts.items():
            stored = {}
            for metric in Metric:
                key = self.layout.window_series(name, device, metric)
                stored[metric] = {
                    int(score): decode_window_stats(m, name, device, metric).count
                    for m, score in _zrange(client, key)
                }
            for start, n in windows.items():
                if start + window_ms + lateness_ms > newest[device]:
                    open_at_end += 1
                    continue
                expected += 1
                got = [stored[m].get(start) for m in Metric]
                if all(g is not None for g in got):
                    present += 1
                if all(g == n for g in got):
                    exact += 1
                elif len(missing) < 20:
                    missing.append(f"{device}@{start}: kafka {n}, redis {got}")
        # Activity: windows keyed by activity partition lateness; the global window counts all.
        act_counts: Counter[int] = Counter()
        act_newest = 0
        for _, _, _, value in read_topic(bootstrap, self.s.activity_topic):
            try:
                e = ActivityEvent.model_validate_json(value or b"")
            except ValidationError:
                continue
            act_counts[e.event_time // flow.activity_ms * flow.activity_ms] += 1
            act_newest = max(act_newest, e.event_time)
        act_name = window_name(flow.activity_ms)
        act_stored = {
            int(score): sum(decode_activity(m, act_name).counts.values())
            for m, score in _zrange(client, self.layout.activity_series(act_name))
        }
        # An activity window closes once every partition has moved past it: leave a margin of one window.
        closed = [s for s in act_counts if s + 2 * flow.activity_ms + lateness_ms <= act_newest]
        act_missing = [
            f"activity@{s}: kafka {act_counts[s]}, redis {act_stored.get(s)}"
            for s in closed
            if act_stored.get(s) != act_counts[s]
        ]
        act_exact = len(closed) - len(act_missing)
        return {
            "iot_windows_expected": expected,
            "iot_windows_present": present,
            "iot_windows_exact_count": exact,
            "iot_windows_open_at_end": open_at_end,
            "iot_devices": len(counts),
            "iot_mismatches": missing,
            "activity_windows_expected": len(closed),
            "activity_windows_exact_count": act_exact,
            "activity_mismatches": act_missing[:20],
        }

    def alerts(self) -> dict[str, int]:
        """Alerts in Redis by severity."""
        client = self._redis()
        tally: Counter[str] = Counter()
        for member, _ in _zrange(client, self.layout.alerts()):
            tally[str(decode_alert(member).severity)] += 1
        return dict(tally)

    def dead_letter_check(self, trickle: BadTrickle) -> dict[str, Any]:
        """The DLQ topic against the bad messages injected: each once or more (at-least-once)."""
        seen: Counter[tuple[str, int, int]] = Counter()
        for _, _, _, value in read_topic(self.s.kafka_bootstrap_servers, self.s.dlq_topic):
            d = DeadLetter.from_json(value or b"")
            seen[(d.topic, d.partition or 0, d.offset or 0)] += 1
        injected = set(trickle.delivered)
        return {
            "injected": len(injected),
            "dlq_messages": sum(seen.values()),
            "dlq_distinct": len(seen),
            "injected_missing_from_dlq": len(injected - set(seen)),
            "dlq_not_injected": len(set(seen) - injected),
            "kinds_injected": len(set(trickle.delivered.values())),
        }

    def report(
        self,
        stack: Stack,
        consumer: Consumer,
        trickle: BadTrickle,
        started_at: datetime,
        run_s: float,
        drain_s: float,
        producer_exit: dict[str, int | None],
        flow_metrics: dict[str, float],
    ) -> dict[str, Any]:
        """Count from independent sources and put the report together."""
        in_iot = topic_count(consumer, self.s.iot_topic)
        in_activity = topic_count(consumer, self.s.activity_topic)
        counters = self.events_in()
        assert counters is not None, "Redis is not answering at the end"
        events_in, dead_letters, late = counters
        in_kafka = in_iot + in_activity
        bad = len(trickle.delivered)
        processed = events_in - dead_letters
        dlq = self.dead_letter_check(trickle)
        confirmed = self.producers_confirmed(stack)
        confirmed_total = sum(p["confirmed"] for p in confirmed.values())
        lost = in_kafka - processed - dead_letters

        # "start" is after the warm-up (processes up, first windows written), not the bare interpreter.
        warm_s = min(60.0, 0.1 * self.opts.duration_s)

        def series(key: str) -> dict[str, float | None]:
            values = [r[key] for r in self.samples if r[key] is not None]
            warm = [r[key] for r in self.samples if r[key] is not None and r["t_s"] >= warm_s]
            return {
                "start": warm[0] if warm else None,
                "peak": max(values) if values else None,
                "end": values[-1] if values else None,
            }

        ready = Counter(str(r["dashboard_ready"]) for r in self.samples)
        return {
            "date": started_at.isoformat(timespec="seconds"),
            "tag": self.tag,
            "machine": (
                f"{platform.machine()}, {os.cpu_count()} CPUs (shared), Python {platform.python_version()}"
            ),
            "command": " ".join(["python -m bench.soak", *sys.argv[1:]]),
            "settings": {
                "duration_s": self.opts.duration_s,
                "iot_rate_per_s": self.opts.iot_rate,
                "activity_rate_per_s": self.opts.activity_rate,
                "devices": self.opts.devices,
                "seed": self.opts.seed,
                "fault_every_s": self.opts.fault_every_s,
                "fault_kinds": list(self.opts.faults),
                "sample_every_s": self.opts.sample_every_s,
                "bad_every_s": self.opts.bad_every_s,
                "snapshot_interval_s": self.s.snapshot_interval_s,
            },
            "run_s": round(run_s, 1),
            "drain_s": round(drain_s, 1),
            "counts": {
                "in_kafka": in_kafka,
                "in_kafka_iot": in_iot,
                "in_kafka_activity": in_activity,
                "producers_confirmed": confirmed_total,
                "producers": confirmed,
                "confirmed_missing_from_kafka": max(confirmed_total - (in_kafka - bad), 0),
                "bad_injected": bad,
                "events_in": events_in,
                "processed": processed,
                "dead_lettered": dead_letters,
                "late_events": late,
                "lost": lost,
                "flow_metrics_events_in": flow_metrics.get("pipeline_flow_events_in_total"),
                "flow_metrics_dead_letters": flow_metrics.get("pipeline_flow_dead_letters_total"),
            },
            "dead_letters": dlq,
            "faults": {
                "injected": self.faults_done,
                "by_kind": dict(Counter(f["kind"] for f in self.faults_done)),
                "unexpected_exits": {
                    n: m.unexpected_exits for n, m in stack.procs.items() if m.unexpected_exits
                },
                "producer_exit_status": producer_exit,
            },
            "memory": {
                "flow_rss_mb": series("flow_rss_mb"),
                "dashboard_rss_mb": series("dashboard_rss_mb"),
                "redis_used_memory_mb": series("redis_used_memory_mb"),
            },
            "dashboard_ready_status": dict(ready),
            "completeness": self.completeness(),
            "alerts_by_severity": self.alerts(),
            "samples": self.samples,
        }


def _zrange(client: redis.Redis, key: str) -> list[tuple[bytes, float]]:
    return cast(list[tuple[bytes, float]], client.zrange(key, 0, -1, withscores=True))


# --- output -----------------------------------------------------------------------


def verdict(result: dict[str, Any]) -> list[str]:
    """What is wrong with a run (empty when it passed)."""
    c, d = result["counts"], result["dead_letters"]
    problems = []
    if c["lost"] != 0:
        problems.append(f"lost {c['lost']} (in Kafka {c['in_kafka']}, counted {c['events_in']})")
    if c["confirmed_missing_from_kafka"]:
        problems.append(f"{c['confirmed_missing_from_kafka']} confirmed events are not in Kafka")
    if c["dead_lettered"] != c["bad_injected"] or d["injected_missing_from_dlq"] or d["dlq_not_injected"]:
        problems.append(
            f"dead letters {c['dead_lettered']} vs bad messages injected {c['bad_injected']}: {d}"
        )
    comp = result["completeness"]
    if comp["iot_windows_exact_count"] != comp["iot_windows_expected"]:
        problems.append(
            f"IoT windows incomplete: {comp['iot_windows_expected'] - comp['iot_windows_exact_count']} "
            f"of {comp['iot_windows_expected']} missing or miscounted"
        )
    if comp["activity_windows_exact_count"] != comp["activity_windows_expected"]:
        problems.append(
            f"activity windows incomplete: "
            f"{comp['activity_windows_expected'] - comp['activity_windows_exact_count']} "
            f"of {comp['activity_windows_expected']} missing or miscounted"
        )
    if result["faults"]["unexpected_exits"]:
        problems.append(f"processes died: {sorted(result['faults']['unexpected_exits'])}")
    return problems


def markdown(result: dict[str, Any]) -> str:
    """The report as markdown."""
    c, s, comp = result["counts"], result["settings"], result["completeness"]
    mem = result["memory"]
    problems = verdict(result)
    lines = [
        f"# Soak report ({result['date']})",
        "",
        f"`{result['command']}` on {result['machine']}. "
        f"{s['duration_s'] / 60:.1f} min at {s['iot_rate_per_s']:.0f} IoT readings/s "
        f"({s['devices']} devices) + {s['activity_rate_per_s']:.0f} activity events/s, "
        f"a fault about every {s['fault_every_s']:.0f} s, "
        f"2 bad messages every {s['bad_every_s']:.0f} s. Achieved: "
        f"{c['in_kafka_iot'] / result['run_s']:,.0f} IoT + {c['in_kafka_activity'] / result['run_s']:,.0f} "
        f"activity messages/s over {result['run_s']:.0f} s; the drain took {result['drain_s']:.0f} s.",
        "",
        f"**Verdict: {'PASS' if not problems else 'FAIL: ' + '; '.join(problems)}**",
        "",
        "## Counts",
        "",
        "| what | count | source |",
        "|---|---:|---|",
        f"| messages in the input topics | {c['in_kafka']:,} | broker offsets |",
        f"| of which confirmed by the producers | {c['producers_confirmed']:,} | delivery reports "
        "(last scrape for a SIGKILLed producer) |",
        f"| bad messages injected | {c['bad_injected']:,} | delivery reports |",
        f"| read by the flow | {c['events_in']:,} | flow counters in Redis |",
        f"| processed | {c['processed']:,} | counters: read - dead letters |",
        f"| dead-lettered | {c['dead_lettered']:,} | counters; DLQ topic: "
        f"{result['dead_letters']['dlq_distinct']:,} distinct |",
        f"| late (left out of windows) | {c['late_events']:,} | counters |",
        f"| **lost** | **{c['lost']:,}** | in Kafka - processed - dead-lettered |",
        "",
        "## Faults injected",
        "",
        "| kind | count |",
        "|---|---:|",
        *(f"| {k} | {v} |" for k, v in sorted(result["faults"]["by_kind"].items())),
        "",
        f"Unexpected process exits: {result['faults']['unexpected_exits'] or 'none'}. "
        f"Dashboard /ready answers over the samples: {result['dashboard_ready_status']}.",
        "",
        "## Memory",
        "",
        "Start: the first sample after the warm-up (10 % of the run, at most 60 s).",
        "",
        "| process | start | peak | end |",
        "|---|---:|---:|---:|",
        *(
            f"| {label} | {m['start']} | {m['peak']} | {m['end']} |"
            for label, m in (
                ("flow RSS (MiB)", mem["flow_rss_mb"]),
                ("dashboard RSS (MiB)", mem["dashboard_rss_mb"]),
                ("Redis used_memory (MiB)", mem["redis_used_memory_mb"]),
            )
        ),
        "",
        "## Completeness",
        "",
        f"- IoT 10 s windows closed by the end: {comp['iot_windows_expected']:,} over "
        f"{comp['iot_devices']} devices; present for every metric: {comp['iot_windows_present']:,}; "
        f"count equal to Kafka's: {comp['iot_windows_exact_count']:,} "
        f"({comp['iot_windows_open_at_end']} still open at the end, not judged).",
        f"- Activity 10 s windows closed: {comp['activity_windows_expected']:,}; count equal to Kafka's: "
        f"{comp['activity_windows_exact_count']:,}.",
        f"- Alerts in Redis by severity: {result['alerts_by_severity'] or 'none'} (no ground truth: "
        "bench/bench_detection.py measures detection quality).",
        *(f"- mismatch: {m}" for m in comp["iot_mismatches"] + comp["activity_mismatches"]),
        "",
        "## Over time",
        "",
        "| t (s) | flow RSS | dashboard RSS | Redis MiB | in Kafka | read by flow | /ready |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    rows = result["samples"]
    step = max(1, len(rows) // 40)
    for r in rows[::step] + ([rows[-1]] if rows and (len(rows) - 1) % step else []):
        lines.append(
            f"| {r['t_s']:.0f} | {r['flow_rss_mb']} | {r['dashboard_rss_mb']} | {r['redis_used_memory_mb']} "
            f"| {r['in_kafka']:,} | {r['events_in'] if r['events_in'] is not None else '-'} "
            f"| {r['dashboard_ready']} |"
        )
    lines += [
        "",
        "Faults in order: " + ", ".join(f"{f['kind']}@{f['at_s']}s" for f in result["faults"]["injected"]),
    ]
    return "\n".join(lines) + "\n"


def _fault_kinds(text: str) -> tuple[str, ...]:
    kinds = tuple(k.strip() for k in text.split(",") if k.strip())
    unknown = sorted(set(kinds) - set(FAULT_KINDS))
    if not kinds or unknown:
        raise argparse.ArgumentTypeError(f"unknown fault kinds {unknown}; choose from {FAULT_KINDS}")
    return kinds


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--duration", type=parse_duration, default=1800.0, help="e.g. 30m (default), 10m, 45s"
    )
    parser.add_argument("--iot-rate", type=float, default=2000.0, help="IoT readings/s, all devices (2000)")
    parser.add_argument("--activity-rate", type=float, default=500.0, help="activity events/s (500)")
    parser.add_argument("--devices", type=int, default=50, help="simulated IoT devices (50)")
    parser.add_argument("--seed", type=int, default=7, help="seed of the fault schedule and the simulators")
    parser.add_argument("--fault-every", type=float, default=60.0, help="mean seconds between faults (60)")
    parser.add_argument(
        "--faults",
        type=_fault_kinds,
        default=FAULT_KINDS,
        help=f"comma-separated fault kinds to inject (default: all of {','.join(FAULT_KINDS)})",
    )
    parser.add_argument("--sample-every", type=float, default=10.0, help="seconds between samples (10)")
    parser.add_argument("--bad-every", type=float, default=20.0, help="seconds between bad-message bursts")
    parser.add_argument("--drain-timeout", type=float, default=600.0, help="seconds to wait for the drain")
    parser.add_argument("--out-dir", type=Path, default=RESULTS, help="where the report goes")
    parser.add_argument("--name", default="soak-latest", help="file stem of the report")
    parser.add_argument(
        "--render", type=Path, metavar="JSON", help="only rewrite the markdown of an existing JSON report"
    )
    args = parser.parse_args(argv)
    if args.render is not None:
        result = json.loads(args.render.read_text())
        args.render.with_suffix(".md").write_text(markdown(result))
        return 1 if verdict(result) else 0
    configure_logging("soak")
    opts = Options(
        duration_s=args.duration,
        iot_rate=args.iot_rate,
        activity_rate=args.activity_rate,
        devices=args.devices,
        seed=args.seed,
        fault_every_s=args.fault_every,
        faults=args.faults,
        sample_every_s=args.sample_every,
        bad_every_s=args.bad_every,
        drain_timeout_s=args.drain_timeout,
        out_dir=args.out_dir,
        name=args.name,
    )
    result = Soak(opts, load_settings(StackSettings)).run()
    opts.out_dir.mkdir(parents=True, exist_ok=True)
    (opts.out_dir / f"{opts.name}.json").write_text(json.dumps(result, indent=1) + "\n")
    report = markdown(result)
    (opts.out_dir / f"{opts.name}.md").write_text(report)
    print(report, flush=True)
    return 1 if verdict(result) else 0


if __name__ == "__main__":
    sys.exit(main())
