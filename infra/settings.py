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
