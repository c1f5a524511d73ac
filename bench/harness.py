"""What the process-level benchmarks share: fresh topics, flow and producer processes, memory sampling.

Everything runs the product through its command lines (``python -m bytewax.run
flows.main``, ``python -m sources.produce``) configured by ``PIPELINE_``
variables, never through its internals, so the benchmarks keep measuring the
product when its insides change. The flow's processes are started by
`tests.pipeline_harness.start_flow` (the same ``-w``/``-i``/``-a`` command lines
the pipeline tests run).

Progress bars are tqdm on stderr (``bench/run.py`` shows them as they move).
"""

from __future__ import annotations

import collections
import math
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient
from tqdm import tqdm

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import redis  # noqa: E402

from sources.topics import TopicSpec, ensure_topics  # noqa: E402
from tests.pipeline_harness import PipelineTopics, delete_topics, start_flow  # noqa: E402


@dataclass(frozen=True)
class FlowShape:
    """How the dataflow runs: workers per process and processes (``-w`` and ``-i/-a``)."""

    workers: int = 1
    processes: int = 1

    @classmethod
    def parse(cls, text: str) -> FlowShape:
        """``1w``, ``2w`` (one process, N workers) or ``2p`` (N processes of one worker)."""
        text = text.strip()
        if text.endswith("w"):
            return cls(workers=int(text[:-1]))
        if text.endswith("p"):
            return cls(processes=int(text[:-1]))
        raise ValueError(f"not a flow shape (1w, 2w, 2p): {text!r}")

    @property
    def label(self) -> str:
        """``1 worker``, ``2 workers`` or ``2 processes``."""
        if self.processes > 1:
            return f"{self.processes} processes"
        return f"{self.workers} worker{'s' if self.workers > 1 else ''}"

    @property
    def short(self) -> str:
        """``1w``, ``2w`` or ``2p``."""
        return f"{self.processes}p" if self.processes > 1 else f"{self.workers}w"


def bar(total: float | None, desc: str, unit: str = "it") -> tqdm:
    """A progress bar on stderr, refreshed at most twice a second."""
    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, mininterval=0.5, dynamic_ncols=True)


def say(tag: str, msg: str) -> None:
    """A progress line on stderr (stdout holds the figures)."""
    print(f"[{tag}] {msg}", file=sys.stderr, flush=True)


def fresh_topics(admin: AdminClient, bootstrap: str, redis_url: str, partitions: int = 3) -> PipelineTopics:
    """New IoT, activity and DLQ topics (`partitions` each for the inputs) and a fresh key prefix."""
    tag = uuid.uuid4().hex[:10]
    topics = PipelineTopics(
        f"bench-iot-{tag}", f"bench-activity-{tag}", f"bench-dlq-{tag}", f"bench-{tag}:", bootstrap, redis_url
    )
    ensure_topics(
        admin,
        [TopicSpec(topics.iot, partitions), TopicSpec(topics.activity, partitions), TopicSpec(topics.dlq, 1)],
    )
    return topics


def topic_messages(bootstrap: str, topic: str) -> int:
    """Messages in `topic` now (sum of its partitions' high watermarks; topics are fresh, low = 0)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-count", "log_level": 4})
    try:
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return sum(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts)
    finally:
        consumer.close()


def producer_env(topics: PipelineTopics, **overrides: str) -> dict[str, str]:
    """Environment of a ``python -m sources.produce`` process writing to `topics` (no metrics port)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINE_")}
    env.update(
        {
            "PIPELINE_KAFKA_BOOTSTRAP_SERVERS": topics.bootstrap,
            "PIPELINE_IOT_TOPIC": topics.iot,
            "PIPELINE_ACTIVITY_TOPIC": topics.activity,
            "PIPELINE_DLQ_TOPIC": topics.dlq,
            "PIPELINE_PRODUCER_METRICS_PORT": "0",
            "PIPELINE_LOG_LEVEL": "WARNING",
            **overrides,
        }
    )
    return env


