"""Admission: the gateway-wide in-flight limit and per-key request and token rate limits (token buckets)."""

from __future__ import annotations

import time
from collections.abc import Callable

from forgeway.core.errors import ResourceExhausted

from . import metrics
from .auth import Principal
from .settings import GatewaySettings, RateLimit


class TokenBucket:
    """Holds up to `per_minute` units, refilled continuously; a charge may drive it below zero (paid back later)."""

    def __init__(self, per_minute: float, clock: Callable[[], float]):
        self.per_minute, self.clock = per_minute, clock
        self.rate = per_minute / 60.0
        self.level = per_minute
        self.at = clock()

    def _refill(self) -> None:
        now = self.clock()
        self.level = min(self.per_minute, self.level + (now - self.at) * self.rate)
        self.at = now

    def wait_for(self, amount: float) -> float:
        """Seconds until `amount` is available (0 when it is now)."""
        self._refill()
        return 0.0 if self.level >= amount else (amount - self.level) / self.rate

    def take(self, amount: float) -> None:
        self._refill()
        self.level -= amount


class Ticket:
    """One admitted call; `done(tokens)` releases its slot and charges the tokens it used (once)."""

    def __init__(self, admission: Admission, principal: Principal):
        self.admission, self.principal = admission, principal
        self.open = True

    def done(self, tokens: int = 0) -> None:
        if self.open:
            self.open = False
            self.admission._release(self.principal, tokens)


class Admission:
    """Decides whether a call may start now; refusals are RESOURCE_EXHAUSTED with RetryInfo and QuotaFailure."""

    def __init__(self, settings: GatewaySettings, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self.in_flight = 0
        self._requests: dict[str, TokenBucket] = {}
        self._tokens: dict[str, TokenBucket] = {}
        self.configure(settings)

    def configure(self, settings: GatewaySettings) -> None:
        """Apply new limits; buckets of keys whose limits did not change keep their level."""
        self.max_in_flight = settings.limits.max_in_flight
        self.default = settings.rate_limit
        self.per_key = {k.name: k.rate_limit for k in settings.api_keys if k.rate_limit is not None}
        for buckets, attr in ((self._requests, "requests_per_minute"), (self._tokens, "tokens_per_minute")):
            for name in list(buckets):
                if getattr(self.limit_of(name), attr) != buckets[name].per_minute:
                    del buckets[name]

    def limit_of(self, name: str) -> RateLimit:
        return self.per_key.get(name) or self.default

    def _bucket(self, buckets: dict[str, TokenBucket], name: str, per_minute: float) -> TokenBucket | None:
        if per_minute <= 0:
            return None
        if name not in buckets:
            buckets[name] = TokenBucket(per_minute, self.clock)
        return buckets[name]

    def admit(self, principal: Principal) -> Ticket:
        if self.max_in_flight and self.in_flight >= self.max_in_flight:
            metrics.REJECTED.labels("in_flight_limit").inc()
            raise ResourceExhausted(
                f"the gateway is serving its limit of {self.max_in_flight} requests", retry_after=0.5,
                quota="gateway:max_in_flight", reason="OVERLOADED",
            )
        limit = self.limit_of(principal.name)
        requests = self._bucket(self._requests, principal.name, limit.requests_per_minute)
        tokens = self._bucket(self._tokens, principal.name, limit.tokens_per_minute)
        if requests is not None and (wait := requests.wait_for(1)) > 0:
            metrics.REJECTED.labels("requests_per_minute").inc()
            raise ResourceExhausted(
                f"rate limit of {limit.requests_per_minute:g} requests per minute reached for {principal.name!r}",
                retry_after=wait, quota=f"{principal.name}:requests_per_minute", reason="RATE_LIMITED",
            )
        if tokens is not None and (wait := tokens.wait_for(1)) > 0:
            metrics.REJECTED.labels("tokens_per_minute").inc()
            raise ResourceExhausted(
                f"rate limit of {limit.tokens_per_minute:g} tokens per minute reached for {principal.name!r}",
                retry_after=wait, quota=f"{principal.name}:tokens_per_minute", reason="RATE_LIMITED",
            )
        if requests is not None:
            requests.take(1)
        self.in_flight += 1
        return Ticket(self, principal)

    def _release(self, principal: Principal, tokens: int) -> None:
        self.in_flight -= 1
        bucket = self._tokens.get(principal.name)
        if bucket is not None and tokens:
            bucket.take(tokens)
