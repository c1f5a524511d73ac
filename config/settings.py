"""The settings base every process builds on.

Every process has one `BaseSettings` subclass in its own package's
``settings.py`` (``sources``, ``flows``, ``dashapp``, ``infra``), composed from
the connection groups below. All read environment variables with the
``PIPELINE_`` prefix (and an optional ``.env`` file); `load_settings` turns a
validation error into a start-up failure that names the variable.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any, TypeVar
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "PIPELINE_"

Port = Annotated[int, Field(ge=1, le=65535)]


class PipelineSettings(BaseSettings):
    """Base class: ``PIPELINE_`` prefix, ``.env`` support, unknown variables ignored."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        extra="ignore",
        frozen=True,
        validate_default=True,
    )


class KafkaConnection(PipelineSettings):
    """Where the broker is and what the topics are called (DESIGN.md, Kafka contract)."""

    kafka_bootstrap_servers: str = Field(
        "127.0.0.1:9092", description="Kafka bootstrap servers, comma-separated host:port."
    )
    iot_topic: str = Field("iot.readings", description="Topic of IoT sensor readings.")
    activity_topic: str = Field("activity.events", description="Topic of website activity events.")
    dlq_topic: str = Field("pipeline.dlq", description="Dead-letter topic.")
    iot_partitions: int = Field(3, ge=1, le=1024, description="Partitions of the IoT topic.")
    activity_partitions: int = Field(3, ge=1, le=1024, description="Partitions of the activity topic.")
    dlq_partitions: int = Field(1, ge=1, le=1024, description="Partitions of the dead-letter topic.")
    kafka_security_protocol: str = Field(
        "PLAINTEXT", description="Kafka security.protocol: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL."
    )
    kafka_sasl_mechanism: str | None = Field(
        None, description="Kafka sasl.mechanism, e.g. PLAIN or SCRAM-SHA-512."
    )
    kafka_sasl_username: str | None = Field(None, description="Kafka SASL user name.")
    kafka_sasl_password: SecretStr | None = Field(None, description="Kafka SASL password.")

    @field_validator("kafka_bootstrap_servers")
    @classmethod
    def _host_ports(cls, value: str) -> str:
        for server in value.split(","):
            host, sep, port = server.strip().rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"expected host:port[,host:port...], got {value!r}")
        return value

    @field_validator("iot_topic", "activity_topic", "dlq_topic")
    @classmethod
    def _topic_name(cls, value: str) -> str:
        # Kafka's own rule for legal topic names.
        if (
            not value
            or len(value) > 249
            or value in {".", ".."}
            or any(not (c.isascii() and (c.isalnum() or c in "._-")) for c in value)
        ):
            raise ValueError(f"not a legal Kafka topic name: {value!r}")
        return value

    @field_validator("kafka_security_protocol")
    @classmethod
    def _protocol(cls, value: str) -> str:
        allowed = {"PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"}
        if value.upper() not in allowed:
            raise ValueError(f"must be one of {sorted(allowed)}")
        return value.upper()

    def kafka_client_config(self) -> dict[str, str | int | float | bool]:
        """Librdkafka properties shared by every client (connection and security)."""
        conf: dict[str, str | int | float | bool] = {
            "bootstrap.servers": self.kafka_bootstrap_servers,
            "security.protocol": self.kafka_security_protocol,
        }
        if self.kafka_sasl_mechanism:
            conf["sasl.mechanism"] = self.kafka_sasl_mechanism
        if self.kafka_sasl_username is not None:
            conf["sasl.username"] = self.kafka_sasl_username
        if self.kafka_sasl_password is not None:
            conf["sasl.password"] = self.kafka_sasl_password.get_secret_value()
        return conf


class RedisConnection(PipelineSettings):
    """Where Redis is and how our keys are laid out in it (DESIGN.md, Redis contract)."""

    redis_url: SecretStr = Field(
        SecretStr("redis://127.0.0.1:6379/0"),
        description="Redis URL, redis://[:password@]host:port/db (a secret: it may hold the password).",
    )
    redis_prefix: str = Field("rtd:", description="Prefix of every key the pipeline writes.")

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: SecretStr) -> SecretStr:
        parts = urlsplit(value.get_secret_value())
        if parts.scheme not in {"redis", "rediss", "unix"}:
            raise ValueError("must start with redis://, rediss:// or unix://")
        if parts.scheme != "unix":
            try:
                port = parts.port
            except ValueError as exc:
                raise ValueError(f"bad port: {exc}") from None
            if not parts.hostname or (port is not None and not 0 < port < 65536):
                raise ValueError("must name a host, e.g. redis://127.0.0.1:6379/0")
        return value

    @field_validator("redis_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if not value or len(value) > 64 or any(c.isspace() or c in "*?[]" for c in value):
            raise ValueError("must be 1-64 characters without spaces or glob characters")
        return value


S = TypeVar("S", bound=BaseSettings)


class SettingsError(SystemExit):
    """Start-up stopped by an invalid setting; the message names each variable."""


def describe_error(cls: type[BaseSettings], error: ValidationError) -> str:
    """One line per invalid setting, naming its environment variable."""
    prefix = cls.model_config.get("env_prefix", ENV_PREFIX)
    lines = []
    for err in error.errors():
        field = str(err["loc"][0]) if err["loc"] else "?"
        value = err.get("input")
        shown = "***" if "password" in field or field == "redis_url" else repr(value)
        lines.append(f"invalid setting {prefix}{field.upper()}={shown}: {err['msg']}")
    return "\n".join(lines)


def load_settings(cls: type[S], **overrides: Any) -> S:
    """Build `cls` from the environment; exit with a message naming the variable when invalid."""
    try:
        return cls(**overrides)
    except ValidationError as exc:
        print(describe_error(cls, exc), file=sys.stderr)
        raise SettingsError(2) from None
