"""The circuit breaker's state machine, on a fake clock."""

from __future__ import annotations

import pytest

from sinks.breaker import CircuitBreaker
from sinks.records import CircuitState


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make(clock: FakeClock, threshold: int = 3, timeout: float = 10.0) -> tuple[CircuitBreaker, list]:
    breaker = CircuitBreaker(threshold, timeout, clock=clock)
    transitions: list[tuple[CircuitState, CircuitState]] = []
    breaker.add_listener(lambda old, new: transitions.append((old, new)))
    return breaker, transitions


def test_defaults_are_five_failures_and_thirty_seconds():
    breaker = CircuitBreaker()
    assert (breaker.failure_threshold, breaker.reset_timeout_s, breaker.state) == (
        5,
        30.0,
        CircuitState.CLOSED,
    )


def test_stays_closed_below_the_threshold(clock):
    breaker, transitions = make(clock)
    breaker.record_failure()
    breaker.record_failure()
    assert breaker.state is CircuitState.CLOSED
    assert breaker.allow_request()
    assert transitions == []


def test_opens_after_threshold_consecutive_failures(clock):
    breaker, transitions = make(clock)
    for _ in range(3):
        breaker.record_failure()
    assert breaker.state is CircuitState.OPEN
    assert not breaker.allow_request()
    assert transitions == [(CircuitState.CLOSED, CircuitState.OPEN)]


def test_a_success_resets_the_failure_count(clock):
    breaker, _ = make(clock)
    breaker.record_failure()
    breaker.record_failure()
    breaker.record_success()
    breaker.record_failure()
    breaker.record_failure()
    assert breaker.state is CircuitState.CLOSED
    assert breaker.consecutive_failures == 2


def test_open_refuses_until_the_reset_timeout_then_lets_one_probe_through(clock):
    breaker, transitions = make(clock, threshold=1, timeout=10.0)
    breaker.record_failure()
    clock.advance(9.9)
    assert not breaker.allow_request()
    assert breaker.seconds_until_probe() == pytest.approx(0.1)
    clock.advance(0.1)
    assert breaker.allow_request()
    assert breaker.state is CircuitState.HALF_OPEN
    assert transitions[-1] == (CircuitState.OPEN, CircuitState.HALF_OPEN)


def test_a_successful_probe_closes_the_breaker(clock):
    breaker, transitions = make(clock, threshold=1)
    breaker.record_failure()
    clock.advance(10)
    breaker.allow_request()
    breaker.record_success()
    assert breaker.state is CircuitState.CLOSED
    assert breaker.consecutive_failures == 0
    assert [new for _, new in transitions] == [CircuitState.OPEN, CircuitState.HALF_OPEN, CircuitState.CLOSED]


def test_a_failed_probe_opens_again_for_a_whole_timeout(clock):
    breaker, transitions = make(clock, threshold=2, timeout=10.0)
    breaker.record_failure()
    breaker.record_failure()
    clock.advance(10)
    assert breaker.allow_request()
    breaker.record_failure()  # a single failure is enough in half-open
    assert breaker.state is CircuitState.OPEN
    assert breaker.seconds_until_probe() == 10.0
    clock.advance(5)
    assert not breaker.allow_request()
    assert [new for _, new in transitions] == [CircuitState.OPEN, CircuitState.HALF_OPEN, CircuitState.OPEN]


def test_seconds_until_probe_is_zero_unless_open(clock):
    breaker, _ = make(clock)
    assert breaker.seconds_until_probe() == 0.0


@pytest.mark.parametrize(("threshold", "timeout"), [(0, 1.0), (1, -1.0)])
def test_invalid_parameters_are_rejected(threshold, timeout):
    with pytest.raises(ValueError, match="must be"):
        CircuitBreaker(threshold, timeout)