def start_producer(
    env: dict[str, str], source: str, rate: float, seed: int, devices: int | None = None
) -> subprocess.Popen[bytes]:
    """``python -m sources.produce iot|activity --rate R`` (wall clock: event time = time of production)."""
    argv = [sys.executable, "-m", "sources.produce", source, "--rate", f"{rate:g}", "--seed", str(seed)]
    if devices is not None:
        argv += ["--devices", str(devices)]
    return subprocess.Popen(argv, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def stop_processes(procs: Sequence[subprocess.Popen[bytes]], timeout_s: float = 60.0) -> None:
    """SIGTERM every process (the product's graceful stop), wait, SIGKILL stragglers.

    Their output is read by `drain` threads, so waiting cannot stall on a full pipe.
    """
    for p in procs:
        if p.poll() is None:
            p.terminate()
    deadline = time.monotonic() + timeout_s
    for p in procs:
        try:
            p.wait(timeout=max(deadline - time.monotonic(), 1))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


@dataclass
class MemorySampler:
    """Samples the resident memory (RSS) of some processes, summed, every `interval_s`, in a thread.

    psutil rather than /proc parsing: portable and well kept. A process that ended
    counts 0 from then on.
    """

    pids: Sequence[int]
    interval_s: float = 0.2
    extra: Callable[[], float] | None = None
    """Sampled beside the RSS at each tick (e.g. Redis used_memory), if given."""
    samples: list[tuple[float, int, float]] = field(default_factory=list)
    """(seconds since start, summed RSS bytes, extra value)."""
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> MemorySampler:
        self._procs = []
        for pid in self.pids:
            try:
                self._procs.append(psutil.Process(pid))
            except psutil.NoSuchProcess:
                pass
        self._t0 = time.perf_counter()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def sample(self) -> None:
        """Take one sample now."""
        rss = 0
        for proc in self._procs:
            try:
                rss += proc.memory_info().rss
            except (psutil.NoSuchProcess, psutil.ZombieProcess):
                continue
        extra = self.extra() if self.extra is not None else 0.0
        if rss:
            self.samples.append((time.perf_counter() - self._t0, rss, extra))

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval_s)

    @property
    def peak_rss(self) -> int:
        """Largest summed RSS seen, bytes (0 when nothing was sampled)."""
        return max((s[1] for s in self.samples), default=0)


def percentile(values: Sequence[float], q: float) -> float:
    """The `q`-th percentile (0-100) by nearest rank; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(q / 100 * len(ordered))))
    return ordered[rank - 1]


MB = 1024 * 1024


def drain(proc: subprocess.Popen[bytes], keep: int = 200) -> collections.deque[str]:
    """Read a process's output in a thread (a full pipe would stall it); the last `keep` lines."""
    tail: collections.deque[str] = collections.deque(maxlen=keep)

    def pump() -> None:
        assert proc.stdout is not None
        for raw in iter(proc.stdout.readline, b""):
            tail.append(raw.decode(errors="replace").rstrip())

    threading.Thread(target=pump, daemon=True).start()
    return tail


