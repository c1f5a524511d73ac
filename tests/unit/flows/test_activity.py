import math
import pickle

import numpy as np

from flows.activity import EVENT_TYPES, PURCHASE_CODE, ActivityWindows
from sinks.records import EventType

T0 = 1_700_000_000_000


def _add(acts, partition, events, now=0):
    """events: (time, type, amount, user, page)."""
    return acts.add(
        partition,
        np.array([e[0] for e in events], dtype=np.int64),
        np.array([EVENT_TYPES.index(e[1]) for e in events], dtype=np.int8),
        np.array([e[2] for e in events], dtype=np.float64),
        tuple(e[3] for e in events),
        tuple(e[4] for e in events),
        now,
    )


def test_window_figures_match_a_reference():
    rng = np.random.default_rng(23)
    events = []
    for i in range(3000):
        kind = EVENT_TYPES[int(rng.integers(0, 4))]
        amount = float(np.round(rng.uniform(1, 200), 2)) if kind is EventType.PURCHASE else 0.0
        events.append(
            (T0 + i * 37 + int(rng.integers(0, 30)), kind, amount, f"u{rng.integers(0, 40)}", f"/p{i % 7}")
        )
    acts = ActivityWindows(length_ms=10_000, lateness_ms=60_000)
    for i in range(0, 3000, 101):
        _add(acts, 0, events[i : i + 101])
    got = {s.start_ms: s for s in acts.close(0) + acts.pending()}
    windows: dict[int, list] = {}
    for e in events:
        windows.setdefault(e[0] - e[0] % 10_000, []).append(e)
    assert got.keys() == windows.keys()
    for start, evs in windows.items():
        s = got[start]
        assert s.counts == {t: sum(e[1] is t for e in evs) for t in EVENT_TYPES}
        assert s.events_per_s == len(evs) / 10
        assert s.revenue == math.fsum(e[2] for e in evs if e[1] is EventType.PURCHASE)
        assert s.distinct_users == len({e[3] for e in evs})
        assert s.end_ms == start + 10_000


def test_a_window_closes_only_when_every_partition_has_passed_it():
    acts = ActivityWindows(length_ms=10_000, lateness_ms=1_000)
    _add(acts, 0, [(T0 + 1_000, EventType.CLICK, 0.0, "u", "/")])
    _add(acts, 1, [(T0 + 2_000, EventType.CLICK, 0.0, "v", "/")])
    _add(acts, 0, [(T0 + 30_000, EventType.CLICK, 0.0, "u", "/")])
    assert acts.close(0) == []  # partition 1 is still at T0 + 2 s
    _add(acts, 1, [(T0 + 11_000, EventType.PAGE_VIEW, 0.0, "w", "/")])
    [closed] = acts.close(0)
    assert closed.start_ms == T0 and closed.counts[EventType.CLICK] == 2


def test_lateness_is_judged_within_each_partition():
    acts = ActivityWindows(length_ms=10_000, lateness_ms=1_000)
    _add(acts, 0, [(T0 + 50_000, EventType.CLICK, 0.0, "u", "/")])
    # Far behind partition 0, but partition 1's own first event: on time.
    assert _add(acts, 1, [(T0 + 5_000, EventType.CLICK, 0.0, "v", "/")]).late == 0
    assert _add(acts, 1, [(T0 + 3_000, EventType.CLICK, 0.0, "v", "/")]).late == 1
    assert acts.late_events == 1


def test_leaderboard_is_absolute_totals_including_late_purchases():
    acts = ActivityWindows(length_ms=10_000, lateness_ms=0)
    first = _add(
        acts,
        0,
        [(T0 + 9_000, EventType.PURCHASE, 5.0, "u", "/a"), (T0 + 9_500, EventType.PURCHASE, 6.0, "u", "/b")],
    )
    assert first.pages == {"/a": 1, "/b": 1}
    late = _add(
        acts, 0, [(T0, EventType.PURCHASE, 7.0, "u", "/a"), (T0 + 9_600, EventType.CLICK, 0.0, "u", "/c")]
    )
    assert (late.late, late.pages) == (1, {"/a": 2})
    assert acts.leaderboard == {"/a": 2, "/b": 1}


def test_idle_partitions_close_windows_with_the_clock():
    acts = ActivityWindows(length_ms=10_000, lateness_ms=2_000)
    _add(acts, 0, [(T0 + 1_000, EventType.CLICK, 0.0, "u", "/")], now=500)
    assert acts.next_close_due_ms() == 500 + (T0 + 10_000) - (T0 + 1_000 - 2_000)
    assert acts.close(acts.next_close_due_ms() - 1) == []
    assert [s.start_ms for s in acts.close(acts.next_close_due_ms())] == [T0]


def test_empty_window_list_and_pickle_round_trip():
    acts = ActivityWindows(length_ms=10_000, lateness_ms=0)
    assert acts.close(0) == [] and acts.pending() == [] and acts.next_close_due_ms() is None
    _add(acts, 3, [(T0, EventType.PURCHASE, 1.5, "u", "/x")])
    restored = pickle.loads(pickle.dumps(acts))
    assert restored.pending() == acts.pending()
    assert restored.pending()[0].revenue == 1.5 and PURCHASE_CODE == EVENT_TYPES.index(EventType.PURCHASE)


