"""Builders of raw Kafka messages for flow tests."""

from __future__ import annotations

from bytewax.connectors.kafka import KafkaSourceMessage

from sources.models import ActivityEvent, EventType, SensorReading

IOT = "iot.readings"
ACTIVITY = "activity.events"


def reading(device: str, t: int, temperature: float, humidity: float, pressure: float) -> bytes:
    return SensorReading(
        device_id=device, event_time=t, temperature=temperature, humidity=humidity, pressure=pressure
    ).to_json()


def iot_message(
    value: bytes | None, offset: int = 0, partition: int = 0, key: bytes | None = b"k"
) -> KafkaSourceMessage:
    return KafkaSourceMessage(key=key, value=value, topic=IOT, partition=partition, offset=offset)


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


def activity_message(value: bytes | None, offset: int = 0, partition: int = 0) -> KafkaSourceMessage:
    return KafkaSourceMessage(key=b"u", value=value, topic=ACTIVITY, partition=partition, offset=offset)
