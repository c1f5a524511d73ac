import pickle

import numpy as np

from flows.stats import summarize
from flows.windows import PaneWindows, WindowSpec
from tests.unit.flows.reference import window_aggregates

TUMBLING = WindowSpec("10s", 10_000, 10_000)
SLIDING = WindowSpec("60s", 60_000, 10_000)


def _closed_aggregates(closed, spec):
    return {
        w.start_ms: (
            (s := summarize(w.values[0])).count,
            s.avg,
            s.min,
            s.max,
            s.p99,
        )
        for w in closed
        if w.spec == spec
    }


def _assert_matches(got, want):
    assert got.keys() == want.keys()
    for start, (count, mean, lo, hi, p99) in want.items():
        g = got[start]
        assert g[0] == count and g[2] == lo and g[3] == hi and g[4] == p99
        assert abs(g[1] - mean) <= 1e-12 * max(1.0, abs(mean))


def test_tumbling_and_sliding_windows_match_a_brute_force_reference():
    rng = np.random.default_rng(7)
    # Irregular gaps, mild disorder, and a long silence in the middle.
    times = 1_700_000_003_217 + np.cumsum(rng.integers(1, 2500, 400))
    times[200:] += 400_000
    times = times + rng.integers(-300, 300, 400)
    values = rng.normal(20, 3, 400)
    w = PaneWindows((TUMBLING, SLIDING), series=1)
    closed = []
    for i in range(0, 400, 23):
        w.add(times[i : i + 23].astype(np.int64), values[None, i : i + 23])
        closed += w.close(int(times[: i + 23].max()) - 1000)
    closed += w.close(2**62)
    assert w.is_empty()
    for spec in (TUMBLING, SLIDING):
        _assert_matches(
            _closed_aggregates(closed, spec),
            window_aggregates(times.tolist(), values.tolist(), spec.length_ms, spec.step_ms),
        )


def test_a_window_closes_when_the_watermark_reaches_its_end():
    w = PaneWindows((TUMBLING,), series=1)
    w.add(np.array([10_500], dtype=np.int64), np.array([[1.0]]))
    assert w.close(19_999) == []
    assert w.next_close_ms() == 20_000
    [closed] = w.close(20_000)
    assert (closed.start_ms, closed.end_ms, closed.values.tolist()) == (10_000, 20_000, [[1.0]])


def test_empty_windows_are_not_reported_and_gaps_are_skipped_at_once():
    w = PaneWindows((TUMBLING, SLIDING), series=1)
    w.add(np.array([5_000, 10_000_005_000], dtype=np.int64), np.array([[1.0, 2.0]]))
    closed = w.close(10_000_100_000)
    # One value, six sliding windows around it; nothing for the ten-million-second gap.
    assert sorted((c.spec.name, c.start_ms) for c in closed if c.values[0, 0] == 1.0) == [
        ("10s", 0),
        *(("60s", s) for s in range(-50_000, 10_000, 10_000)),
    ]
    assert len(closed) == 14


def test_a_single_value_is_in_every_window_that_covers_it():
    w = PaneWindows((SLIDING,), series=3)
    w.add(np.array([65_000], dtype=np.int64), np.array([[1.0], [2.0], [3.0]]))
    closed = w.close(2**62)
    assert [c.start_ms for c in closed] == [10_000, 20_000, 30_000, 40_000, 50_000, 60_000]
    assert all(c.values.tolist() == [[1.0], [2.0], [3.0]] for c in closed)


def test_pending_reports_open_windows_without_closing_them():
    w = PaneWindows((TUMBLING,), series=1)
    w.add(np.array([1_000, 12_000], dtype=np.int64), np.array([[1.0, 2.0]]))
    assert [p.start_ms for p in w.pending()] == [0, 10_000]
    assert [p.start_ms for p in w.pending()] == [0, 10_000]
    assert [c.start_ms for c in w.close(10_000)] == [0]


def test_panes_survive_a_pickle_round_trip():
    w = PaneWindows((TUMBLING, SLIDING), series=1)
    w.add(np.array([1_000, 2_000], dtype=np.int64), np.array([[1.0, 2.0]]))
    restored = pickle.loads(pickle.dumps(w))
    restored.add(np.array([3_000], dtype=np.int64), np.array([[3.0]]))
    assert restored.close(2**62)[0].values.tolist() == [[1.0, 2.0, 3.0]]
