"""CircuitBreaker: closed -> open after consecutive failures -> one half-open probe after a jittered wait -> closed."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from enum import StrEnum

from .settings import BreakerConfig


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


# Gauge values of forgeway_gateway_breaker_state.
STATE_VALUE = {BreakerState.CLOSED: 0, BreakerState.HALF_OPEN: 1, BreakerState.OPEN: 2}


class CircuitBreaker:
    """Stops sending to an endpoint that keeps failing, then lets exactly one probe through to test it.

    Args:
        config: thresholds and waits.
        clock: monotonic seconds (time.monotonic unless a test steps time itself).
        on_change: called with the new state on every transition.
    """

    def __init__(
        self,
        config: BreakerConfig,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[BreakerState], None] | None = None,
    ):
        self.config = config
        self.clock = clock
        self.on_change = on_change
        self.state = BreakerState.CLOSED
        self.failures = 0
        self.opened = 0  # how many times in a row it opened (the wait doubles each time)
        self.retry_at = 0.0
        self.probing = False

    def _set(self, state: BreakerState) -> None:
        if state != self.state:
            self.state = state
            if self.on_change:
                self.on_change(state)

    def available(self) -> bool:
        """Whether a request could be sent now (without taking the half-open probe slot)."""
        if self.state == BreakerState.CLOSED:
            return True
        if self.state == BreakerState.OPEN:
            return self.clock() >= self.retry_at
        return not self.probing

    def why_not(self) -> str:
        if self.state == BreakerState.OPEN:
            wait = self.retry_at - self.clock()
            return f"circuit breaker open ({self.failures} consecutive failures; probe in {wait:.1f}s)"
        return "circuit breaker half-open (a probe request is in flight)"

    def acquire(self) -> bool:
        """Take permission to send one request; in half-open only one request (the probe) gets it."""
        if self.state == BreakerState.CLOSED:
            return True
        if self.state == BreakerState.OPEN:
            if self.clock() < self.retry_at:
                return False
            self._set(BreakerState.HALF_OPEN)
        if self.probing:
            return False
        self.probing = True
        return True

    def release(self) -> None:
        """The permitted request ended with neither success nor failure (cancelled by its caller)."""
        self.probing = False

    def record_success(self) -> None:
        self.failures = 0
        self.opened = 0
        self.probing = False
        self._set(BreakerState.CLOSED)

    def record_failure(self) -> None:
        self.failures += 1
        was_probe = self.probing
        self.probing = False
        if self.state == BreakerState.HALF_OPEN and was_probe or (
            self.state == BreakerState.CLOSED and self.failures >= self.config.failure_threshold
        ):
            self._open()

    def _open(self) -> None:
        wait = min(self.config.open_seconds * 2**self.opened, self.config.max_open_seconds)
        wait *= 1 + random.uniform(0, self.config.jitter)
        self.opened += 1
        self.retry_at = self.clock() + wait
        self._set(BreakerState.OPEN)
