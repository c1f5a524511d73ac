"""Property-based tests of the decoders: any input is a model or a ValidationError, nothing else."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from sources.models import (
    MAX_EVENT_TIME_MS,
    MIN_EVENT_TIME_MS,
    ActivityEvent,
    EventType,
    SensorReading,
)
from tests.hostile import Topic, good_message

DECODERS = (SensorReading, ActivityEvent)
CHECKS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def decode_or_reject(decoder: type[SensorReading] | type[ActivityEvent], raw: bytes) -> None:
    """Decode `raw`; a ValidationError is fine, any other exception fails the test.

    What is accepted must be a faithful model: it re-serialises and decodes back to itself.
    """
    try:
        model = decoder.from_json(raw)
    except ValidationError:
        return
    assert decoder.from_json(model.to_json()) == model


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=80)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=20), inner, max_size=5),
    max_leaves=30,
)

FIELDS = sorted(set(SensorReading.model_fields) | set(ActivityEvent.model_fields) | {"bogus"})


def good_dict(topic: Topic) -> dict[str, Any]:
    return json.loads(good_message(topic)[1])


@CHECKS
@given(raw=st.binary(max_size=2048))
def test_arbitrary_bytes_decode_or_raise_a_validation_error(raw):
    for decoder in DECODERS:
        decode_or_reject(decoder, raw)


@CHECKS
@given(value=json_values)
def test_arbitrary_json_structures_decode_or_raise_a_validation_error(value):
    raw = json.dumps(value, allow_nan=True).encode()
    for decoder in DECODERS:
        decode_or_reject(decoder, raw)


@CHECKS
@given(
    topic=st.sampled_from(Topic),
    changes=st.dictionaries(st.sampled_from(FIELDS), json_values, min_size=1, max_size=4),
    dropped=st.sets(st.sampled_from(FIELDS), max_size=3),
)
def test_a_good_message_with_fields_changed_or_dropped_decodes_or_raises_a_validation_error(
    topic, changes, dropped
):
    # Mutations of a good message get past the JSON parser and exercise every field validator.
    obj = good_dict(topic) | changes
    for name in dropped:
        obj.pop(name, None)
    raw = json.dumps(obj, allow_nan=True).encode()
    decode_or_reject(SensorReading if topic is Topic.IOT else ActivityEvent, raw)


@CHECKS
@given(raw=st.binary(max_size=64), at=st.integers(min_value=0, max_value=200), topic=st.sampled_from(Topic))
def test_a_good_message_with_bytes_spliced_in_decodes_or_raises_a_validation_error(raw, at, topic):
    good = good_message(topic)[1]
    at = min(at, len(good))
    decode_or_reject(SensorReading if topic is Topic.IOT else ActivityEvent, good[:at] + raw + good[at:])


identifiers = st.from_regex(r"\A[A-Za-z0-9_.\-]{1,64}\Z")
event_times = st.integers(min_value=MIN_EVENT_TIME_MS, max_value=MAX_EVENT_TIME_MS)


def finite(lo: float, hi: float) -> st.SearchStrategy[float]:
    return st.floats(min_value=lo, max_value=hi, allow_nan=False, allow_infinity=False)


readings = st.builds(
    SensorReading,
    device_id=identifiers,
    event_time=event_times,
    temperature=finite(-90.0, 150.0),
    humidity=finite(0.0, 100.0),
    pressure=finite(300.0, 1200.0),
)


@st.composite
def activity_events(draw: st.DrawFn) -> ActivityEvent:
    kind = draw(st.sampled_from(EventType))
    amount = draw(finite(0.0, 1_000_000.0).filter(lambda a: a > 0)) if kind is EventType.PURCHASE else None
    return ActivityEvent(
        event_id=draw(st.text(min_size=1, max_size=64)),
        user_id=draw(identifiers),
        session_id=draw(identifiers),
        type=kind,
        page=draw(st.from_regex(r"\A/[A-Za-z0-9_.\-/]{0,199}\Z")),
        event_time=draw(event_times),
        amount=amount,
    )


@CHECKS
@given(reading=readings)
def test_valid_readings_round_trip_through_json(reading):
    assert SensorReading.from_json(reading.to_json()) == reading


@CHECKS
@given(event=activity_events())
def test_valid_activity_events_round_trip_through_json(event):
    assert ActivityEvent.from_json(event.to_json()) == event
