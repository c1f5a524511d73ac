"""Hostile input: a named corpus of bad (and tricky but valid) Kafka messages for both topics.

Test data, shared by the decoder tests (tests/unit/sources/test_hostile_corpus.py), the
dead-letter tooling's tests and the dataflow's hostile-input test. Every case is a
Kafka message (value and key bytes) meant for one topic, with what must happen to it:

* `Expect.DEAD_LETTER`: the decoder (`SensorReading.from_json` / `ActivityEvent.from_json`)
  rejects it with `pydantic.ValidationError`; the dataflow must send it to the DLQ with
  its context and carry on.
* `Expect.VALID`: odd but legal; processed like any good message (so it is part of the
  good traffic when comparing runs with and without noise).
* `Expect.DUPLICATE`: byte-for-byte a re-delivery of a good message (`good_message`:
  `good_reading(0)` / `good_event(3)`, see `duplicate_of`) at a new offset; valid, and
  processed like any valid message (the product does not de-duplicate by content: a
  reading sent twice counts twice). Idempotence is about re-reading the *same* offset
  after a crash, which recovery covers. So duplicates belong to the good traffic when
  comparing runs with and without noise (tests/integration/test_hostile_flow.py).

Sizes: `huge_payload_2mb` is bigger than Kafka's default message limit (1 MiB), so it
cannot arrive on a default topic (`fits_default_kafka_limit`); `dead_letter_expansion`
fits, but its dead letter (control characters escaped in JSON, 6x) does not: a DLQ topic
and producer that carry every case need `DLQ_TOPIC_CONFIG` / `DLQ_PRODUCER_CONFIG`.
Everything is deterministic (seeded).

Not here: an event time that is plausible but far off the wall clock yet inside the
models' 2000-2100 bounds (say 2090) passes the decoder; catching that clock skew needs
the dataflow's clock, so it belongs to the flow's own validation.
"""

from __future__ import annotations

import base64
import gzip
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from sources.models import ActivityEvent, EventType, SensorReading

T0 = 1_700_000_000_000
"""2023-11-14T22:13:20Z in epoch ms: the good traffic's first event time."""

KAFKA_DEFAULT_MAX_MESSAGE_BYTES = 1_048_588
"""The broker's default message.max.bytes (Kafka 4)."""

DLQ_MAX_MESSAGE_BYTES = 16 * 1024 * 1024
DLQ_TOPIC_CONFIG = {"max.message.bytes": str(DLQ_MAX_MESSAGE_BYTES)}
"""Topic config of a DLQ that can take the dead letter of every case."""
DLQ_PRODUCER_CONFIG = {"message.max.bytes": DLQ_MAX_MESSAGE_BYTES, "compression.type": "zstd"}
"""Producer config for the same (librdkafka checks the uncompressed size against it)."""


class Topic(StrEnum):
    """Which of the pipeline's input topics a case is sent to."""

    IOT = "iot"
    ACTIVITY = "activity"


class Expect(StrEnum):
    """What the pipeline must do with a case."""

    DEAD_LETTER = "dead_letter"
    VALID = "valid"
    DUPLICATE = "duplicate"


Decoder = type[SensorReading] | type[ActivityEvent]


@dataclass(frozen=True)
class HostileCase:
    """One hostile Kafka message."""

    kind: str
    """What is wrong with it, e.g. ``truncated_json``; the same kind exists for both topics where it fits."""
    topic: Topic
    value: bytes | None
    """The Kafka value; None is a tombstone."""
    key: bytes | None
    expect: Expect
    note: str
    duplicate_of: bytes | None = field(default=None, repr=False)
    """For `Expect.DUPLICATE`: the good message's value it repeats."""

    @property
    def name(self) -> str:
        """Unique id, e.g. ``iot-truncated_json``."""
        return f"{self.topic.value}-{self.kind}"

    @property
    def decoder(self) -> Decoder:
        """The model the pipeline decodes this topic's values with."""
        return SensorReading if self.topic is Topic.IOT else ActivityEvent

    @property
    def fits_default_kafka_limit(self) -> bool:
        """Whether a topic with the broker's default limit accepts it (record overhead included)."""
        return len(self.value or b"") + len(self.key or b"") + 512 <= KAFKA_DEFAULT_MAX_MESSAGE_BYTES

    def __str__(self) -> str:
        return self.name