def test_no_window_closes_before_every_expected_partition_has_been_heard_from():
    acts = ActivityWindows(length_ms=10_000, lateness_ms=1_000, expected_partitions=2)
    _add(
        acts, 0, [(T0 + 1_000, EventType.CLICK, 0.0, "u", "/"), (T0 + 60_000, EventType.CLICK, 0.0, "u", "/")]
    )
    assert acts.close(now_ms=500) == []  # partition 1 may still hold T0's events
    _add(acts, 1, [(T0 + 2_000, EventType.CLICK, 0.0, "v", "/")], now=600)
    _add(acts, 1, [(T0 + 61_000, EventType.CLICK, 0.0, "v", "/")], now=700)
    [closed, *_] = acts.close(now_ms=700)
    assert closed.start_ms == T0 and closed.counts[EventType.CLICK] == 2


def _at_end(acts, partition, now=0, at_end=True):
    """The partition's word without events (an empty block)."""
    empty = np.zeros(0, dtype=np.int64)
    return acts.add(partition, empty, empty.astype(np.int8), empty.astype(np.float64), (), (), now, at_end)


def test_a_silent_partition_holds_windows_until_it_reports_its_end():
    acts = ActivityWindows(length_ms=10_000, lateness_ms=1_000, expected_partitions=3)
    _add(
        acts, 0, [(T0 + 1_000, EventType.CLICK, 0.0, "u", "/"), (T0 + 60_000, EventType.CLICK, 0.0, "u", "/")]
    )
    # However long the clock runs: partitions 1 and 2 may be on a worker that has not started yet.
    assert acts.close(now_ms=3_600_000) == [] and acts.next_close_due_ms() is None
    _at_end(acts, 1, now=3_600_000)
    assert acts.close(now_ms=3_600_000) == []
    _at_end(acts, 2, now=3_600_000)  # empty and at their end: they hold nothing back
    # Partition 0 has been at its end (and idle) for an hour.
    assert [s.start_ms for s in acts.close(now_ms=3_600_000)] == [T0, T0 + 60_000]


def test_a_partition_behind_its_end_holds_windows_however_long_the_clock_runs():
    acts = ActivityWindows(length_ms=10_000, lateness_ms=1_000, expected_partitions=2)
    _add(acts, 0, [(T0 + 60_000, EventType.CLICK, 0.0, "u", "/")], now=0)
    acts.add(
        1,
        np.array([T0 + 1_000], dtype=np.int64),
        np.array([EVENT_TYPES.index(EventType.CLICK)], dtype=np.int8),
        np.zeros(1),
        ("v",),
        ("/",),
        0,
        False,  # partition 1 has a backlog: its next events are on the way
    )
    assert acts.close(now_ms=3_600_000) == [] and acts.next_close_due_ms() is None
    update = _add(acts, 1, [(T0 + 1_500, EventType.CLICK, 0.0, "v", "/")], now=3_600_000)
    assert update.late == 0, "an on-time event of a slow partition is not late"
    _at_end(acts, 1, now=3_600_000)
    assert acts.close(now_ms=3_600_000) == []  # idle time starts now
    [window, *_] = acts.close(now_ms=3_600_000 + 70_000)
    assert (window.start_ms, window.counts[EventType.CLICK]) == (T0, 2)


def test_stragglers_of_an_emitted_window_are_late_not_a_second_partial_window():
    acts = ActivityWindows(length_ms=10_000, lateness_ms=1_000, expected_partitions=2)
    _add(acts, 0, [(T0 + 1_000, EventType.CLICK, 0.0, "u", "/")])
    _add(acts, 1, [(T0 + 30_000, EventType.CLICK, 0.0, "v", "/")])
    _add(acts, 0, [(T0 + 30_000, EventType.CLICK, 0.0, "u", "/")])
    assert [s.start_ms for s in acts.close(0)] == [T0]
    # A partition whose own watermark is far behind brings an event of the emitted window.
    acts.watermarks[1].max_event_ms = T0 - 1_000_000
    acts.watermarks[1].value_ms = T0 - 1_000_000
    assert _add(acts, 1, [(T0 + 2_000, EventType.CLICK, 0.0, "v", "/")]).late == 1
    assert T0 not in acts.windows


def test_a_snapshot_without_the_partition_fields_still_restores():
    acts = ActivityWindows(length_ms=10_000, lateness_ms=1_000)
    state = acts.__getstate__()
    state["first_seen_ms"] = None  # a field that no longer exists
    for name in ("expected_partitions", "closed_below_ms"):
        del state[name]
    restored = ActivityWindows.__new__(ActivityWindows)
    restored.__setstate__(state)
    assert restored.expected_partitions == 1 and pickle.loads(pickle.dumps(restored)).length_ms == 10_000
