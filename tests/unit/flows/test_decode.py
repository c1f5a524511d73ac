import json
import math
from typing import Annotated

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import Field, ValidationError, field_validator

from flows.clock import ManualClock
from flows.decode import EVENT_TYPES, Decoder, _fast_path, type_code
from flows.kafka_input import ConsumerFault, KafkaBatch
from sources.models import EventType, SensorReading
from tests.kafka_batches import RawMessage
from tests.unit.flows.messages import (
    ACTIVITY,
    IOT,
    activity_event,
    activity_message,
    as_batches,
    iot_message,
    reading,
)

NOW = 1_750_000_000_000


def _decoder(max_future_ms=300_000):
    return Decoder(
        iot_topic=IOT, activity_topic=ACTIVITY, max_future_ms=max_future_ms, clock=ManualClock(NOW)
    )


def test_valid_readings_become_one_block_per_device_in_arrival_order():
    msgs = [
        iot_message(reading("a", NOW - 3000, 20.0, 50.0, 1000.0), 0),
        iot_message(reading("b", NOW - 2000, 21.0, 51.0, 1001.0), 1),
        iot_message(reading("a", NOW - 4000, 22.0, 52.0, 1002.0), 2),
    ]
    out = _decoder().decode(as_batches(msgs))
    blocks = {b.device_id: b for b in out.iot}
    assert blocks["a"].times.tolist() == [NOW - 3000, NOW - 4000]
    assert blocks["a"].values.tolist() == [[20.0, 22.0], [50.0, 52.0], [1000.0, 1002.0]]
    assert blocks["b"].values[:, 0].tolist() == [21.0, 51.0, 1001.0]
    assert (out.events_in, out.dead, out.newest_ms) == (3, [], NOW - 2000)


def test_the_fast_path_agrees_with_the_model_on_a_warm_cache():
    good = reading("dev-1", NOW - 1, 20.5, 40.0, 990.0)
    decoder = _decoder()
    decoder.decode(as_batches([iot_message(good)]))
    out = decoder.decode(as_batches([iot_message(good), iot_message(good.replace(b"20.5", b"20"))]))
    assert out.iot[0].values[0].tolist() == [20.5, 20.0]


def _raw(**fields: object) -> bytes:
    """A reading's JSON with some fields replaced by raw JSON text (None drops the field)."""
    doc = {
        "device_id": '"d"',
        "event_time": str(NOW),
        "temperature": "21",
        "humidity": "50",
        "pressure": "1000",
    }
    doc.update({k: v for k, v in fields.items() if v is not None})
    for k, v in fields.items():
        if v is None:
            doc.pop(k)
    return ("{" + ",".join(f'"{k}":{v}' for k, v in doc.items()) + "}").encode()


BAD_READINGS = {
    "not json": b"not json",
    "truncated": reading("d", NOW, 20.0, 50.0, 1000.0)[:40],
    "empty": b"",
    "binary": bytes(range(256)),
    "json array": b"[1, 2]",
    "nan literal": _raw(temperature="NaN"),
    "infinity": _raw(temperature="1e999"),
    "string number": _raw(temperature='"21"'),
    "bool number": _raw(temperature="true"),
    "float time": _raw(event_time=f"{NOW}.0"),
    "missing field": _raw(pressure=None),
    "extra field": _raw(x="1"),
    "out of range": _raw(humidity="101"),
    "bad device id": _raw(device_id='"a b"'),
    "wrong schema": _raw(schema_version="2"),
    "year 1990": _raw(event_time="631152000000"),
    "activity event": activity_event(1, "u", EventType.CLICK, "/x", NOW),
}


@pytest.mark.parametrize("name", sorted(BAD_READINGS))
def test_bad_readings_become_dead_letters_with_their_context(name):
    value = BAD_READINGS[name]
    good = reading("d", NOW - 10, 20.0, 50.0, 1000.0)
    msgs = [iot_message(good, 0), iot_message(value, 41, partition=2, key=b"dk"), iot_message(good, 42)]
    out = _decoder().decode(as_batches(msgs))
    [dead] = out.dead
    assert dead.original_value() == value
    assert (dead.topic, dead.partition, dead.offset, dead.original_key()) == (IOT, 2, 41, b"dk")
    assert dead.stage in {"decode", "validate"} and dead.error_type and dead.error_message
    assert dead.failed_at == NOW
    assert [b.times.shape[0] for b in out.iot] == [2], "the good ones flow on"


def test_unparseable_bytes_fail_at_decode_and_wrong_content_at_validate():
    out = _decoder().decode(as_batches([iot_message(b"{oops", 0), iot_message(b'{"device_id":"d"}', 1)]))
    assert [d.stage for d in out.dead] == ["decode", "validate"]


