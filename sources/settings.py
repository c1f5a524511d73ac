"""Settings of the producers (``python -m sources.produce iot|activity``).

One class for both commands: the Kafka connection, how fast and how much to send,
how the simulators behave and how the Kafka producer batches. Built once in
`sources.produce` and passed down; the simulators themselves take plain config
dataclasses, so tests build them without any environment.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from config.settings import KafkaConnection

Compression = Literal["none", "gzip", "snappy", "lz4", "zstd"]
Partitioner = Literal["murmur2_random", "murmur2", "consistent_random", "consistent", "fnv1a_random", "fnv1a"]
ClockMode = Literal["wall", "simulated"]


class ProducerSettings(KafkaConnection):
    """Everything a producer process needs; every field is a ``PIPELINE_`` variable."""

    # --- how fast, how much -------------------------------------------------
    iot_rate: float = Field(
        20.0,
        gt=0,
        le=1_000_000,
        description=(
            "IoT readings per second, all devices together: the live sending rate and, with the simulated "
            "clock, the spacing of event times."
        ),
    )
    activity_rate: float = Field(
        50.0,
        gt=0,
        le=1_000_000,
        description=(
            "Website events per second: the live sending rate and, with the simulated clock, the spacing "
            "of event times."
        ),
    )
    producer_count: int | None = Field(
        None, ge=1, description="Stop after this many events; empty = run until SIGINT/SIGTERM."
    )
    producer_full_speed: bool | None = Field(
        None,
        description=(
            "Send as fast as possible instead of at the rate; empty = only when a count is set "
            "(a bounded run is a load, not a live feed)."
        ),
    )
    producer_clock: ClockMode = Field(
        "wall",
        description=(
            "Event-time source: wall (now, for live dashboards) or simulated (starts at "
            "PIPELINE_PRODUCER_START_MS and advances 1/rate per event, however fast events are sent)."
        ),
    )
    producer_start_ms: int | None = Field(
        None,
        ge=946_684_800_000,
        le=4_102_444_800_000,
        description="Start of the simulated clock, UTC epoch ms; empty = now.",
    )
    producer_seed: int = Field(
        42, ge=0, description="Seed of the simulators: the same seed and clock give the same events."
    )

    # --- IoT simulator ------------------------------------------------------
    iot_devices: int = Field(10, ge=1, le=100_000, description="Number of simulated IoT devices.")
    iot_cycle_period_s: float = Field(
        300.0, gt=0, description="Period of each device's sinusoidal cycle, seconds."
    )
    iot_noise_scale: float = Field(
        1.0, ge=0, le=100, description="Multiplier of every metric's Gaussian noise (0 = noise-free)."
    )
    iot_anomaly_rate: float = Field(
        0.005,
        ge=0,
        le=0.5,
        description="Probability that a reading starts a spike or dip, per metric (each lasts 1-3 readings).",
    )
    iot_shift_rate_per_hour: float = Field(
        0.5, ge=0, description="Level shifts per device-metric per hour (Poisson rate)."
    )
    iot_drift_rate_per_hour: float = Field(
        1.0,
        ge=0,
        description="Drift episodes (slow linear trends) per device-metric per hour (Poisson rate).",
    )

    # --- activity simulator -------------------------------------------------
    activity_users: int = Field(1000, ge=1, le=10_000_000, description="Number of simulated website users.")
    activity_sessions: int = Field(
        100, ge=1, le=100_000, description="Concurrently open user sessions (at most the number of users)."
    )
    activity_pages: int = Field(
        200, ge=1, le=100_000, description="Number of product pages in the catalogue."
    )
    activity_zipf_exponent: float = Field(
        1.1, gt=0, le=5, description="Zipf exponent of page popularity (higher = heavier head)."
    )

    # --- Kafka producer -----------------------------------------------------
    producer_batch_size_bytes: int = Field(
        16_384, ge=1, le=2_147_483_647, description="Kafka batch.size: most bytes per partition batch."
    )
    producer_linger_ms: float = Field(
        10.0, ge=0, le=900_000, description="Kafka linger.ms: how long a batch waits to fill up."
    )
    producer_compression: Compression = Field("lz4", description="Kafka compression.type of batches.")
    producer_partitioner: Partitioner = Field(
        "murmur2_random",
        description="Key to partition mapping; murmur2_random is the Java client's, so every client agrees.",
    )
    producer_delivery_timeout_s: float = Field(
        120.0,
        gt=0,
        le=3600,
        description="Kafka message.timeout.ms in seconds: when an undelivered event fails.",
    )
    producer_flush_timeout_s: float = Field(
        30.0, ge=0, description="On stop, how long to wait for events still in flight, seconds."
    )
    producer_metrics_host: str = Field(
        "127.0.0.1", description="Address of the Prometheus metrics endpoint (0.0.0.0 in containers)."
    )
    producer_metrics_port: int = Field(
        9101, ge=0, le=65535, description="Port of the Prometheus metrics endpoint; 0 disables it."
    )
    producer_progress_interval_s: float = Field(
        10.0, gt=0, description="Seconds between progress log lines when stderr is not a terminal."
    )

    def producer_config(self) -> dict[str, str | int | float | bool]:
        """Librdkafka properties of the pipeline's producers: connection, safety, batching."""
        return {
            **self.kafka_client_config(),
            # Idempotence makes retries exactly-once per partition and implies acks=all and
            # max.in.flight <= 5; acks is spelled out because it is the durability promise.
            "enable.idempotence": True,
            "acks": "all",
            "batch.size": self.producer_batch_size_bytes,
            "linger.ms": self.producer_linger_ms,
            "compression.type": self.producer_compression,
            "partitioner": self.producer_partitioner,
            "message.timeout.ms": int(self.producer_delivery_timeout_s * 1000),
        }
