"""The DLQ tool's pure parts: selection, counting, refusals and safe display (no broker)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from sinks.dlq import (
    UNREADABLE,
    DlqRecord,
    Selection,
    count,
    format_detail,
    format_list,
    hexdump,
    parse_position,
    preview,
    recent,
    refusal,
    safe_text,
)
from sinks.replay import DlqPosition, replay_marker
from sinks.settings import DlqToolSettings
from sources.models import DeadLetter
from tests.hostile import BAD_CASES

T0 = 1_700_000_000_000
SETTINGS = DlqToolSettings(iot_topic="iot", activity_topic="act", dlq_topic="dlq")


def letter(
    offset: int,
    *,
    topic: str = "iot",
    stage: str = "decode",
    error: BaseException | None = None,
    value: bytes | None = b'{"x":1}',
    failed_at: int | None = None,
) -> DeadLetter:
    return DeadLetter.capture(
        value=value,
        key=b"dev-1",
        topic=topic,
        partition=0,
        offset=offset,
        stage=stage,
        error=error or ValueError("bad"),
        failed_at=T0 + offset if failed_at is None else failed_at,
    )


def record(offset: int, dl: DeadLetter | None, headers=(), partition: int = 0) -> DlqRecord:
    unreadable = None if dl is not None else "not a DeadLetter: boom"
    return DlqRecord(DlqPosition("dlq", partition, offset), T0, tuple(headers), dl, unreadable, b"junk")


def no_source(_dl: DeadLetter) -> None:
    return None


def test_selection_matches_every_named_field_exactly():
    r = record(1, letter(1, topic="act", stage="validate", error=KeyError("k")))
    assert Selection().matches(r)
    assert Selection(error_type="KeyError", topic="act", stage="validate").matches(r)
    assert not Selection(error_type="ValueError").matches(r)
    assert not Selection(topic="iot").matches(r)
    assert not Selection(stage="decode").matches(r)
    assert not Selection(error_type="keyerror").matches(r)
    assert Selection(error_type=UNREADABLE).matches(record(2, None))


def test_recent_keeps_the_newest_matches_oldest_first():
    records = [record(i, letter(i, failed_at=T0 + (10 - i))) for i in range(10)]  # newest at offset 0
    assert [r.position.offset for r in recent(records, Selection(), 3)] == [2, 1, 0]


def test_count_breaks_down_by_error_type_stage_and_topic():
    replayed = [replay_marker(DlqPosition("dlq", 0, 0))]
    records = [
        record(0, letter(0, error=ValueError())),
        record(1, letter(1, error=ValueError(), stage="process")),
        record(2, letter(2, error=KeyError(), topic="act"), headers=replayed),
        record(3, None),
    ]
    counts = count(records)
    assert counts.total == 4
    assert counts.by_error_type == {"ValueError": 2, "KeyError": 1, UNREADABLE: 1}
    assert counts.by_stage == {"decode": 2, "process": 1, "?": 1}
    assert counts.by_source_topic == {"iot": 2, "act": 1, "?": 1}
    assert counts.replays == 1
    assert count(records, Selection(topic="iot")).total == 2


def test_a_plain_dead_letter_from_an_input_topic_may_be_replayed():
    assert refusal(record(0, letter(0)), SETTINGS, no_source) is None
    assert refusal(record(0, letter(0, topic="act")), SETTINGS, no_source) is None


def test_a_dead_letter_of_a_replayed_message_is_refused():
    marked = record(5, letter(5), headers=[replay_marker(DlqPosition("dlq", 0, 1))])
    assert "replayed from dlq:0:1" in (refusal(marked, SETTINGS, no_source) or "")


def test_a_dead_letter_whose_failed_message_carries_the_marker_is_refused():
    def marked_source(_dl: DeadLetter) -> list[tuple[str, bytes | None]]:
        return [replay_marker(DlqPosition("dlq", 0, 3))]

    assert "replayed from dlq:0:3" in (refusal(record(5, letter(5)), SETTINGS, marked_source) or "")


@pytest.mark.parametrize("topic", ["dlq", "__consumer_offsets", "other"])
def test_replay_only_targets_the_pipelines_input_topics(topic):
    assert "not an input topic" in (refusal(record(0, letter(0, topic=topic)), SETTINGS, no_source) or "")


def test_an_unreadable_record_is_refused():
    assert "not a readable dead letter" in (refusal(record(0, None), SETTINGS, no_source) or "")


@pytest.mark.parametrize(
    ("text", "expected"),
    [("41", DlqPosition("dlq", 0, 41)), ("2:41", DlqPosition("dlq", 2, 41))],
)
def test_a_position_is_an_offset_or_partition_and_offset(text, expected):
    assert parse_position(text, "dlq") == expected


@pytest.mark.parametrize("text", ["", "-1", "a", "1:", ":1", "1:2:3"])
def test_a_bad_position_is_rejected(text):
    with pytest.raises(ValueError, match="OFFSET or PARTITION:OFFSET"):
        parse_position(text, "dlq")


@pytest.mark.parametrize(
    "hostile", ["\x1b[2J\x1b[31m", "\x00", "a\u202eb", "\x7f", "\u2028", "\U000e0001", "\r"], ids=repr
)
def test_safe_text_escapes_control_and_format_characters(hostile):
    shown = safe_text(f"x{hostile}y")
    assert shown.isprintable()
    assert shown.startswith("x") and shown.endswith("y") and "\\" in shown


def test_safe_text_keeps_newlines_only_when_asked():
    assert safe_text("a\nb", keep_newlines=True) == "a\nb"
    assert safe_text("a\nb") == "a\\x0ab"
    assert safe_text("ok: déjà vu ✓") == "ok: déjà vu ✓"


def test_preview_is_short_safe_and_says_the_size():
    assert preview(None) == "(tombstone)"
    assert preview(b"") == " (0 B)"
    assert preview(b"\x1b" * 500, chars=20) == "\\x1b\\x1b\\x1b\\x1b\\x1b… (500 B)"
    assert preview(b"\xff\xfe" * 100, chars=9) == "binary ff fe ff … (200 B)"
    assert preview(b"short", chars=20) == "short (5 B)"


def test_hexdump_shows_offsets_hex_and_printable_ascii():
    assert hexdump(b"AB\x00\xff" * 5) == [
        "00000000  41 42 00 ff 41 42 00 ff 41 42 00 ff 41 42 00 ff  |AB..AB..AB..AB..|",
        "00000010  41 42 00 ff                                      |AB..|",
    ]


def error_of(case) -> ValidationError:
    try:
        case.decoder.from_json(case.value)
    except ValidationError as exc:
        return exc
    raise AssertionError(f"{case} was accepted")


@pytest.mark.parametrize("case", BAD_CASES, ids=str)
def test_every_hostile_dead_letter_displays_without_control_characters(case):
    dl = DeadLetter.capture(
        value=case.value,
        key=case.key,
        topic="iot",
        partition=0,
        offset=1,
        stage="decode",
        error=error_of(case),
        failed_at=T0,
    )
    r = record(1, dl)
    for text in (format_detail(r), format_detail(r, full=True), format_list([r], 1, 1, "dlq")):
        assert all(line.isprintable() for line in text.splitlines()), case.name
    if case.value is not None and len(case.value) > 4096:
        assert "--full for all" in format_detail(r)
