"""The wire format: the only definition of what travels through Kafka.

Every Kafka value in the pipeline is one of these models serialised as compact
JSON. Producers build them, the dataflow validates raw bytes against them once
(at its edge), and the dead-letter tooling reads `DeadLetter` back.

Conventions:
    * Event time is UTC epoch milliseconds (`int`), the event's own timestamp.
    * Units: temperature in °C, relative humidity in %, pressure in hPa.
    * Ranges reject physically impossible values only; real outliers (the
      anomalies the pipeline must detect) are valid.
"""

from __future__ import annotations

import base64
import binascii
from enum import StrEnum
from typing import Annotated, ClassVar, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

SCHEMA_VERSION: Literal[1] = 1

# 2000-01-01 and 2100-01-01 in epoch ms: anything outside is a broken clock,
# not an event we can place in a window.
MIN_EVENT_TIME_MS = 946_684_800_000
MAX_EVENT_TIME_MS = 4_102_444_800_000

Identifier = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")]
"""Ids end up inside Redis keys, so they are restricted to a key-safe alphabet."""

EventTimeMs = Annotated[int, Field(ge=MIN_EVENT_TIME_MS, le=MAX_EVENT_TIME_MS)]

MAX_EVENT_BYTES = 16_384
"""Largest reading or activity event `from_json` parses (the largest valid one is under 800 bytes).

Bigger values are rejected before parsing: validating a megabyte of unknown
fields costs about a second of CPU (one error each), which one hostile producer
could repeat at will. Dead letters are exempt: they carry such values whole."""


class Metric(StrEnum):
    """The physical quantities a sensor reports."""

    TEMPERATURE = "temperature"
    HUMIDITY = "humidity"
    PRESSURE = "pressure"


class EventType(StrEnum):
    """Steps of the shopping funnel, in funnel order."""

    PAGE_VIEW = "page_view"
    CLICK = "click"
    ADD_TO_CART = "add_to_cart"
    PURCHASE = "purchase"


class _WireModel(BaseModel):
    # strict: "21.5" is not a temperature; forbid: a typo'd field is an error,
    # not silently ignored data; no NaN/inf: they poison every aggregate.
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, allow_inf_nan=False)

    max_json_bytes: ClassVar[int | None] = None
    """Size limit (bytes) of a value `from_json` parses; None: no limit."""

    def to_json(self) -> bytes:
        """Serialise as compact JSON bytes (the Kafka value)."""
        return self.model_dump_json(exclude_none=True).encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> Self:
        """Parse and validate one Kafka value; raises `pydantic.ValidationError`.

        Raises `pydantic.ValidationError` (and nothing else) for any input,
        including None (a tombstone), oversized values (type ``message_too_large``)
        and deep nesting (the parser's recursion limit).
        """
        limit = cls.max_json_bytes
        if limit is not None and isinstance(data, bytes | bytearray | str) and len(data) > limit:
            raise ValidationError.from_exception_data(
                cls.__name__,
                [
                    InitErrorDetails(
                        type=PydanticCustomError(
                            "message_too_large",
                            "message of {size} bytes is larger than the limit of {limit} bytes",
                            {"size": len(data), "limit": limit},
                        ),
                        loc=(),
                        input=f"<{len(data)} bytes>",  # not the megabytes themselves
                    )
                ],
                input_type="json",
            )
        return cls.model_validate_json(data)


class SensorReading(_WireModel):
    """One IoT device's measurement at one instant."""

    max_json_bytes: ClassVar[int | None] = MAX_EVENT_BYTES

    schema_version: Literal[1] = SCHEMA_VERSION
    device_id: Identifier
    event_time: EventTimeMs
    temperature: Annotated[float, Field(ge=-90.0, le=150.0)]
    """°C; the record lows and highs of Earth's surface plus machinery headroom."""
    humidity: Annotated[float, Field(ge=0.0, le=100.0)]
    """Relative humidity, %."""
    pressure: Annotated[float, Field(ge=300.0, le=1200.0)]
    """hPa; above Everest's summit to deep mines."""

    def value(self, metric: Metric) -> float:
        """The reading's value for `metric` in its unit."""
        return float(getattr(self, metric.value))