def test_a_tombstone_is_a_dead_letter():
    [dead] = _decoder().decode(as_batches([iot_message(None, 7)])).dead
    assert (dead.payload, dead.stage, dead.error_type) == (None, "decode", "EmptyMessageError")


def test_events_from_too_far_in_the_future_are_dead_letters():
    msgs = [
        iot_message(reading("d", NOW + 300_000, 1.0, 1.0, 1000.0), 0),
        iot_message(reading("d", NOW + 300_001, 1.0, 1.0, 1000.0), 1),
    ]
    out = _decoder(max_future_ms=300_000).decode(as_batches(msgs))
    assert [d.offset for d in out.dead] == [1]
    assert out.dead[0].error_type == "FutureEventError"
    assert out.iot[0].times.tolist() == [NOW + 300_000]


def test_a_message_from_another_topic_is_a_dead_letter():
    msg = RawMessage("elsewhere", 0, 3, None, b"{}")
    [dead] = _decoder().decode(as_batches([msg])).dead
    assert (dead.stage, dead.topic, dead.error_type) == ("route", "elsewhere", "UnknownTopicError")


def test_activity_events_are_grouped_by_partition_in_order():
    msgs = [
        activity_message(activity_event(1, "u1", EventType.PAGE_VIEW, "/a", NOW - 5), 0, partition=1),
        activity_message(activity_event(2, "u2", EventType.PURCHASE, "/b", NOW - 9, 12.5), 0, partition=0),
        activity_message(activity_event(3, "u1", EventType.CLICK, "/a", NOW - 7), 1, partition=1),
        activity_message(b'{"type":"purchase"}', 2, partition=1),
    ]
    out = _decoder().decode(as_batches(msgs))
    blocks = {b.partition: b for b in out.activity}
    assert blocks[1].times.tolist() == [NOW - 5, NOW - 7]
    assert blocks[1].types.tolist() == [type_code(EventType.PAGE_VIEW), type_code(EventType.CLICK)]
    assert blocks[1].users == ("u1", "u1") and blocks[1].pages == ("/a", "/a")
    assert blocks[0].amounts.tolist() == [12.5] and blocks[0].types.tolist() == [
        EVENT_TYPES.index(EventType.PURCHASE)
    ]
    assert [d.offset for d in out.dead] == [2]
    assert out.newest_ms == NOW - 5


_FIELD = st.sampled_from(
    ["schema_version", "device_id", "event_time", "temperature", "humidity", "pressure", "x"]
)
_VALUE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.integers(min_value=946_684_800_000 - 5, max_value=946_684_800_000 + 5),
    st.integers(min_value=-100, max_value=1300),
    st.floats(allow_nan=False, allow_infinity=False),
    st.floats(min_value=-100, max_value=1300),
    st.text(max_size=5),
    st.sampled_from(["dev-1", "dev 2", "", "d" * 65, "dev-3"]),
    st.lists(st.integers(), max_size=2),
)


_NUMBER_TOKENS = [
    b"1e2",
    b"1E+2",
    b"-0",
    b"-0.0",
    b"1.75e12",
    b"175e10",
    b"1749999999000.0",
    b"1749999999000.5",
    b"99999999999999999999999",
    b"1e309",
    b"-1e309",
    b"0x10",
    b"01",
    b"+1",
    b".5",
    b"5.",
    b"1",
    b"true",
    b"null",
    b'"1"',
    b"[]",
    b"{}",
]


