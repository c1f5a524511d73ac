"""The wire models accept what sensors and users can produce and reject the impossible."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from sources.models import ActivityEvent, DeadLetter, EventType, PayloadEncoding, SensorReading

T0 = 1_700_000_000_000


def reading(**overrides) -> dict:
    return {
        "device_id": "dev-1",
        "event_time": T0,
        "temperature": 21.5,
        "humidity": 40.0,
        "pressure": 1013.2,
    } | overrides


def test_reading_round_trips_as_compact_json():
    r = SensorReading(**reading())
    raw = r.to_json()
    assert b" " not in raw
    assert SensorReading.from_json(raw) == r


def test_an_extreme_but_possible_outlier_is_valid():
    assert SensorReading(**reading(temperature=85.0, pressure=950.0)).temperature == 85.0


@pytest.mark.parametrize(
    "bad",
    [
        {"temperature": 500.0},
        {"humidity": -1.0},
        {"humidity": 100.5},
        {"pressure": 0.0},
        {"temperature": float("nan")},
        {"temperature": float("inf")},
        {"temperature": "21.5"},
        {"event_time": 1},
        {"event_time": 10**15},
        {"device_id": "a:b"},
        {"device_id": ""},
        {"schema_version": 2},
        {"unexpected": 1},
    ],
)
def test_impossible_readings_are_rejected(bad):
    with pytest.raises(ValidationError):
        SensorReading(**reading(**bad))


def test_purchase_needs_an_amount_and_other_events_forbid_it():
    base = {"event_id": "e1", "user_id": "u1", "session_id": "s1", "page": "/p/1", "event_time": T0}
    assert ActivityEvent(**base, type=EventType.PURCHASE, amount=19.99).amount == 19.99
    with pytest.raises(ValidationError, match="amount"):
        ActivityEvent(**base, type=EventType.PURCHASE)
    with pytest.raises(ValidationError, match="amount"):
        ActivityEvent(**base, type=EventType.CLICK, amount=1.0)


def test_activity_event_type_parses_from_json():
    raw = (
        b'{"event_id":"e","user_id":"u","session_id":"s","type":"add_to_cart",'
        b'"page":"/","event_time":1700000000000}'
    )
    assert ActivityEvent.from_json(raw).type is EventType.ADD_TO_CART


def test_dead_letter_keeps_binary_payloads_as_base64_and_restores_them():
    dl = DeadLetter.capture(
        value=b"\xff\xfe junk",
        key=b"dev-1",
        topic="iot.readings",
        partition=2,
        offset=41,
        stage="decode",
        error=ValueError("not JSON"),
        failed_at=T0,
    )
    assert dl.payload_encoding is PayloadEncoding.BASE64
    assert dl.key_encoding is PayloadEncoding.UTF8
    back = DeadLetter.from_json(dl.to_json())
    assert back.original_value() == b"\xff\xfe junk"
    assert back.original_key() == b"dev-1"
    assert (back.error_type, back.stage, back.partition, back.offset) == ("ValueError", "decode", 2, 41)
