"""Prometheus metrics of the Redis sink, defined once (default registry).

The dataflow process exposes them on its metrics port together with its own.
Per-partition gauges carry a ``partition`` label (the Redis sink partition, see
`sinks.redis_sink`).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from sinks.records import CircuitState

BATCH_SECONDS = Histogram(
    "pipeline_sink_batch_seconds",
    "Time to write one batch to Redis: encoding plus one pipelined round trip (successful writes).",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
RECORDS_WRITTEN = Counter(
    "pipeline_sink_records_written",
    "Records written to Redis after coalescing, by kind (an `UpdateKind` value).",
    ["kind"],
)
WRITE_FAILURES = Counter(
    "pipeline_sink_write_failures",
    "Writes to Redis that failed after redis-py's retries (each one counts towards the breaker).",
)
CIRCUIT_STATE = Gauge(
    "pipeline_sink_circuit_state",
    "Circuit breaker in front of Redis: 0 closed, 1 half-open, 2 open.",
    ["partition"],
)
BUFFERED_RECORDS = Gauge(
    "pipeline_sink_buffered_records",
    "Coalesced records waiting for Redis.",
    ["partition"],
)
BACKPRESSURE = Gauge(
    "pipeline_sink_backpressure",
    "1 while the sink blocks the dataflow because its buffer is full, else 0.",
    ["partition"],
)

CIRCUIT_STATE_VALUE: dict[CircuitState, int] = {
    CircuitState.CLOSED: 0,
    CircuitState.HALF_OPEN: 1,
    CircuitState.OPEN: 2,
}
"""Value of `CIRCUIT_STATE` per state."""
