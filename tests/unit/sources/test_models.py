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


# --- good and bad examples of every model -------------------------------------


@pytest.mark.parametrize(
    "good",
    [
        {},
        {"temperature": -90.0, "humidity": 0.0, "pressure": 300.0},
        {"temperature": 150.0, "humidity": 100.0, "pressure": 1200.0},
        {"temperature": 21, "humidity": 40, "pressure": 1013},  # JSON integers are numbers too
        {"event_time": 946_684_800_000},
        {"event_time": 4_102_444_800_000},
        {"device_id": "A.b_c-9" * 9},  # 63 characters of the key-safe alphabet
    ],
)
def test_possible_readings_are_valid(good):
    r = SensorReading(**reading(**good))
    assert SensorReading.from_json(r.to_json()) == r


@pytest.mark.parametrize(
    "bad",
    [
        {"temperature": -90.01},
        {"pressure": 1200.5},
        {"humidity": float("-inf")},
        {"event_time": 1_700_000_000},  # seconds, not milliseconds
        {"event_time": 1_700_000_000_000.0},
        {"event_time": "1700000000000"},
        {"device_id": "a" * 65},
        {"device_id": "dev 1"},
        {"device_id": None},
        {"pressure": None},
    ],
)
def test_more_impossible_readings_are_rejected(bad):
    with pytest.raises(ValidationError):
        SensorReading(**reading(**bad))


def test_a_reading_missing_a_metric_is_rejected_from_json():
    with pytest.raises(ValidationError, match="pressure"):
        SensorReading.from_json(
            b'{"device_id":"d","event_time":1700000000000,"temperature":1.0,"humidity":2.0}'
        )


def test_readings_are_immutable():
    r = SensorReading(**reading())
    with pytest.raises(ValidationError):
        r.temperature = 30.0


def activity(**overrides) -> dict:
    return {
        "event_id": "s-1-0",
        "user_id": "user-00001",
        "session_id": "s-1",
        "type": EventType.PAGE_VIEW,
        "page": "/products/0001",
        "event_time": T0,
    } | overrides


@pytest.mark.parametrize(
    "good",
    [
        {},
        {"type": EventType.CLICK},
        {"type": EventType.ADD_TO_CART},
        {"type": EventType.PURCHASE, "amount": 0.01},
        {"type": EventType.PURCHASE, "amount": 1_000_000.0},
        {"page": "/"},
        {"page": "/a/b.c_d-e/"},
        {"amount": None},
    ],
)
def test_possible_activity_events_are_valid(good):
    e = ActivityEvent(**activity(**good))
    assert ActivityEvent.from_json(e.to_json()) == e


def test_activity_json_is_compact_and_omits_a_missing_amount():
    raw = ActivityEvent(**activity()).to_json()
    assert b" " not in raw
    assert b"amount" not in raw


@pytest.mark.parametrize(
    "bad",
    [
        {"event_id": ""},
        {"event_id": "e" * 65},
        {"user_id": "user:1"},
        {"session_id": ""},
        {"type": "refund"},
        {"type": 1},
        {"page": "products/1"},  # not a path
        {"page": "/a b"},
        {"page": "/" + "p" * 200},
        {"event_time": -1},
        {"schema_version": 0},
        {"referrer": "/"},
        {"type": EventType.PURCHASE, "amount": 0.0},
        {"type": EventType.PURCHASE, "amount": -5.0},
        {"type": EventType.PURCHASE, "amount": 1_000_000.01},
        {"type": EventType.PURCHASE, "amount": float("nan")},
        {"type": EventType.PURCHASE, "amount": "9.99"},
    ],
)
def test_impossible_activity_events_are_rejected(bad):
    with pytest.raises(ValidationError):
        ActivityEvent(**activity(**bad))


def test_an_unknown_event_type_is_rejected_from_json():
    raw = (
        b'{"event_id":"e","user_id":"u","session_id":"s","type":"refund",'
        b'"page":"/","event_time":1700000000000}'
    )
    with pytest.raises(ValidationError, match="type"):
        ActivityEvent.from_json(raw)


def dead_letter(**overrides) -> dict:
    return {
        "payload": '{"broken":',
        "topic": "iot.readings",
        "partition": 0,
        "offset": 7,
        "stage": "decode",
        "error_type": "ValidationError",
        "error_message": "Invalid JSON",
        "failed_at": T0,
    } | overrides


@pytest.mark.parametrize(
    "good",
    [
        {},
        {"payload": None},  # a tombstone
        {"key": "dev-1", "partition": None, "offset": None},
        {"payload": "/w==", "payload_encoding": PayloadEncoding.BASE64},
        {"error_message": "x" * 4096},
    ],
)
def test_possible_dead_letters_are_valid(good):
    dl = DeadLetter(**dead_letter(**good))
    assert DeadLetter.from_json(dl.to_json()) == dl


@pytest.mark.parametrize(
    "bad",
    [
        {"error_message": "x" * 4097},
        {"payload_encoding": "hex"},
        {"partition": "0"},
        {"offset": 1.5},
        {"failed_at": "now"},
        {"schema_version": 2},
        {"retries": 3},
        {"stage": None},
    ],
)
def test_impossible_dead_letters_are_rejected(bad):
    with pytest.raises(ValidationError):
        DeadLetter(**dead_letter(**bad))


def test_a_tombstone_dead_letter_round_trips_through_json():
    # Compact JSON drops None fields, so a missing payload must read back as a tombstone.
    dl = DeadLetter.capture(
        value=None,
        key=b"k",
        topic="t",
        partition=0,
        offset=2,
        stage="decode",
        error=ValueError(),
        failed_at=T0,
    )
    assert b"payload" not in dl.to_json().replace(b"payload_encoding", b"")
    assert DeadLetter.from_json(dl.to_json()) == dl


@pytest.mark.parametrize("missing", ["topic", "stage", "error_type", "error_message", "failed_at"])
def test_a_dead_letter_missing_a_required_field_is_rejected(missing):
    fields = dead_letter()
    del fields[missing]
    with pytest.raises(ValidationError, match=missing):
        DeadLetter(**fields)


def test_dead_letter_keeps_utf8_text_verbatim_and_a_tombstone_as_none():
    text = DeadLetter.capture(
        value='{"temperature":"hot"} °C'.encode(),
        key=None,
        topic="iot.readings",
        partition=0,
        offset=1,
        stage="validate",
        error=ValueError("bad"),
        failed_at=T0,
    )
    assert text.payload == '{"temperature":"hot"} °C'
    assert text.payload_encoding is PayloadEncoding.UTF8
    assert text.original_key() is None
    tombstone = DeadLetter.capture(
        value=None,
        key=b"k",
        topic="t",
        partition=0,
        offset=2,
        stage="decode",
        error=ValueError(),
        failed_at=T0,
    )
    assert tombstone.payload is None
    assert tombstone.original_value() is None


def test_dead_letter_truncates_a_huge_error_message_instead_of_failing():
    dl = DeadLetter.capture(
        value=b"x",
        key=None,
        topic="t",
        partition=None,
        offset=None,
        stage="process",
        error=RuntimeError("y" * 10_000),
        failed_at=T0,
    )
    assert len(dl.error_message) == 4096


def test_dead_letter_with_corrupt_base64_fails_clearly_on_restore():
    dl = DeadLetter(**dead_letter(payload="not base64!", payload_encoding=PayloadEncoding.BASE64))
    with pytest.raises(ValueError, match="base64"):
        dl.original_value()