# --- good traffic -----------------------------------------------------------

DEVICES = ("dev-1", "dev-2", "dev-3", "dev-4")
USERS = ("user-1", "user-2", "user-3")
PAGES = ("/", "/products/42", "/cart", "/checkout")
FUNNEL = (EventType.PAGE_VIEW, EventType.CLICK, EventType.ADD_TO_CART, EventType.PURCHASE)


def good_reading(i: int, start_ms: int = T0, step_ms: int = 250) -> SensorReading:
    """The i-th reading of deterministic good IoT traffic (devices in turn, smooth values)."""
    return SensorReading(
        device_id=DEVICES[i % len(DEVICES)],
        event_time=start_ms + i * step_ms,
        temperature=20.0 + (i % 17) * 0.25,
        humidity=40.0 + (i % 11) * 0.5,
        pressure=1000.0 + (i % 7) * 1.5,
    )


def good_event(i: int, start_ms: int = T0, step_ms: int = 250) -> ActivityEvent:
    """The i-th event of deterministic good activity traffic (a funnel step per event)."""
    kind = FUNNEL[i % len(FUNNEL)]
    return ActivityEvent(
        event_id=f"evt-{i}",
        user_id=USERS[i % len(USERS)],
        session_id=f"sess-{i % 5}",
        type=kind,
        page=PAGES[i % len(PAGES)],
        event_time=start_ms + i * step_ms,
        amount=round(5.0 + i % 13, 2) if kind is EventType.PURCHASE else None,
    )


def good_message(topic: Topic) -> tuple[bytes, bytes]:
    """(key, value) of the good message the cases are made from, as the producers send it.

    `good_reading(0)` for IoT; `good_event(3)` (the first purchase: it has every field) for activity.
    """
    model = good_reading(0) if topic is Topic.IOT else good_event(3)
    key = model.device_id if isinstance(model, SensorReading) else model.user_id
    return key.encode(), model.to_json()


# --- building blocks --------------------------------------------------------

_RNG = random.Random(20240509)
JUNK = _RNG.randbytes(512)
"""Seeded random bytes (not UTF-8)."""


def _base(topic: Topic) -> dict[str, Any]:
    """A good message as a dict (a purchase for activity: it carries every field)."""
    return json.loads(good_message(topic)[1])


def _dump(obj: Any) -> bytes:
    # allow_nan: a buggy producer's NaN/Infinity literals are exactly what we want on the wire.
    return json.dumps(obj, separators=(",", ":"), allow_nan=True).encode()


def _with(topic: Topic, **changes: Any) -> bytes:
    return _dump(_base(topic) | changes)


def _without(topic: Topic, *names: str) -> bytes:
    obj = _base(topic)
    for name in names:
        obj.pop(name)
    return _dump(obj)


def _set_raw(topic: Topic, name: str, raw_json: str) -> bytes:
    """The good message with field `name`'s JSON text replaced by `raw_json` verbatim."""
    placeholder = "__PLACEHOLDER__"
    return _with(topic, **{name: placeholder}).replace(f'"{placeholder}"'.encode(), raw_json.encode())


_ID = {Topic.IOT: "device_id", Topic.ACTIVITY: "user_id"}
_NUMBER = {Topic.IOT: "temperature", Topic.ACTIVITY: "amount"}
_TEXT = {Topic.IOT: "device_id", Topic.ACTIVITY: "page"}


def _good(topic: Topic) -> bytes:
    return good_message(topic)[1]


def _key(topic: Topic) -> bytes:
    return good_message(topic)[0]


Maker = Callable[[Topic], bytes | None]

