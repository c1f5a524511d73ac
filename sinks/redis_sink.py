"""The dataflow's Redis sink: a Bytewax `DynamicSink` with a circuit breaker and a bounded buffer.

Every worker builds one `RedisSinkPartition` (its own writer, connection pool
and breaker). For each batch Bytewax hands over, the partition buffers the
records (coalesced) and, if the breaker lets it, writes the whole buffer with
one pipelined round trip. Redis trouble never raises into the dataflow:

* a failed write (after redis-py's retries with exponential backoff) keeps the
  records buffered and counts towards the breaker; after N consecutive
  failures the breaker opens and batches are only buffered, without trying
  Redis, until the reset timeout passes; then one write probes Redis
  (half-open) and closes the breaker when it succeeds;
* the buffer is bounded (``sink_buffer_max_records``). When a batch leaves more
  than that buffered, ``write_batch`` blocks: it waits (backoff, or until the
  breaker's next probe) and retries until Redis takes the buffer. That is the
  backpressure: the dataflow stalls and Kafka keeps the unread events; nothing
  is dropped.

Usage in a flow::

    op.output("write_redis", results, RedisSink(settings))
"""

from __future__ import annotations

import time
from collections.abc import Callable

import redis
import structlog
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from redis.backoff import ExponentialBackoff

from sinks import metrics
from sinks.breaker import CircuitBreaker, Clock
from sinks.records import CircuitState
from sinks.settings import SinkSettings
from sinks.writer import RedisWriter, SinkRecord, wall_clock_ms

log = structlog.get_logger(__name__)


class RedisSinkPartition(StatelessSinkPartition[SinkRecord]):
    """One worker's writer, guarded by a circuit breaker, with a bounded buffer."""

    def __init__(
        self,
        writer: RedisWriter,
        breaker: CircuitBreaker,
        *,
        worker: str = "0",
        clock: Clock = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """Wrap a set-up `writer`.

        Args:
            writer: The writer (its settings give the buffer bound, backoff and close timeout).
            breaker: The breaker in front of Redis.
            worker: Label of this partition's metrics (the Bytewax worker index).
            clock: Monotonic time (s), for the close deadline.
            sleep: How to wait while applying backpressure.
        """
        self._writer = writer
        self._breaker = breaker
        self._settings = writer.settings
        self._clock = clock
        self._sleep = sleep
        self._worker = worker
        self._backoff = ExponentialBackoff(
            cap=self._settings.sink_backoff_cap_s, base=self._settings.sink_backoff_base_s
        )
        self._circuit_gauge = metrics.CIRCUIT_STATE.labels(worker=worker)
        self._buffer_gauge = metrics.BUFFERED_RECORDS.labels(worker=worker)
        self._backpressure_gauge = metrics.BACKPRESSURE.labels(worker=worker)
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

    def write_batch(self, items: list[SinkRecord]) -> None:
        """Buffer `items` and write the buffer if the breaker allows; never raises on Redis trouble.

        Blocks (backpressure) while more than ``sink_buffer_max_records`` records are
        buffered: it retries with backoff, probing whenever the breaker allows, until
        Redis has taken the buffer. Raises `TypeError` for an item that is not a
        `SinkRecord` (a bug in the flow, not a Redis problem).
        """
        self._writer.add(items)
        self._try_flush()
        if self.buffered > self._settings.sink_buffer_max_records:
            self._apply_backpressure()
        self._buffer_gauge.set(self.buffered)

    def close(self) -> None:
        """Write what is buffered, trying for up to ``sink_close_timeout_s``; then disconnect.

        Bytewax calls this at the end of a finite run only. Records still buffered at the
        deadline are reported in an error log line (they were not written).
        """
        deadline = self._clock() + self._settings.sink_close_timeout_s
        attempt = 0
        while self.buffered and not self._try_flush():
            wait = self._next_wait(attempt := attempt + 1)
            if self._clock() + wait > deadline:
                log.error(
                    "sink_closed_with_unwritten_records",
                    worker=self._worker,
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
            worker=self._worker,
            error=f"{type(exc).__name__}: {exc}",
            buffered=self.buffered,
            consecutive_failures=self._breaker.consecutive_failures,
            circuit_state=self._breaker.state.value,
        )

    def _apply_backpressure(self) -> None:
        self._backpressure_gauge.set(1)
        attempt = 0
        try:
            while self.buffered > self._settings.sink_buffer_max_records:
                wait = self._next_wait(attempt := attempt + 1)
                log.warning(
                    "sink_buffer_full_blocking_dataflow",
                    worker=self._worker,
                    buffered=self.buffered,
                    bound=self._settings.sink_buffer_max_records,
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
            event, worker=self._worker, previous=old.value, buffered=self.buffered
        )


class RedisSink(DynamicSink[SinkRecord]):
    """Writes the dataflow's analytics records into Redis (layout: `sinks.layout`).

    Every worker writes its own share concurrently; writes are idempotent, so the
    content does not depend on the number of workers or on replays after recovery.
    """

    def __init__(
        self,
        settings: SinkSettings,
        *,
        clock: Clock = time.monotonic,
        now_ms: Callable[[], int] = wall_clock_ms,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """Configure the sink; connections are made per worker in `build`.

        Args:
            settings: Redis connection, retention, breaker, buffer and retry settings.
            clock: Monotonic time (s) for the breaker and deadlines.
            now_ms: Wall clock (UTC epoch ms) for the status written to Redis.
            sleep: How to wait while applying backpressure.
        """
        self.settings = settings
        self._clock = clock
        self._now_ms = now_ms
        self._sleep = sleep

    def build(self, step_id: str, worker_index: int, worker_count: int) -> RedisSinkPartition:
        """Build worker `worker_index`'s partition: a connected writer and a closed breaker."""
        writer = RedisWriter(self.settings, now_ms=self._now_ms)
        writer.setup()
        breaker = CircuitBreaker(
            self.settings.sink_breaker_failure_threshold,
            self.settings.sink_breaker_reset_timeout_s,
            clock=self._clock,
        )
        return RedisSinkPartition(
            writer, breaker, worker=str(worker_index), clock=self._clock, sleep=self._sleep
        )
