"""CircuitBreaker: opens after consecutive failures, lets exactly one probe through after its wait, then closes."""

from __future__ import annotations

from forgeway.gateway.breaker import BreakerState, CircuitBreaker
from forgeway.gateway.settings import BreakerConfig


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def breaker(**config) -> tuple[CircuitBreaker, Clock, list[BreakerState]]:
    clock, changes = Clock(), []
    settings = BreakerConfig(**{"failure_threshold": 3, "open_seconds": 1.0, "max_open_seconds": 4.0, "jitter": 0.0,
                                **config})
    return CircuitBreaker(settings, clock=clock, on_change=changes.append), clock, changes


def test_opens_after_consecutive_failures_only():
    b, _, changes = breaker()
    b.record_failure()
    b.record_failure()
    b.record_success()  # a success resets the count
    b.record_failure()
    b.record_failure()
    assert b.state == BreakerState.CLOSED and b.acquire()
    b.record_failure()
    assert b.state == BreakerState.OPEN and changes == [BreakerState.OPEN]
    assert not b.available() and not b.acquire()
    assert "3 consecutive failures" in b.why_not()


def test_one_half_open_probe_then_closed_on_success():
    b, clock, changes = breaker()
    for _ in range(3):
        b.record_failure()
    clock.now += 1.01
    assert b.available()
    assert b.acquire()  # the probe
    assert b.state == BreakerState.HALF_OPEN
    assert not b.available() and not b.acquire(), "a second request must wait for the probe"
    b.record_success()
    assert b.state == BreakerState.CLOSED and b.acquire()
    assert changes == [BreakerState.OPEN, BreakerState.HALF_OPEN, BreakerState.CLOSED]


def test_failed_probe_reopens_with_a_longer_wait_capped():
    b, clock, _ = breaker()
    for _ in range(3):
        b.record_failure()
    waits = []
    for _ in range(4):
        opened_at = clock.now
        while not b.available():
            clock.now += 0.25
        waits.append(clock.now - opened_at)
        assert b.acquire()
        b.record_failure()
        assert b.state == BreakerState.OPEN
    assert waits == [1.0, 2.0, 4.0, 4.0]


def test_cancelled_probe_frees_the_slot_without_a_verdict():
    b, clock, _ = breaker(failure_threshold=1)
    b.record_failure()
    clock.now += 2
    assert b.acquire()
    b.release()
    assert b.state == BreakerState.HALF_OPEN and b.acquire()


def test_jitter_lengthens_the_wait_within_its_fraction():
    b, clock, _ = breaker(failure_threshold=1, jitter=0.5)
    b.record_failure()
    assert 1.0 <= b.retry_at - clock.now <= 1.5