# (kind, expect, note, maker or {topic: maker}); a plain maker makes the case for both topics.
_SPECS: list[tuple[str, Expect, str, Maker | dict[Topic, Maker]]] = [
    # --- framing and encoding
    ("empty", Expect.DEAD_LETTER, "zero-length value", lambda t: b""),
    ("tombstone", Expect.DEAD_LETTER, "null value (a Kafka tombstone)", lambda t: None),
    ("whitespace_only", Expect.DEAD_LETTER, "only blanks and newlines", lambda t: b" \n\t\r "),
    ("not_json", Expect.DEAD_LETTER, "plain text", lambda t: b"hello, world"),
    ("binary_junk", Expect.DEAD_LETTER, "512 random bytes, not UTF-8", lambda t: JUNK),
    ("truncated_json", Expect.DEAD_LETTER, "cut in the middle", lambda t: _good(t)[: len(_good(t)) // 2]),
    ("truncated_by_one_byte", Expect.DEAD_LETTER, "the closing brace missing", lambda t: _good(t)[:-1]),
    ("trailing_garbage", Expect.DEAD_LETTER, "a good object then junk", lambda t: _good(t) + b"garbage"),
    ("concatenated_objects", Expect.DEAD_LETTER, "two good objects in one value", lambda t: _good(t) * 2),
    ("json_array", Expect.DEAD_LETTER, "a good object inside a list", lambda t: b"[" + _good(t) + b"]"),
    ("json_null", Expect.DEAD_LETTER, "the JSON literal null", lambda t: b"null"),
    ("json_number", Expect.DEAD_LETTER, "a bare number", lambda t: b"42"),
    (
        "double_encoded_json",
        Expect.DEAD_LETTER,
        "JSON text inside a JSON string",
        lambda t: _dump(_good(t).decode()),
    ),
    (
        "utf16_encoded",
        Expect.DEAD_LETTER,
        "good JSON in UTF-16 with BOM",
        lambda t: _good(t).decode().encode("utf-16"),
    ),
    (
        "utf8_bom",
        Expect.DEAD_LETTER,
        "good JSON after a UTF-8 byte-order mark",
        lambda t: b"\xef\xbb\xbf" + _good(t),
    ),
    (
        "invalid_utf8_in_string",
        Expect.DEAD_LETTER,
        "raw 0xFF 0xFE bytes inside an id",
        lambda t: _with(t, **{_ID[t]: "dev-X"}).replace(b"dev-X", b"dev-\xff\xfe"),
    ),
    (
        "lone_surrogate_escape",
        Expect.DEAD_LETTER,
        "\\ud800 without its pair",
        lambda t: _set_raw(t, _ID[t], '"a\\ud800b"'),
    ),
    ("python_repr", Expect.DEAD_LETTER, "str(dict): single quotes", lambda t: str(_base(t)).encode()),
    (
        "json_with_comments",
        Expect.DEAD_LETTER,
        "a /* comment */ before the object",
        lambda t: b"/* hi */" + _good(t),
    ),
    ("base64_wrapped", Expect.DEAD_LETTER, "good JSON, base64-encoded", lambda t: base64.b64encode(_good(t))),
    (
        "gzip_compressed",
        Expect.DEAD_LETTER,
        "good JSON, gzipped by the producer",
        lambda t: gzip.compress(_good(t), mtime=0),
    ),
    (
        "schema_registry_framing",
        Expect.DEAD_LETTER,
        "Confluent wire framing: magic byte 0, 4-byte schema id",
        lambda t: b"\x00\x00\x00\x00\x07" + _good(t),
    ),
    # --- numbers
    ("nan", Expect.DEAD_LETTER, "NaN literal in a number", lambda t: _with(t, **{_NUMBER[t]: float("nan")})),
    ("infinity", Expect.DEAD_LETTER, "Infinity literal", lambda t: _with(t, **{_NUMBER[t]: float("inf")})),
    (
        "negative_infinity",
        Expect.DEAD_LETTER,
        "-Infinity literal",
        lambda t: _with(t, **{_NUMBER[t]: float("-inf")}),
    ),
    (
        "float_overflow",
        Expect.DEAD_LETTER,
        "1e999 (parses as infinity)",
        lambda t: _set_raw(t, _NUMBER[t], "1e999"),
    ),
    (
        "huge_integer",
        Expect.DEAD_LETTER,
        "a 400-digit event time",
        lambda t: _set_raw(t, "event_time", "9" * 400),
    ),
    (
        "absurd_high_value",
        Expect.DEAD_LETTER,
        "temperature 1e6 °C / amount 1e12",
        {Topic.IOT: lambda t: _with(t, temperature=1e6), Topic.ACTIVITY: lambda t: _with(t, amount=1e12)},
    ),
    (
        "absurd_low_value",
        Expect.DEAD_LETTER,
        "humidity -20 % / amount -5",
        {Topic.IOT: lambda t: _with(t, humidity=-20.0), Topic.ACTIVITY: lambda t: _with(t, amount=-5.0)},
    ),
    (
        "zero_where_positive",
        Expect.DEAD_LETTER,
        "pressure 0 hPa / amount 0",
        {Topic.IOT: lambda t: _with(t, pressure=0.0), Topic.ACTIVITY: lambda t: _with(t, amount=0.0)},
    ),
    # --- types
    (
        "number_as_string",
        Expect.DEAD_LETTER,
        '"21.5" where a number is expected',
        lambda t: _with(t, **{_NUMBER[t]: "21.5"}),
    ),
    (
        "number_as_bool",
        Expect.DEAD_LETTER,
        "true where a number is expected",
        lambda t: _with(t, **{_NUMBER[t]: True}),
    ),
    ("null_field", Expect.DEAD_LETTER, "null for a required field", lambda t: _with(t, **{_TEXT[t]: None})),
    (
        "object_where_scalar",
        Expect.DEAD_LETTER,
        "an object where a number is expected",
        lambda t: _with(t, **{_NUMBER[t]: {"value": 21.5}}),
    ),
    (
        "array_where_scalar",
        Expect.DEAD_LETTER,
        "a list where a string is expected",
        lambda t: _with(t, **{_TEXT[t]: ["x"]}),
    ),
    (
        "float_event_time",
        Expect.DEAD_LETTER,
        "event time with a fraction",
        lambda t: _set_raw(t, "event_time", f"{T0}.5"),
    ),
    (
        "id_as_number",
        Expect.DEAD_LETTER,
        "a number where an id string is expected",
        lambda t: _with(t, **{_ID[t]: 42}),
    ),
    # --- fields
    ("missing_required_field", Expect.DEAD_LETTER, "the id left out", lambda t: _without(t, _ID[t])),
    ("empty_object", Expect.DEAD_LETTER, "{}", lambda t: b"{}"),
    ("extra_field", Expect.DEAD_LETTER, "one unknown field", lambda t: _with(t, firmware="1.2.3")),
    (
        "many_extra_fields",
        Expect.DEAD_LETTER,
        "1000 unknown fields (~11 KB)",
        lambda t: _dump(_base(t) | {f"x{i}": i for i in range(1000)}),
    ),
    (
        "misspelled_field",
        Expect.DEAD_LETTER,
        "a field name with a typo",
        {
            Topic.IOT: lambda t: _dump(
                {("temprature" if k == "temperature" else k): v for k, v in _base(t).items()}
            ),
            Topic.ACTIVITY: lambda t: _dump(
                {("userId" if k == "user_id" else k): v for k, v in _base(t).items()}
            ),
        },
    ),
    # --- schema version
    ("schema_version_future", Expect.DEAD_LETTER, "schema_version 2", lambda t: _with(t, schema_version=2)),
    ("schema_version_zero", Expect.DEAD_LETTER, "schema_version 0", lambda t: _with(t, schema_version=0)),
    (
        "schema_version_string",
        Expect.DEAD_LETTER,
        'schema_version "1"',
        lambda t: _with(t, schema_version="1"),
    ),
    # --- timestamps (epoch ms expected)
    (
        "iso_timestamp",
        Expect.DEAD_LETTER,
        "an ISO-8601 UTC string",
        lambda t: _with(t, event_time="2023-11-14T22:13:20Z"),
    ),
    (
        "naive_iso_timestamp",
        Expect.DEAD_LETTER,
        "an ISO-8601 string without a zone",
        lambda t: _with(t, event_time="2023-11-14T22:13:20"),
    ),
    (
        "malformed_timestamp",
        Expect.DEAD_LETTER,
        "month 13, hour 99",
        lambda t: _with(t, event_time="2023-13-45T99:99:99Z"),
    ),
    (
        "epoch_seconds",
        Expect.DEAD_LETTER,
        "seconds instead of milliseconds",
        lambda t: _with(t, event_time=T0 // 1000),
    ),
    (
        "epoch_microseconds",
        Expect.DEAD_LETTER,
        "microseconds instead of milliseconds",
        lambda t: _with(t, event_time=T0 * 1000),
    ),
    ("negative_timestamp", Expect.DEAD_LETTER, "before 1970", lambda t: _with(t, event_time=-1)),
    (
        "timestamp_decades_past",
        Expect.DEAD_LETTER,
        "1975-01-01",
        lambda t: _with(t, event_time=157_766_400_000),
    ),
    (
        "timestamp_decades_future",
        Expect.DEAD_LETTER,
        "2150-01-01",
        lambda t: _with(t, event_time=5_680_281_600_000),
    ),
    # --- size and depth
    (
        "huge_payload_2mb",
        Expect.DEAD_LETTER,
        "a 2 MB id (over Kafka's default limit)",
        lambda t: _with(t, **{_ID[t]: "x" * 2_000_000}),
    ),
    (
        "huge_payload_900kb",
        Expect.DEAD_LETTER,
        "a 900 KB id (fits Kafka's default limit)",
        lambda t: _with(t, **{_ID[t]: "x" * 900_000}),
    ),
    (
        "dead_letter_expansion",
        Expect.DEAD_LETTER,
        "200 KB of control characters: 6x as JSON text in the dead letter",
        lambda t: _with(t, **{_ID[t]: "\x01" * 200_000}).replace(b"\\u0001", b"\x01"),
    ),
    (
        "deep_nesting_array",
        Expect.DEAD_LETTER,
        "8,000 nested lists in a field (under the size limit: the parser's depth limit stops it)",
        lambda t: _set_raw(t, _NUMBER[t], "[" * 8_000 + "]" * 8_000),
    ),
    (
        "deep_nesting_object",
        Expect.DEAD_LETTER,
        "10,000 nested objects",
        lambda t: b'{"a":' * 10_000 + b"1" + b"}" * 10_000,
    ),
    # --- hostile strings (ids end up in Redis keys, pages on the dashboard)
    (
        "id_key_injection",
        Expect.DEAD_LETTER,
        "a Redis key separator and glob in an id",
        lambda t: _with(t, **{_ID[t]: "dev:1:*"}),
    ),
    (
        "id_path_traversal",
        Expect.DEAD_LETTER,
        "../ in an id",
        lambda t: _with(t, **{_ID[t]: "../../etc/passwd"}),
    ),
    ("id_too_long", Expect.DEAD_LETTER, "a 65-character id", lambda t: _with(t, **{_ID[t]: "d" * 65})),
    ("id_empty", Expect.DEAD_LETTER, "an empty id", lambda t: _with(t, **{_ID[t]: ""})),
    (
        "id_non_ascii",
        Expect.DEAD_LETTER,
        "accents and an emoji in an id",
        lambda t: _with(t, **{_ID[t]: "dévice-\U0001f525"}),
    ),
    (
        "id_nul_byte",
        Expect.DEAD_LETTER,
        "a NUL character in an id",
        lambda t: _with(t, **{_ID[t]: "dev\x00-1"}),
    ),
    (
        "terminal_escape_in_id",
        Expect.DEAD_LETTER,
        "ANSI clear-screen sequence in an id",
        lambda t: _with(t, **{_ID[t]: "\x1b[2J\x1b[31mdev"}),
    ),
    (
        "unknown_event_type",
        Expect.DEAD_LETTER,
        "type refund",
        {Topic.ACTIVITY: lambda t: _with(t, type="refund")},
    ),
    (
        "event_type_wrong_case",
        Expect.DEAD_LETTER,
        "type PURCHASE",
        {Topic.ACTIVITY: lambda t: _with(t, type="PURCHASE")},
    ),
    (
        "purchase_without_amount",
        Expect.DEAD_LETTER,
        "a purchase with no amount",
        {Topic.ACTIVITY: lambda t: _without(t, "amount")},
    ),
    (
        "amount_on_non_purchase",
        Expect.DEAD_LETTER,
        "a click with an amount",
        {Topic.ACTIVITY: lambda t: _with(t, type="click")},
    ),
    (
        "page_not_a_path",
        Expect.DEAD_LETTER,
        "an absolute URL as page",
        {Topic.ACTIVITY: lambda t: _with(t, page="https://evil.example/")},
    ),
    (
        "page_script_injection",
        Expect.DEAD_LETTER,
        "<script> in the page",
        {Topic.ACTIVITY: lambda t: _with(t, page="/<script>alert(1)</script>")},
    ),
    (
        "page_too_long",
        Expect.DEAD_LETTER,
        "a 301-character page",
        {Topic.ACTIVITY: lambda t: _with(t, page="/" + "p" * 300)},
    ),
    # --- the other topic's events
    (
        "wrong_topic_event",
        Expect.DEAD_LETTER,
        "the other topic's good event",
        lambda t: _good(Topic.ACTIVITY if t is Topic.IOT else Topic.IOT),
    ),
    # --- odd but valid: must be processed, never dead-lettered
    ("duplicate_delivery", Expect.DUPLICATE, "the first good message again, byte for byte", _good),
    (
        "pretty_printed",
        Expect.VALID,
        "indented JSON with spaces and newlines",
        lambda t: json.dumps(_base(t), indent=4).encode(),
    ),
    (
        "unicode_escaped_ascii",
        Expect.VALID,
        "ids spelled with \\u escapes of ASCII letters",
        lambda t: _set_raw(t, _ID[t], '"\\u0064\\u0065\\u0076-9"'),
    ),
    (
        "schema_version_omitted",
        Expect.VALID,
        "schema_version left out (defaults to 1)",
        lambda t: _without(t, "schema_version"),
    ),
    (
        "extreme_but_possible",
        Expect.VALID,
        "values at the physical limits",
        {
            Topic.IOT: lambda t: _with(t, temperature=-90.0, humidity=100.0, pressure=1200.0),
            Topic.ACTIVITY: lambda t: _with(t, amount=1_000_000.0),
        },
    ),
]


def _build() -> tuple[HostileCase, ...]:
    cases = []
    for kind, expect, note, makers in _SPECS:
        per_topic = makers if isinstance(makers, dict) else {topic: makers for topic in Topic}
        for topic, make in per_topic.items():
            value = make(topic)
            # Keys: the good key, except where the value is junk anyway (junk, none).
            key = {"binary_junk": JUNK[:16], "tombstone": None}.get(kind, _key(topic))
            duplicate_of = _good(topic) if expect is Expect.DUPLICATE else None
            cases.append(HostileCase(kind, topic, value, key, expect, note, duplicate_of))
    return tuple(cases)


CASES: tuple[HostileCase, ...] = _build()
"""Every case, for both topics where the kind applies."""

BAD_CASES = tuple(c for c in CASES if c.expect is Expect.DEAD_LETTER)
ACCEPTED_CASES = tuple(c for c in CASES if c.expect is not Expect.DEAD_LETTER)


def bad_kinds() -> list[str]:
    """The distinct kinds of bad (dead-letter) message."""
    return sorted({c.kind for c in BAD_CASES})


def cases_for(topic: Topic, expect: Expect | None = None) -> list[HostileCase]:
    """The cases sent to `topic`, optionally only those expecting `expect`."""
    return [c for c in CASES if c.topic is topic and (expect is None or c.expect is expect)]
