"""Settings of the local infrastructure (ports come from the connection settings)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from config.settings import KafkaConnection, Port, RedisConnection


class LocalInfraSettings(KafkaConnection, RedisConnection):
    """Where `infra.local` keeps state and how it sizes the services."""

    state_dir: Path = Field(Path(".run"), description="Folder for local service data, logs and pid files.")
    kafka_controller_port: Port = Field(9093, description="Local KRaft controller port.")
    kafka_heap: str = Field("768m", pattern=r"^\d+[mMgG]$", description="Local broker JVM heap, e.g. 768m.")
    cache_dir: Path = Field(
        Path("~/.cache/realtime-dashboard"),
        description="Cache of the broker's jars, shared by every clone.",
    )
    service_start_timeout_s: float = Field(
        120.0, gt=0, description="How long to wait for a service to be ready."
    )


class StackSettings(LocalInfraSettings):
    """How `make up` (``infra.stack``) runs the whole stack: commands, ports, recovery.

    The ports, host and recovery settings below are also read by the processes themselves
    (their own settings classes carry the same ``PIPELINE_`` names); a test checks that
    every variable defined twice has one default, so the runner and the process agree.
    """

    recovery_dir: Path = Field(
        Path(".run/recovery"), description="Folder of the dataflow's recovery partitions (SQLite files)."
    )
    recovery_partitions: int = Field(
        2,
        ge=1,
        le=256,
        description="Recovery partitions created in PIPELINE_RECOVERY_DIR (fixed once created).",
    )
    # Whole seconds: bytewax.run parses -s and -b with int().
    snapshot_interval_s: int = Field(
        10, gt=0, description="Seconds between the dataflow's recovery snapshots (bytewax.run -s)."
    )
    backup_interval_s: int = Field(
        0, ge=0, description="Seconds old snapshots are kept for backups (bytewax.run -b)."
    )
    flow_workers: int = Field(1, ge=1, le=64, description="Worker threads of the dataflow (bytewax.run -w).")
    flow_metrics_port: Port = Field(9100, description="Port of the dataflow's Prometheus metrics.")
    producer_metrics_port: Port = Field(
        9101, description="Port of a producer's Prometheus metrics (the IoT producer's in make up)."
    )
    activity_producer_metrics_port: Port = Field(
        9102,
        description="Metrics port make up gives the activity producer (its PIPELINE_PRODUCER_METRICS_PORT).",
    )
    dash_host: str = Field("127.0.0.1", description="Address the dashboard and API listen on.")
    dash_port: Port = Field(8050, description="Port of the dashboard, its REST API and /metrics.")
    prometheus_port: Port = Field(9090, description="Port of the local Prometheus of make up-monitoring.")
    stack_ready_timeout_s: float = Field(
        180.0, gt=0, description="How long make up waits for a process's dependencies and readiness."
    )
