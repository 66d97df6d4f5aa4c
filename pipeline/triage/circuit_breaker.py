"""A circuit breaker for calls to a remote model: after `failure_threshold` consecutive failures the
circuit opens and calls fail fast, without touching the network, for `reset_after_s`; then one trial
call goes through (half-open): its success closes the circuit, its failure opens it again.

The breaker only keeps the state; the caller asks `allow()` before each call and reports the outcome
with `record_success()` / `record_failure()`. Thread-safe.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from enum import StrEnum


class CircuitState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Consecutive-failure circuit breaker.

    - `failure_threshold`: consecutive failures that open the circuit (>= 1).
    - `reset_after_s`: seconds the circuit stays open before one trial call is let through.
    - `clock`: monotonic seconds; tests inject a fake one.

    While half-open only the single trial call is allowed; every other caller is refused until its
    outcome is recorded."""

    def __init__(
        self,
        failure_threshold: int,
        reset_after_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be >= 1")
        if reset_after_s <= 0:
            raise ValueError("reset_after_s must be > 0")
        self.failure_threshold = failure_threshold
        self.reset_after_s = reset_after_s
        self._clock = clock
        self._lock = threading.Lock()
        self._state = CircuitState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._trial_in_flight = False

    @property
    def state(self) -> CircuitState:
        """The state now; an open circuit whose reset time has passed reads as half-open."""
        with self._lock:
            if self._state is CircuitState.OPEN and self._clock() - self._opened_at >= self.reset_after_s:
                return CircuitState.HALF_OPEN
            return self._state

    def allow(self) -> bool:
        """Whether a call may go out now. True while closed; False while open; once the reset time
        has passed, True for exactly one trial call until its outcome is recorded."""
        with self._lock:
            if self._state is CircuitState.CLOSED:
                return True
            if self._state is CircuitState.OPEN:
                if self._clock() - self._opened_at < self.reset_after_s:
                    return False
                self._state = CircuitState.HALF_OPEN
            if self._trial_in_flight:
                return False
            self._trial_in_flight = True
            return True

    def retry_after_s(self) -> float:
        """Seconds until an open circuit lets a trial call through (0 when not open)."""
        with self._lock:
            if self._state is not CircuitState.OPEN:
                return 0.0
            return max(0.0, self.reset_after_s - (self._clock() - self._opened_at))

    def record_success(self) -> None:
        with self._lock:
            self._state = CircuitState.CLOSED
            self._failures = 0
            self._trial_in_flight = False

    def record_failure(self) -> None:
        with self._lock:
            self._failures += 1
            if self._state is CircuitState.HALF_OPEN or self._failures >= self.failure_threshold:
                # A failure of a call that was already in flight when the circuit opened restarts
                # the wait, which is what we want: the endpoint is still failing.
                self._state = CircuitState.OPEN
                self._opened_at = self._clock()
            self._trial_in_flight = False
