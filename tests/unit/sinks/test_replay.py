"""The replay marker is recognised on any header shape."""

from __future__ import annotations

import pytest

from sinks.replay import REPLAY_HEADER, DlqPosition, replay_marker, replayed_from


def test_position_prints_and_parses_back():
    pos = DlqPosition("pipeline.dlq", 2, 41)
    assert str(pos) == "pipeline.dlq:2:41"
    assert DlqPosition.parse(str(pos)) == pos


@pytest.mark.parametrize("text", ["", "dlq", "dlq:1", "dlq:x:1", "dlq:1:-1", ":1:2"])
def test_a_malformed_position_is_rejected_naming_the_form(text):
    with pytest.raises(ValueError, match="<topic>:<partition>:<offset>"):
        DlqPosition.parse(text)


def test_the_marker_names_the_dead_letter_it_was_replayed_from():
    name, value = replay_marker(DlqPosition("pipeline.dlq", 0, 7))
    assert (name, value) == (REPLAY_HEADER, b"pipeline.dlq:0:7")
    assert replayed_from([("trace", b"abc"), (name, value)]) == "pipeline.dlq:0:7"


@pytest.mark.parametrize("headers", [None, [], [("trace", b"x")], [("X-DLQ-Replayed-From-Not", b"1")]])
def test_a_message_without_the_marker_is_not_a_replay(headers):
    assert replayed_from(headers) is None


def test_the_marker_is_recognised_with_text_empty_or_undecodable_values():
    assert replayed_from([(REPLAY_HEADER, "dlq:0:1")]) == "dlq:0:1"
    assert replayed_from([(REPLAY_HEADER, None)]) == ""
    assert replayed_from([(REPLAY_HEADER, b"\xff")]) == "\ufffd"
