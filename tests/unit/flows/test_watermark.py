import pickle

import numpy as np

from flows.watermark import Watermark
from tests.unit.flows.reference import late_flags


def test_late_events_are_those_older_than_newest_minus_lateness_one_at_a_time():
    rng = np.random.default_rng(5)
    times = (1_700_000_000_000 + np.cumsum(rng.integers(-3000, 4000, 500))).astype(np.int64)
    wm = Watermark(2000)
    late = np.concatenate([wm.observe(times[i : i + 37], now_ms=0) for i in range(0, 500, 37)])
    assert late.tolist() == late_flags(times.tolist(), 2000)
    assert late.any() and not late.all()


def test_batching_does_not_change_which_events_are_late():
    rng = np.random.default_rng(6)
    times = (1_000_000 + np.cumsum(rng.integers(-900, 1000, 300))).astype(np.int64)
    whole = Watermark(500).observe(times, 0)
    one = Watermark(500)
    singles = np.concatenate([one.observe(times[i : i + 1], 0) for i in range(300)])
    assert whole.tolist() == singles.tolist()


def test_event_exactly_at_the_watermark_is_on_time():
    wm = Watermark(1000)
    assert wm.observe(np.array([10_000, 9_000, 8_999], dtype=np.int64), 0).tolist() == [False, False, True]


def test_idle_time_advances_the_watermark_and_new_events_restart_it():
    wm = Watermark(5000)
    wm.observe(np.array([100_000], dtype=np.int64), now_ms=1_000)
    wm.caught_up(True, 1_000)
    assert wm.tick(1_000) == 95_000
    assert wm.tick(4_000) == 98_000  # idle for 3 s
    assert wm.due_at_ms(110_000) == 1_000 + 15_000
    wm.observe(np.array([101_000], dtype=np.int64), now_ms=4_500)
    assert wm.value_ms == 98_000  # never goes back; the event restarts the idle timer
    assert wm.tick(4_500) == 98_000
    assert wm.tick(7_500) == 99_000  # 101 s - 5 s lateness + 3 s idle


def test_events_after_a_stall_are_judged_without_the_idle_time_the_stall_accrued():
    # The partition was read to its end, then the worker stalled (a blocked sink, a restart)
    # for 60 s while its device kept sending: the backlog is not late, the key was not idle.
    wm = Watermark(5000)
    wm.observe(np.array([100_000], dtype=np.int64), now_ms=1_000)
    wm.caught_up(True, 1_000)
    backlog = np.arange(101_000, 161_000, 1_000, dtype=np.int64)
    assert not wm.observe(backlog, now_ms=61_000).any()
    # What a notification already took is kept: an event behind it is late.
    wm.caught_up(True, 61_000)
    assert wm.tick(71_000) == 165_000
    assert wm.observe(np.array([164_000, 170_000], dtype=np.int64), now_ms=71_000).tolist() == [True, False]


def test_watermark_never_moves_back_when_the_clock_does():
    wm = Watermark(0)
    wm.observe(np.array([50], dtype=np.int64), now_ms=100)
    wm.caught_up(True, 100)
    assert wm.tick(200) == 150
    assert wm.tick(120) == 150


def test_resume_does_not_count_downtime_as_idle():
    wm = Watermark(1000)
    wm.observe(np.array([10_000], dtype=np.int64), now_ms=0)
    wm.caught_up(True, 0)
    restored = pickle.loads(pickle.dumps(wm))
    restored.resume(3_600_000)  # restarted an hour later
    assert restored.tick(3_600_000) == 9_000
    assert restored.observe(np.array([9_500], dtype=np.int64), 3_600_000).tolist() == [False]


def test_no_events_means_no_watermark_and_no_due_time():
    wm = Watermark(1000)
    assert wm.tick(10**12) < -(10**18)
    assert wm.due_at_ms(5) is None


def test_a_stream_whose_partition_is_behind_does_not_advance_with_the_clock():
    # A busy worker delivers this partition's backlog late: silence is not idleness.
    wm = Watermark(1000)
    wm.observe(np.array([10_000], dtype=np.int64), now_ms=0)
    wm.caught_up(False, 0)
    assert wm.tick(3_600_000) == 9_000
    assert wm.due_at_ms(20_000) is None
    assert wm.observe(np.array([9_100], dtype=np.int64), 3_600_000).tolist() == [False]


def test_idle_time_counts_from_when_the_partition_reached_its_end():
    wm = Watermark(1000)
    wm.observe(np.array([10_000], dtype=np.int64), now_ms=0)
    wm.caught_up(False, 0)
    wm.caught_up(True, 5_000)  # the backlog was worked off 5 s later
    assert wm.tick(5_000) == 9_000
    assert wm.due_at_ms(12_000) == 5_000 + 3_000
    assert wm.tick(6_000) == 10_000
    wm.caught_up(True, 7_000)  # still at the end: the idle time goes on
    assert wm.tick(8_000) == 12_000
    wm.caught_up(False, 8_000)  # new backlog: idle time stops, the watermark stays
    assert wm.tick(60_000) == 12_000


def test_the_caught_up_flag_is_kept_in_snapshots_and_old_snapshots_stay_idle_driven():
    wm = Watermark(1000)
    wm.observe(np.array([10_000], dtype=np.int64), now_ms=0)
    assert pickle.loads(pickle.dumps(wm)).caught_up_ms is None
    wm.caught_up(True, 50)
    assert pickle.loads(pickle.dumps(wm)).caught_up_ms == 50
    old = Watermark.__new__(Watermark)
    old.__setstate__((1000, 10_000, 0, 9_000))  # a snapshot from before the flag
    assert old.tick(2_000) == 11_000
