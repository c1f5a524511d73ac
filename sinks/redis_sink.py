"""The dataflow's Redis sink: a Bytewax `FixedPartitionedSink` with a circuit breaker and a bounded buffer.

The flow routes ``(key, record)`` pairs here (`sink_key`): Bytewax sends every
key to one of ``sink_partitions`` partitions (`RedisSink.part_fn`), and each
partition lives on one worker (Bytewax spreads them over the workers). All
records that write one Redis entry share a key (a device's windows, alerts,
trend and latest reading; one activity window series; one page; the counters),
come from the one worker that computes them, and so reach Redis in the order
they were made.

Each partition (`RedisSinkPartition`) has its own writer, connection pool and
breaker. For each batch Bytewax hands over, the partition buffers the records
(coalesced) and, if the breaker lets it, writes the whole buffer with one
pipelined round trip. Redis trouble never raises into the dataflow:

* a failed write (after redis-py's retries with exponential backoff) keeps the
  records buffered and counts towards the breaker; after N consecutive
  failures the breaker opens and batches are only buffered, without trying
  Redis, until the reset timeout passes; then one write probes Redis
  (half-open) and closes the breaker when it succeeds;
* the buffer is part of the partition's recovery snapshot (`snapshot`). Bytewax
  stores it with the same epoch as the Kafka offsets, so a flow killed during an
  outage resumes with the results its input offsets have already passed, and
  writes them once Redis answers (`RedisSink.build_part`);
* the buffer is bounded: each partition takes its share of
  ``sink_buffer_max_records``. When a batch leaves more than that buffered,
  ``write_batch`` blocks: it waits (backoff, or until the breaker's next probe)
  and retries until Redis takes the buffer. That is the backpressure: this
  worker stalls, and with it the epoch every worker needs to advance, so the
  dataflow stops reading and Kafka keeps the unread events. No epoch closes
  while it blocks, so no snapshot holds more than the bound. Nothing is dropped.

Usage in a flow::

    keyed = op.key_on("key_for_redis", results, sink_key)
    op.output("write_redis", keyed, RedisSink(settings))
"""

from __future__ import annotations

import time
from collections.abc import Callable

import redis
import structlog
from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition
from redis.backoff import ExponentialBackoff

from sinks import metrics
from sinks.breaker import CircuitBreaker, Clock
from sinks.records import (
    ActivityWindow,
    Alert,
    CircuitState,
    PageTotal,
    PipelineCounters,
    TrendState,
    WindowStats,
)
from sinks.settings import SinkSettings
from sinks.writer import RedisWriter, SinkRecord, wall_clock_ms
from sources.models import SensorReading

log = structlog.get_logger(__name__)

SinkSnapshot = list[SinkRecord]
"""A sink partition's recovery state: its coalesced records Redis has not acknowledged."""


def sink_key(record: SinkRecord) -> str:
    """The key that routes `record` to its sink partition.

    Records that write the same Redis entry get the same key, so one partition
    writes them, in order. Raises `TypeError` for anything that is not a `SinkRecord`.
    """
    match record:
        case WindowStats() | Alert() | TrendState() | SensorReading():
            return f"device:{record.device_id}"
        case ActivityWindow():
            return f"activity:{record.window}"
        case PageTotal():
            return f"page:{record.page}"
        case PipelineCounters():
            return "counters"
        case _:
            raise TypeError(f"the Redis sink cannot route a {type(record).__name__}")