@st.composite
def _reading_like(draw):
    doc = {
        "schema_version": 1,
        "device_id": "dev-1",
        "event_time": NOW - 1000,
        "temperature": 21.5,
        "humidity": 40.0,
        "pressure": 1000.0,
    }
    for _ in range(draw(st.integers(0, 3))):
        action = draw(st.sampled_from(["set", "drop"]))
        field = draw(_FIELD)
        if action == "set":
            doc[field] = draw(_VALUE)
        else:
            doc.pop(field, None)
    raw = json.dumps(doc, indent=draw(st.sampled_from([None, 1]))).encode()
    if draw(st.integers(0, 3)) == 0:
        # Number spellings JSON allows and ones it does not.
        field = draw(st.sampled_from([b"event_time", b"temperature", b"schema_version"]))
        token = draw(st.sampled_from(_NUMBER_TOKENS))
        head, sep, tail = raw.partition(b'"' + field + b'": ')
        if sep:
            end = min(
                (i for i in (tail.find(b","), tail.find(b"}"), tail.find(b"\n")) if i >= 0), default=len(tail)
            )
            raw = head + sep + token + tail[end:]
    if draw(st.integers(0, 5)) == 0:
        raw = raw.replace(
            b'"humidity"', draw(st.sampled_from([b'"humidit\\u0079"', b'"humidity": 1, "humidity"']))
        )
    if draw(st.integers(0, 9)) == 0:
        cut = draw(st.integers(0, len(raw)))
        raw = raw[:cut] + draw(st.binary(max_size=4)) + raw[cut:]
    return raw


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_reading_like(), min_size=1, max_size=12))
def test_the_decoder_accepts_exactly_what_the_model_accepts(values):
    decoder = _decoder(max_future_ms=10**13)
    decoder.decode(as_batches([iot_message(reading("dev-3", NOW - 5, 1.0, 1.0, 1000.0))]))  # a warm id cache
    out = decoder.decode(as_batches([iot_message(v, i) for i, v in enumerate(values)]))
    expected = []
    for v in values:
        try:
            expected.append(SensorReading.model_validate_json(v))
        except ValidationError:
            expected.append(None)
    assert sorted(d.offset for d in out.dead) == [i for i, r in enumerate(expected) if r is None]
    got = {(b.device_id, int(t), *map(float, b.values[:, j])) for b in out.iot for j, t in enumerate(b.times)}
    want = {
        (r.device_id, r.event_time, r.temperature, r.humidity, r.pressure) for r in expected if r is not None
    }
    assert got == want
    assert all(math.isfinite(x) for g in got for x in g[2:])


def test_many_new_devices_in_one_batch_take_the_fast_path():
    values = [reading(f"dev-{i}", NOW - i, 20.0, 50.0, 1000.0) for i in range(300)]
    out = _decoder().decode(as_batches([iot_message(v, i) for i, v in enumerate(values)]))
    assert len(out.iot) == 300 and not out.dead
    assert {b.device_id for b in out.iot} == {f"dev-{i}" for i in range(300)}
    assert np.concatenate([b.times for b in out.iot]).size == 300


def test_the_fast_path_is_on_for_the_wire_model_and_off_for_rules_it_does_not_know():
    assert _fast_path() is not None

    class Validated(SensorReading):
        @field_validator("temperature")
        @classmethod
        def _odd(cls, v: float) -> float:
            return v

    class Constrained(SensorReading):
        pressure: Annotated[float, Field(multiple_of=0.5)]

    assert _fast_path(Validated) is None
    assert _fast_path(Constrained) is None


def _batch(topic, partition, values, at_end, first_offset=0):
    return KafkaBatch(
        topic=topic,
        partition=partition,
        values=list(values),
        keys=[b"k"] * len(values),
        offsets=list(range(first_offset, first_offset + len(values))),
        at_end=at_end,
    )


def test_blocks_carry_their_partition_end_and_silent_devices_hear_when_it_is_reached():
    decoder = _decoder()
    a, b = (reading(d, NOW - 9_000, 20.0, 50.0, 1000.0) for d in ("a", "b"))
    first = decoder.decode([_batch(IOT, 0, [a, b], at_end=False)])
    assert {(x.device_id, x.at_end) for x in first.iot} == {("a", False), ("b", False)}
    # The partition's end is reached with a batch holding only "a": "b" gets an empty block saying so.
    second = decoder.decode([_batch(IOT, 0, [a], at_end=True, first_offset=2)])
    assert sorted((x.device_id, x.times.size, x.at_end) for x in second.iot) == [
        ("a", 1, True),
        ("b", 0, True),
    ]
    assert second.events_in == 1
    # Told once: the next end of the partition needs no markers; other partitions are apart.
    assert decoder.decode([_batch(IOT, 0, [], at_end=True, first_offset=3)]).iot == []
    assert decoder.decode([_batch(IOT, 1, [], at_end=True)]).iot == []


def test_every_activity_batch_gives_one_block_even_without_events():
    out = _decoder().decode(
        [_batch(ACTIVITY, 2, [], at_end=True), _batch(ACTIVITY, 1, [b"{}"], at_end=False)]
    )
    assert [(x.partition, x.times.size, x.at_end) for x in out.activity] == [(2, 0, True), (1, 0, False)]
    assert [(d.partition, d.offset, d.stage) for d in out.dead] == [(1, 0, "validate")]


def test_consumer_errors_are_dead_letters_with_their_partition():
    batch = KafkaBatch(
        topic=IOT,
        partition=2,
        values=[],
        keys=[],
        offsets=[],
        at_end=False,
        faults=(ConsumerFault("Broker: Offset out of range", offset=17),),
    )
    [dead] = _decoder().decode([batch]).dead
    assert (dead.stage, dead.topic, dead.partition, dead.offset, dead.error_type) == (
        "consume",
        IOT,
        2,
        17,
        "ConsumerError",
    )
