"""The three-state circuit breaker in front of Redis: closed, open, half-open.

Closed: requests pass; consecutive failures are counted, and the breaker opens
when they reach the threshold. Open: requests are refused until the reset
timeout has passed since it opened, then it turns half-open. Half-open: one
probe passes; its success closes the breaker, its failure opens it again for
another reset timeout.

Time comes from an injected monotonic clock (seconds), so the state machine is
tested without waiting and without Redis. Single-threaded by design: one
breaker belongs to one sink partition, which Bytewax drives from one thread.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from sinks.records import CircuitState

Clock = Callable[[], float]
"""Monotonic time in seconds."""

Listener = Callable[[CircuitState, CircuitState], None]
"""Called with (old state, new state) on every transition."""


# Hand-written rather than pybreaker/circuitbreaker: both read the system time
# themselves (no injected clock, so tests would sleep through reset timeouts) and
# are built around wrapping calls that raise, where our sink must *not* raise but
# keep its results buffered. The state machine itself is a few lines.
class CircuitBreaker:
    """Counts consecutive failures and decides whether the next request may go out."""

    def __init__(
        self,
        failure_threshold: int = 5,
        reset_timeout_s: float = 30.0,
        clock: Clock = time.monotonic,
    ) -> None:
        """Create a closed breaker.

        Args:
            failure_threshold: Consecutive failures that open the breaker (>= 1).
            reset_timeout_s: Seconds the breaker stays open before it lets one probe through.
            clock: Monotonic time source in seconds.
        """
        if failure_threshold < 1:
            raise ValueError(f"failure_threshold must be >= 1, got {failure_threshold}")
        if reset_timeout_s < 0:
            raise ValueError(f"reset_timeout_s must be >= 0, got {reset_timeout_s}")
        self.failure_threshold = failure_threshold
        self.reset_timeout_s = reset_timeout_s
        self._clock = clock
        self._state = CircuitState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._listeners: list[Listener] = []

    @property
    def state(self) -> CircuitState:
        """The current state (an open breaker turns half-open on the next `allow_request`)."""
        return self._state

    @property
    def consecutive_failures(self) -> int:
        """Failures since the last success."""
        return self._failures

    def add_listener(self, listener: Listener) -> None:
        """Call `listener(old, new)` on every state transition."""
        self._listeners.append(listener)

    def seconds_until_probe(self) -> float:
        """Seconds until an open breaker lets a probe through; 0 when not open."""
        if self._state is not CircuitState.OPEN:
            return 0.0
        return max(0.0, self._opened_at + self.reset_timeout_s - self._clock())

    def allow_request(self) -> bool:
        """Whether a request may go out now; turns an open breaker half-open once its timeout passed."""
        if self._state is CircuitState.OPEN:
            if self.seconds_until_probe() > 0:
                return False
            self._move(CircuitState.HALF_OPEN)
        return True

    def record_success(self) -> None:
        """A request succeeded: reset the count and close the breaker."""
        self._failures = 0
        if self._state is not CircuitState.CLOSED:
            self._move(CircuitState.CLOSED)

    def record_failure(self) -> None:
        """A request failed: open on the threshold, or again after a failed probe."""
        self._failures += 1
        if self._state is CircuitState.HALF_OPEN or self._failures >= self.failure_threshold:
            self._opened_at = self._clock()
            if self._state is not CircuitState.OPEN:
                self._move(CircuitState.OPEN)

    def _move(self, new: CircuitState) -> None:
        old, self._state = self._state, new
        for listener in self._listeners:
            listener(old, new)