class RedisSinkPartition(StatefulSinkPartition[SinkRecord, SinkSnapshot]):
    """One sink partition's writer, guarded by a circuit breaker, with a bounded buffer it snapshots."""

    def __init__(
        self,
        writer: RedisWriter,
        breaker: CircuitBreaker,
        *,
        partition: str = "0",
        clock: Clock = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """Wrap a set-up `writer`.

        Args:
            writer: The writer (its settings give the buffer bound, backoff and close timeout).
            breaker: The breaker in front of Redis.
            partition: This partition's name, the label of its metrics.
            clock: Monotonic time (s), for the close deadline.
            sleep: How to wait while applying backpressure.
        """
        self._writer = writer
        self._breaker = breaker
        self._settings = writer.settings
        self._bound = writer.settings.sink_partition_buffer_max_records
        self._clock = clock
        self._sleep = sleep
        self._partition = partition
        self._backoff = ExponentialBackoff(
            cap=self._settings.sink_backoff_cap_s, base=self._settings.sink_backoff_base_s
        )
        self._circuit_gauge = metrics.CIRCUIT_STATE.labels(partition=partition)
        self._buffer_gauge = metrics.BUFFERED_RECORDS.labels(partition=partition)
        self._backpressure_gauge = metrics.BACKPRESSURE.labels(partition=partition)
        self._circuit_gauge.set(metrics.CIRCUIT_STATE_VALUE[breaker.state])
        self._buffer_gauge.set(0)
        self._backpressure_gauge.set(0)
        breaker.add_listener(self._on_transition)

    @property
    def circuit_state(self) -> CircuitState:
        """State of the breaker in front of Redis."""
        return self._breaker.state

    @property
    def breaker(self) -> CircuitBreaker:
        """The breaker itself (e.g. to add a transition listener)."""
        return self._breaker

    @property
    def buffered(self) -> int:
        """Coalesced records waiting for Redis."""
        return len(self._writer.pending)

    @property
    def bound(self) -> int:
        """Most records this partition buffers before it blocks the dataflow."""
        return self._bound

    def write_batch(self, values: list[SinkRecord]) -> None:
        """Buffer `values` and write the buffer if the breaker allows; never raises on Redis trouble.

        Blocks (backpressure) while more than `bound` records are buffered: it retries
        with backoff, probing whenever the breaker allows, until Redis has taken the
        buffer. Raises `TypeError` for a value that is not a `SinkRecord` (a bug in
        the flow, not a Redis problem).
        """
        self._writer.add(values)
        self._try_flush()
        if self.buffered > self._bound:
            self._apply_backpressure()
        self._buffer_gauge.set(self.buffered)

    def snapshot(self) -> SinkSnapshot:
        """The records Redis has not acknowledged (at most `bound`; empty while Redis keeps up).

        Bytewax stores this with the epoch of the input offsets that produced them,
        so a resumed flow gets back exactly the results its input will not replay.
        """
        return self._writer.pending.records()

    def resume(self, state: SinkSnapshot) -> None:
        """Buffer the records of a snapshot (`snapshot`) and write them if Redis answers.

        If Redis is still unreachable they wait in the buffer like any others.
        """
        self._writer.add(state)
        if state:
            written = self._try_flush()
            log.info(
                "sink_partition_resumed",
                partition=self._partition,
                restored=len(state),
                written=written,
                circuit_state=self.circuit_state.value,
            )
        self._buffer_gauge.set(self.buffered)

    def close(self) -> None:
        """Write what is buffered, trying for up to ``sink_close_timeout_s``; then disconnect.

        Bytewax calls this at the end of a finite run (and when it drops a partition
        another worker resumes), never on a crash. Records still buffered at the
        deadline are reported in an error log line (they were not written).
        """
        deadline = self._clock() + self._settings.sink_close_timeout_s
        attempt = 0
        while self.buffered and not self._try_flush():
            wait = self._next_wait(attempt := attempt + 1)
            if self._clock() + wait > deadline:
                log.error(
                    "sink_closed_with_unwritten_records",
                    partition=self._partition,
                    records=self.buffered,
                    circuit_state=self.circuit_state.value,
                )
                break
            self._sleep(wait)
        self._buffer_gauge.set(self.buffered)
        self._writer.close()

    def _try_flush(self) -> bool:
        """Write the buffer if the breaker allows; True when nothing is left buffered."""
        if not self._writer.pending:
            return True
        if not self._breaker.allow_request():
            return False
        probing = self._breaker.state is CircuitState.HALF_OPEN
        started = time.perf_counter()
        try:
            written = self._writer.flush(self._breaker.state)
        except redis.RedisError as exc:
            self._on_failure(exc)
            return False
        metrics.BATCH_SECONDS.observe(time.perf_counter() - started)
        for kind, count in written.items():
            metrics.RECORDS_WRITTEN.labels(kind=kind.value).inc(count)
        self._breaker.record_success()
        if probing:
            # The batch reported "half_open" in the stats hash; say at once that it closed.
            try:
                self._writer.write_status(self._breaker.state)
            except redis.RedisError as exc:
                self._on_failure(exc)
        return True

    def _on_failure(self, exc: redis.RedisError) -> None:
        metrics.WRITE_FAILURES.inc()
        self._breaker.record_failure()
        log.warning(
            "redis_write_failed",
            partition=self._partition,
            error=f"{type(exc).__name__}: {exc}",
            buffered=self.buffered,
            consecutive_failures=self._breaker.consecutive_failures,
            circuit_state=self._breaker.state.value,
        )

    def _apply_backpressure(self) -> None:
        self._backpressure_gauge.set(1)
        attempt = 0
        try:
            while self.buffered > self._bound:
                wait = self._next_wait(attempt := attempt + 1)
                log.warning(
                    "sink_buffer_full_blocking_dataflow",
                    partition=self._partition,
                    buffered=self.buffered,
                    bound=self._bound,
                    circuit_state=self.circuit_state.value,
                    retry_in_s=round(wait, 3),
                )
                self._buffer_gauge.set(self.buffered)
                self._sleep(wait)
                self._try_flush()
        finally:
            self._backpressure_gauge.set(0)

    def _next_wait(self, attempt: int) -> float:
        # While the breaker is open, waiting less than its remaining timeout is pointless.
        return max(self._backoff.compute(attempt), self._breaker.seconds_until_probe())

    def _on_transition(self, old: CircuitState, new: CircuitState) -> None:
        self._circuit_gauge.set(metrics.CIRCUIT_STATE_VALUE[new])
        event = "circuit_opened" if new is CircuitState.OPEN else f"circuit_{new.value}"
        (log.warning if new is CircuitState.OPEN else log.info)(
            event, partition=self._partition, previous=old.value, buffered=self.buffered
        )


class RedisSink(FixedPartitionedSink[SinkRecord, SinkSnapshot]):
    """Writes the dataflow's ``(sink_key, record)`` pairs into Redis (layout: `sinks.layout`).

    ``sink_partitions`` partitions, named ``"0"``, ``"1"``, ...; every worker can
    reach Redis, so every worker lists them all and Bytewax picks one worker per
    partition, balanced. The count must stay the same for the life of a recovery
    folder (a key's partition, and the snapshots, depend on it). Writes are
    idempotent, so the content depends neither on the number of workers nor on
    replays after recovery.
    """

    def __init__(
        self,
        settings: SinkSettings,
        *,
        clock: Clock = time.monotonic,
        now_ms: Callable[[], int] = wall_clock_ms,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """Configure the sink; connections are made per partition in `build_part`.

        Args:
            settings: Redis connection, retention, breaker, buffer, partitions and retry settings.
            clock: Monotonic time (s) for the breaker and deadlines.
            now_ms: Wall clock (UTC epoch ms) for the status written to Redis.
            sleep: How to wait while applying backpressure.
        """
        self.settings = settings
        self._clock = clock
        self._now_ms = now_ms
        self._sleep = sleep

    def list_parts(self) -> list[str]:
        """Every partition: any worker can write to Redis."""
        return [str(i) for i in range(self.settings.sink_partitions)]

    # part_fn stays Bytewax's default, adler32 of the key: stable across processes and runs.

    def build_part(
        self, step_id: str, for_part: str, resume_state: SinkSnapshot | None
    ) -> RedisSinkPartition:
        """Build partition `for_part`: a connected writer, a closed breaker and the snapshot's records.

        Args:
            step_id: The output step's id.
            for_part: Which partition (one of `list_parts`).
            resume_state: Its last snapshot, None on a first start; its records are
                written at once if Redis answers, else buffered.
        """
        writer = RedisWriter(self.settings, now_ms=self._now_ms)
        writer.setup()
        breaker = CircuitBreaker(
            self.settings.sink_breaker_failure_threshold,
            self.settings.sink_breaker_reset_timeout_s,
            clock=self._clock,
        )
        part = RedisSinkPartition(writer, breaker, partition=for_part, clock=self._clock, sleep=self._sleep)
        if resume_state:
            part.resume(resume_state)
        return part
