"""Event time and pace are separate clocks, both exact and injectable."""

from __future__ import annotations

import itertools

import pytest

from sources.clock import Pacer, SimulatedClock, simulated_times

T0 = 1_700_000_000_000


def test_simulated_clock_advances_one_over_rate_per_event_in_whole_ms():
    clock = SimulatedClock(T0, rate=3.0)
    assert [clock() - T0 for _ in range(5)] == [0, 333, 666, 1000, 1333]


def test_simulated_clock_does_not_drift_when_the_spacing_is_not_whole_ms():
    # 142.857... ms apart: adding truncated steps would lose 60 s over these 70,000 events.
    times = list(simulated_times(T0, rate=7.0, count=70_001))
    assert times[-1] == T0 + 10_000_000
    assert all(b - a in (142, 143) for a, b in itertools.pairwise(times))


def test_simulated_clock_refuses_a_non_positive_rate():
    with pytest.raises(ValueError):
        SimulatedClock(T0, 0)


class FakeTime:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_pacer_spaces_events_at_the_rate():
    now = FakeTime()
    pacer = Pacer(10.0, now=now)
    assert pacer.due_in() == 0.0
    pacer.sent()
    assert pacer.due_in() == pytest.approx(0.1)
    now.t += 0.04
    assert pacer.due_in() == pytest.approx(0.06)
    now.t += 0.06
    assert pacer.due_in() == 0.0


def test_pacer_catches_up_a_short_delay_at_full_speed():
    now = FakeTime()
    pacer = Pacer(10.0, now=now)
    pacer.due_in()
    now.t += 0.5  # five events late, less than max_lag_s
    released = 0
    while pacer.due_in() == 0.0:
        pacer.sent()
        released += 1
    assert released == 6  # the five late ones and the one due now


def test_pacer_does_not_burst_after_a_long_stall():
    now = FakeTime()
    pacer = Pacer(100.0, max_lag_s=1.0, now=now)
    pacer.due_in()
    now.t += 60.0  # a minute of stall would be 6000 events
    released = 0
    while pacer.due_in() == 0.0:
        pacer.sent()
        released += 1
    assert released == pytest.approx(100, abs=2)  # at most max_lag_s worth
    now.t += 1.0
    again = 0
    while pacer.due_in() == 0.0:
        pacer.sent()
        again += 1
    assert again == pytest.approx(100, abs=2)  # then the steady rate


def test_pacer_without_a_rate_is_always_due():
    pacer = Pacer(None)
    for _ in range(3):
        assert pacer.due_in() == 0.0
        pacer.sent()


def test_pacer_refuses_a_non_positive_rate():
    with pytest.raises(ValueError):
        Pacer(0.0)