@dataclass
class LiveRun:
    """The live pipeline on fresh topics: the flow tailing them, producers sending at a steady rate.

    The IoT rate is split over ``ceil(rate / max_rate_per_producer)`` producer processes
    (different seeds, the same device ids), since one Python producer tops out at a few
    tens of thousands of events/s. Event time is the producers' wall clock, so the time
    of production. Use as a context manager: everything it started is stopped, its
    topics and keys removed, on exit.
    """

    admin: AdminClient
    bootstrap: str
    redis_url: str
    iot_rate: float
    activity_rate: float
    devices: int
    shape: FlowShape = field(default_factory=FlowShape)
    partitions: int = 3
    max_rate_per_producer: float = 25_000.0
    flow_env: dict[str, str] = field(default_factory=dict)
    """Extra ``PIPELINE_`` settings of the flow (e.g. a short retention)."""
    topics: PipelineTopics | None = None
    flow: list[subprocess.Popen[bytes]] = field(default_factory=list)
    producers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    outputs: dict[str, collections.deque[str]] = field(default_factory=dict)

    @property
    def prefix(self) -> str:
        """The run's Redis key prefix."""
        assert self.topics is not None
        return self.topics.prefix

    def __enter__(self) -> LiveRun:
        self.topics = fresh_topics(self.admin, self.bootstrap, self.redis_url, self.partitions)
        env = self.topics.env(
            PIPELINE_KAFKA_STOP_AT_END="false", PIPELINE_LOG_LEVEL="WARNING", **self.flow_env
        )
        self.flow = start_flow(env, workers=self.shape.workers, processes=self.shape.processes)
        for i, proc in enumerate(self.flow):
            self.outputs[f"flow-{i}"] = drain(proc)
        penv = producer_env(self.topics)
        n = max(1, math.ceil(self.iot_rate / self.max_rate_per_producer))
        for i in range(n):
            proc = start_producer(penv, "iot", self.iot_rate / n, seed=42 + i, devices=self.devices)
            self.producers.append(proc)
            self.outputs[f"iot-{i}"] = drain(proc)
        if self.activity_rate > 0:
            proc = start_producer(penv, "activity", self.activity_rate, seed=42)
            self.producers.append(proc)
            self.outputs["activity"] = drain(proc)
        return self

    def produced(self) -> int:
        """IoT readings in the topic so far."""
        assert self.topics is not None
        return topic_messages(self.bootstrap, self.topics.iot)

    def check_alive(self) -> None:
        """Fail, with its output, if a flow or producer process ended early."""
        for name, proc in [*(("flow", p) for p in self.flow), *(("producer", p) for p in self.producers)]:
            if proc.poll() is not None:
                tail = "\n".join(self.outputs_of(proc))
                raise RuntimeError(f"{name} process exited {proc.returncode}:\n{tail[-3000:]}")

    def outputs_of(self, proc: subprocess.Popen[bytes]) -> list[str]:
        """The last lines a process wrote."""
        procs = [*self.flow, *self.producers]
        names = list(self.outputs)
        return list(self.outputs[names[procs.index(proc)]])

    def stop_producers(self) -> None:
        """Stop the producers (graceful: they flush what they hold)."""
        stop_processes(self.producers)

    def __exit__(self, *_exc: object) -> None:
        stop_processes(self.producers)
        stop_processes(self.flow)
        if self.topics is not None:
            delete_topics(self.admin, self.topics)
            client = redis.Redis.from_url(self.redis_url)
            keys = list(client.scan_iter(match=f"{self.topics.prefix}*", count=1000))
            if keys:
                client.delete(*keys)


@dataclass
class CpuMeter:
    """CPU time of named processes over a span, as % of one core.

    Says which process ate the machine's 2 cores during a live run (psutil, so
    portable). A process that is gone by `stop` counts what it used until then.
    """

    pids: dict[str, int]
    _start: dict[str, float] = field(default_factory=dict)
    _t0: float = 0.0

    @staticmethod
    def _cpu(pid: int) -> float:
        # The process alone, not its children: the observer's children are the flow and producers.
        try:
            t = psutil.Process(pid).cpu_times()
        except psutil.NoSuchProcess:
            return 0.0
        return float(t.user + t.system)

    def start(self) -> None:
        """Begin the span."""
        self._t0 = time.monotonic()
        self._start = {name: self._cpu(pid) for name, pid in self.pids.items()}

    def stop(self) -> dict[str, float]:
        """End the span; each process's CPU in % of one core (100 = a core busy throughout)."""
        wall = max(time.monotonic() - self._t0, 1e-9)
        # A process gone meanwhile reads 0: never a negative share.
        return {
            name: max(self._cpu(pid) - self._start[name], 0.0) / wall * 100 for name, pid in self.pids.items()
        }
