"""Settings of the dataflow's Redis sink and of the dead-letter tool.

`SinkSettings` extends `RedisConnection` (where Redis is, the key prefix); the
dataflow's own settings class composes it, and `sinks.redis_sink.RedisSink`
takes it. `DlqToolSettings` extends `KafkaConnection` (the broker, the topics,
security) for ``python -m sinks.dlq``.
"""

from __future__ import annotations

from pydantic import Field, ValidationInfo, field_validator

from config.settings import KafkaConnection, RedisConnection


class SinkSettings(RedisConnection):
    """How the sink writes to Redis and what it does while Redis is unreachable."""

    sink_retention_s: float = Field(
        3600.0,
        gt=0,
        description="Event-time span (s) of window series kept in Redis, behind each series' newest window.",
    )
    sink_alerts_kept: int = Field(1000, ge=1, description="How many of the newest alerts Redis keeps.")
    sink_breaker_failure_threshold: int = Field(
        5, ge=1, description="Consecutive failed writes that open the circuit breaker in front of Redis."
    )
    sink_breaker_reset_timeout_s: float = Field(
        30.0, gt=0, description="Seconds the open circuit breaker waits before it probes Redis again."
    )
    sink_buffer_max_records: int = Field(
        100_000,
        ge=1,
        description=(
            "Coalesced records the sink buffers while Redis is unreachable, split evenly over its "
            "partitions; beyond a partition's share it blocks the dataflow (backpressure) until Redis "
            "takes writes again, never dropping results."
        ),
    )
    sink_partitions: int = Field(
        2,
        ge=1,
        le=64,
        description=(
            "Partitions of the Redis sink, spread over the workers; each keeps its unwritten records in "
            "the recovery snapshots. Fixed for the life of a recovery folder; a multiple of the worker count."
        ),
    )
    sink_retries: int = Field(
        3, ge=0, description="Retries of a failed Redis round trip (connection errors, timeouts) per write."
    )
    sink_backoff_base_s: float = Field(
        0.05, gt=0, description="Base (s) of the exponential backoff: retry n waits min(cap, base * 2**n)."
    )
    sink_backoff_cap_s: float = Field(2.0, gt=0, description="Longest wait (s) between two retries.")
    sink_socket_timeout_s: float = Field(2.0, gt=0, description="Timeout (s) of one Redis command.")
    sink_socket_connect_timeout_s: float = Field(2.0, gt=0, description="Timeout (s) of connecting to Redis.")
    sink_max_connections: int = Field(
        4, ge=1, description="Size of each sink partition's Redis connection pool."
    )
    sink_close_timeout_s: float = Field(
        60.0,
        ge=0,
        description="At the end of a finite run: how long (s) the sink keeps trying to write its buffer.",
    )

    @field_validator("sink_backoff_cap_s")
    @classmethod
    def _cap_covers_base(cls, value: float, info: ValidationInfo) -> float:
        # A field validator (not a model one) so the error names PIPELINE_SINK_BACKOFF_CAP_S.
        base = info.data.get("sink_backoff_base_s")
        if base is not None and value < base:
            raise ValueError(f"must be >= PIPELINE_SINK_BACKOFF_BASE_S ({base})")
        return value

    @property
    def sink_partition_buffer_max_records(self) -> int:
        """One sink partition's share of `sink_buffer_max_records` (rounded up, so at least 1)."""
        return -(-self.sink_buffer_max_records // self.sink_partitions)

    @property
    def sink_retention_ms(self) -> int:
        """`sink_retention_s` in epoch-ms units, as scores are."""
        return round(self.sink_retention_s * 1000)


class DlqToolSettings(KafkaConnection):
    """``python -m sinks.dlq``: reads the dead-letter topic, replays to the input topics."""

    dlq_read_timeout_s: float = Field(
        30.0,
        gt=0,
        description="How long (s) the dead-letter tool may take to read the DLQ topic to its end.",
    )
    dlq_replay_timeout_s: float = Field(
        30.0,
        gt=0,
        description="How long (s) the dead-letter tool waits for the broker to confirm replayed messages.",
    )
