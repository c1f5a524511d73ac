"""The reader's decode memo: a member read again unchanged is not decoded again, nothing else changes."""

from __future__ import annotations

import random

import pytest

from sinks.layout import decode_window_stats, encode_window_stats
from sinks.reader import DecodeMemo, Decoding
from sinks.records import Metric
from tests.seed import window

KEY = "p:iot:agg:10s:dev-01:temperature"


def _decoder(calls: list[bytes]):
    def decode(raw: bytes):
        calls.append(raw)
        return decode_window_stats(raw, "10s", "dev-01", Metric.TEMPERATURE)

    return decode


def test_a_member_read_again_unchanged_is_the_record_decoded_before():
    memo = DecodeMemo(100)
    calls: list[bytes] = []
    raw = encode_window_stats(window("dev-01", Metric.TEMPERATURE, 3))

    first = Decoding(lambda k, e: None, memo).one(KEY, _decoder(calls), raw)
    again = Decoding(lambda k, e: None, memo).one(KEY, _decoder(calls), bytes(raw))

    assert again is first
    assert first == window("dev-01", Metric.TEMPERATURE, 3)
    assert calls == [raw]
    assert (memo.hits, memo.misses) == (1, 1)


def test_changed_bytes_or_another_key_are_decoded_afresh():
    memo = DecodeMemo(100)
    calls: list[bytes] = []
    old = encode_window_stats(window("dev-01", Metric.TEMPERATURE, 3))
    rewritten = encode_window_stats(window("dev-01", Metric.TEMPERATURE, 3, rng=random.Random(7)))
    dec = Decoding(lambda k, e: None, memo)

    dec.one(KEY, _decoder(calls), old)
    new = dec.one(KEY, _decoder(calls), rewritten)
    dec.one(KEY + "x", _decoder(calls), old)

    assert new == decode_window_stats(rewritten, "10s", "dev-01", Metric.TEMPERATURE)
    assert calls == [old, rewritten, old]


def test_a_member_that_fails_to_decode_is_reported_on_every_read_and_never_held():
    memo = DecodeMemo(100)
    reported: list[str] = []

    for _ in range(2):
        dec = Decoding(lambda k, e: reported.append(k), memo)
        assert dec.one(KEY, _decoder([]), b"{not json") is None
        assert dec.bad == 1

    assert reported == [KEY, KEY]
    assert len(memo) == 0


def test_the_memo_is_emptied_when_full_and_keeps_working():
    memo = DecodeMemo(3)
    calls: list[bytes] = []
    raws = [encode_window_stats(window("dev-01", Metric.TEMPERATURE, i)) for i in range(4)]
    dec = Decoding(lambda k, e: None, memo)

    decoded = [dec.one(KEY, _decoder(calls), raw) for raw in raws]

    assert len(memo) == 1  # the fourth found it full
    assert dec.one(KEY, _decoder(calls), raws[3]) is decoded[3]
    assert dec.one(KEY, _decoder(calls), raws[0]) == decoded[0]
    assert calls == [*raws, raws[0]]


def test_members_that_are_not_bytes_or_tuples_bypass_the_memo():
    memo = DecodeMemo(10)
    calls = []
    dec = Decoding(lambda k, e: None, memo)

    for _ in range(2):
        dec.one("p:stats", lambda fields: calls.append(fields) or len(fields), {b"a": b"1"})

    assert len(calls) == 2
    assert len(memo) == 0


def test_a_memo_needs_room_for_one_record():
    with pytest.raises(ValueError, match="capacity"):
        DecodeMemo(0)
