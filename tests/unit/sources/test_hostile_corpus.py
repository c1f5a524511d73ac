"""Every hostile message is rejected by the wire models with a ValidationError; its dead letter keeps it."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from sources.models import (
    MAX_EVENT_BYTES,
    ActivityEvent,
    DeadLetter,
    EventType,
    PayloadEncoding,
    SensorReading,
)
from tests.hostile import (
    ACCEPTED_CASES,
    BAD_CASES,
    CASES,
    Expect,
    HostileCase,
    Topic,
    bad_kinds,
    cases_for,
    good_message,
)

T_FAILED = 1_700_000_123_456


def rejection(case: HostileCase) -> ValidationError:
    # pytest.raises lets any other exception type through, failing the test.
    with pytest.raises(ValidationError) as caught:
        case.decoder.from_json(case.value)  # type: ignore[arg-type]  # None: the tombstone case
    return caught.value


def test_corpus_has_at_least_40_kinds_of_bad_message_for_each_topic():
    assert len(bad_kinds()) >= 40
    for topic in Topic:
        assert len({c.kind for c in cases_for(topic, Expect.DEAD_LETTER)}) >= 40
    assert len({c.name for c in CASES}) == len(CASES), "case names must be unique"


@pytest.mark.parametrize("case", BAD_CASES, ids=str)
def test_every_bad_message_is_rejected_with_a_validation_error(case):
    error = rejection(case)
    assert error.error_count() >= 1


@pytest.mark.parametrize("case", ACCEPTED_CASES, ids=str)
def test_odd_but_valid_messages_are_accepted(case):
    decoded = case.decoder.from_json(case.value)
    assert decoded.to_json()  # re-serialises
    if case.expect is Expect.DUPLICATE:
        assert case.value == case.duplicate_of
        assert decoded == case.decoder.from_json(good_message(case.topic)[1])


@pytest.mark.parametrize("case", BAD_CASES, ids=str)
def test_dead_letter_of_every_bad_message_round_trips_through_its_json(case):
    dl = DeadLetter.capture(
        value=case.value,
        key=case.key,
        topic=f"{case.topic}.topic",
        partition=1,
        offset=99,
        stage="decode",
        error=rejection(case),
        failed_at=T_FAILED,
    )
    back = DeadLetter.from_json(dl.to_json())
    assert back == dl
    assert back.original_value() == case.value
    assert back.original_key() == case.key
    assert (back.error_type, back.stage, back.topic) == ("ValidationError", "decode", f"{case.topic}.topic")
    assert 0 < len(back.error_message) <= 4096


def test_binary_junk_travels_as_base64_in_its_dead_letter():
    [junk] = [c for c in BAD_CASES if c.name == "iot-binary_junk"]
    dl = DeadLetter.capture(
        value=junk.value,
        key=junk.key,
        topic="t",
        partition=0,
        offset=0,
        stage="decode",
        error=rejection(junk),
        failed_at=T_FAILED,
    )
    assert (dl.payload_encoding, dl.key_encoding) == (PayloadEncoding.BASE64, PayloadEncoding.BASE64)


@pytest.mark.parametrize("depth", [1_000, 10_000, 100_000])
def test_the_parser_stops_deep_nesting_with_a_validation_error_even_without_the_size_limit(depth):
    # model_validate_json skips from_json's size check: the parser's own depth limit must hold.
    raw = b'{"device_id":' + b"[" * depth + b"]" * depth + b"}"
    with pytest.raises(ValidationError, match="recursion limit"):
        SensorReading.model_validate_json(raw)


def test_a_message_over_the_size_limit_is_rejected_before_parsing():
    raw = b'{"device_id":"' + b"x" * MAX_EVENT_BYTES + b'"}'
    with pytest.raises(ValidationError) as caught:
        ActivityEvent.from_json(raw)
    [err] = caught.value.errors()
    assert err["type"] == "message_too_large"
    assert err["ctx"] == {"size": len(raw), "limit": MAX_EVENT_BYTES}
    assert len(str(caught.value)) < 300, "the error must not echo the payload"


def test_the_largest_valid_event_is_well_under_the_size_limit():
    # Every string at its maximum length, the event id in characters JSON escapes the longest.
    biggest = ActivityEvent(
        event_id="\U0001f525" * 64,
        user_id="u" * 64,
        session_id="s" * 64,
        type=EventType.ADD_TO_CART,
        page="/" + "p" * 199,
        event_time=4_102_444_800_000,
    )
    escaped = biggest.model_dump_json().encode().replace("\U0001f525".encode(), b"\\ud83d\\udd25")
    assert len(escaped) * 8 < MAX_EVENT_BYTES
    assert ActivityEvent.from_json(escaped) == biggest


def test_a_dead_letter_is_not_bound_by_the_event_size_limit():
    big = b"x" * (4 * MAX_EVENT_BYTES)
    dl = DeadLetter.capture(
        value=big,
        key=None,
        topic="t",
        partition=None,
        offset=None,
        stage="decode",
        error=ValueError("too big"),
        failed_at=T_FAILED,
    )
    assert DeadLetter.from_json(dl.to_json()).original_value() == big
