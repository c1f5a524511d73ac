"""Builders of raw Kafka messages for flow tests."""

from __future__ import annotations

from sources.models import ActivityEvent, EventType, SensorReading
from tests.kafka_batches import RawMessage, as_batches

__all__ = ["ACTIVITY", "IOT", "activity_event", "activity_message", "as_batches", "iot_message", "reading"]

IOT = "iot.readings"
ACTIVITY = "activity.events"


def reading(device: str, t: int, temperature: float, humidity: float, pressure: float) -> bytes:
    return SensorReading(
        device_id=device, event_time=t, temperature=temperature, humidity=humidity, pressure=pressure
    ).to_json()


def iot_message(
    value: bytes | None, offset: int = 0, partition: int = 0, key: bytes | None = b"k"
) -> RawMessage:
    return RawMessage(IOT, partition, offset, key, value)


def activity_event(
    i: int, user: str, kind: EventType, page: str, t: int, amount: float | None = None
) -> bytes:
    return ActivityEvent(
        event_id=f"e-{i}",
        user_id=user,
        session_id=f"s-{user}",
        type=kind,
        page=page,
        event_time=t,
        amount=amount,
    ).to_json()


def activity_message(value: bytes | None, offset: int = 0, partition: int = 0) -> RawMessage:
    return RawMessage(ACTIVITY, partition, offset, b"u", value)
