"""Property-based tests of the dataflow's decoder over arbitrary input batches.

Whatever a batch holds (arbitrary bytes, arbitrary JSON, tombstones, corpus cases, good
messages, other topics' messages, any keys), `Decoder.decode` never raises, and every
message becomes exactly one of: a decoded record, or a `DeadLetter` that carries its
topic, partition, offset, key and original bytes. A message is decoded exactly when the
wire model accepts it.
"""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from flows.clock import ManualClock
from flows.decode import Decoder
from sources.models import ActivityEvent, SensorReading
from tests.hostile import CASES, Topic, good_message
from tests.kafka_batches import RawMessage, as_batches
from tests.unit.flows.messages import ACTIVITY, IOT

NOW = 1_750_000_000_000
OTHER = "some.other.topic"
TOPICS = (IOT, ACTIVITY, OTHER)
CHECKS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=16), inner, max_size=6),
    max_leaves=20,
)


@st.composite
def near_good(draw: st.DrawFn) -> bytes:
    """A good message of either topic with one field set to an arbitrary JSON value or dropped."""
    doc = json.loads(good_message(draw(st.sampled_from(list(Topic))))[1])
    name = draw(st.sampled_from(sorted(doc)))
    if draw(st.booleans()):
        doc.pop(name)
    else:
        doc[name] = draw(json_values)
    return json.dumps(doc).encode()


values = st.one_of(
    st.none(),
    st.binary(max_size=512),
    json_values.map(lambda v: json.dumps(v).encode()),
    near_good(),
    st.sampled_from([c.value for c in CASES if len(c.value or b"") < 100_000]),
    st.sampled_from([good_message(t)[1] for t in Topic]),
)


@st.composite
def batches(draw: st.DrawFn) -> list[tuple[str, bytes | None, bytes | None]]:
    """(topic, key, value) of one input batch."""
    return draw(
        st.lists(
            st.tuples(st.sampled_from(TOPICS), st.none() | st.binary(max_size=16), values),
            min_size=1,
            max_size=20,
        )
    )


def _accepted(topic: str, value: bytes | None) -> bool:
    """What the wire model says about a message (the oracle; a far-off clock rules nothing out)."""
    if topic == OTHER or value is None:
        return False
    model = SensorReading if topic == IOT else ActivityEvent
    try:
        model.model_validate_json(value)
    except ValidationError:
        return False
    return True


@CHECKS
@given(batch=batches())
def test_every_message_becomes_a_record_or_a_dead_letter_with_its_context(batch):
    msgs = [
        RawMessage(topic=topic, partition=i % 3, offset=i, key=key, value=value)
        for i, (topic, key, value) in enumerate(batch)
    ]
    decoder = Decoder(iot_topic=IOT, activity_topic=ACTIVITY, max_future_ms=10**13, clock=ManualClock(NOW))
    out = decoder.decode(as_batches(msgs))  # must not raise, whatever the batch holds

    decoded = sum(b.times.shape[0] for b in out.iot) + sum(b.times.shape[0] for b in out.activity)
    assert out.events_in == len(msgs)
    assert decoded + len(out.dead) == len(msgs)
    rejected = [i for i, (topic, _, value) in enumerate(batch) if not _accepted(topic, value)]
    assert sorted(d.offset for d in out.dead) == rejected
    for dead in out.dead:
        topic, key, value = batch[dead.offset]
        assert (dead.topic, dead.partition) == (topic, dead.offset % 3)
        assert dead.original_value() == value
        assert dead.original_key() == key
        assert dead.stage and dead.error_type and dead.failed_at == NOW
        # A dead letter is itself a valid message of the DLQ's wire format.
        assert type(dead).from_json(dead.to_json()) == dead