class ActivityEvent(_WireModel):
    """One user interaction on the website."""

    max_json_bytes: ClassVar[int | None] = MAX_EVENT_BYTES

    schema_version: Literal[1] = SCHEMA_VERSION
    event_id: Annotated[str, Field(min_length=1, max_length=64)]
    user_id: Identifier
    session_id: Identifier
    type: EventType
    page: Annotated[str, Field(min_length=1, max_length=200, pattern=r"^/[A-Za-z0-9_.\-/]*$")]
    event_time: EventTimeMs
    amount: Annotated[float, Field(gt=0.0, le=1_000_000.0)] | None = None
    """Purchase amount in the shop's currency; present on purchases only."""

    @model_validator(mode="after")
    def _amount_only_on_purchases(self) -> Self:
        if (self.type is EventType.PURCHASE) != (self.amount is not None):
            raise ValueError("amount is required on purchases and forbidden on other events")
        return self


class PayloadEncoding(StrEnum):
    """How raw bytes are carried inside a JSON text field."""

    UTF8 = "utf-8"
    BASE64 = "base64"


def bytes_to_text(data: bytes) -> tuple[str, PayloadEncoding]:
    """Carry `data` as text: verbatim when it is UTF-8, base64 otherwise."""
    try:
        return data.decode("utf-8"), PayloadEncoding.UTF8
    except UnicodeDecodeError:
        return base64.b64encode(data).decode("ascii"), PayloadEncoding.BASE64


def text_to_bytes(text: str, encoding: PayloadEncoding) -> bytes:
    """Inverse of `bytes_to_text`."""
    if encoding is PayloadEncoding.UTF8:
        return text.encode("utf-8")
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error as exc:
        raise ValueError(f"invalid base64 payload: {exc}") from exc


class DeadLetter(_WireModel):
    """A message the pipeline could not process, with everything needed to replay it."""

    schema_version: Literal[1] = SCHEMA_VERSION
    payload: str | None = None
    """The original value: text where it is UTF-8, base64 otherwise; None for a tombstone.

    It defaults to None because `to_json` leaves None fields out: a tombstone's dead
    letter has no ``payload`` on the wire."""
    payload_encoding: PayloadEncoding = PayloadEncoding.UTF8
    key: str | None = None
    key_encoding: PayloadEncoding = PayloadEncoding.UTF8
    topic: str
    partition: int | None = None
    offset: int | None = None
    stage: str
    """Pipeline stage that failed, e.g. ``decode``, ``validate``, ``process``."""
    error_type: str
    error_message: Annotated[str, Field(max_length=4096)]
    failed_at: int
    """When it failed, UTC epoch ms."""

    @classmethod
    def capture(
        cls,
        *,
        value: bytes | None,
        key: bytes | None,
        topic: str,
        partition: int | None,
        offset: int | None,
        stage: str,
        error: BaseException,
        failed_at: int,
    ) -> DeadLetter:
        """Wrap a failed message and the error it raised."""
        payload, payload_encoding = (None, PayloadEncoding.UTF8) if value is None else bytes_to_text(value)
        key_text, key_encoding = (None, PayloadEncoding.UTF8) if key is None else bytes_to_text(key)
        return cls(
            payload=payload,
            payload_encoding=payload_encoding,
            key=key_text,
            key_encoding=key_encoding,
            topic=topic,
            partition=partition,
            offset=offset,
            stage=stage,
            error_type=type(error).__name__,
            error_message=str(error)[:4096],
            failed_at=failed_at,
        )

    def original_value(self) -> bytes | None:
        """The original message value as bytes."""
        return None if self.payload is None else text_to_bytes(self.payload, self.payload_encoding)

    def original_key(self) -> bytes | None:
        """The original message key as bytes."""
        return None if self.key is None else text_to_bytes(self.key, self.key_encoding)
