"""Where and how the SDK connects: target, API key, TLS, default deadline, retries on UNAVAILABLE with backoff."""

from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from .errors import APIError

DEFAULT_TARGET = "localhost:50051"  # the gateway of `make up`
TARGET_ENV, API_KEY_ENV = "FORGEWAY_TARGET", "FORGEWAY_API_KEY"
MAX_MESSAGE_BYTES = 64 << 20


@dataclass(frozen=True)
class Tls:
    """TLS to the endpoint: PEM roots (system roots when unset), a client certificate and key for mTLS, and the
    name to verify the server's certificate against."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    server_name: str | None = None

    def credentials(self) -> grpc.ChannelCredentials:
        def read(path: str | None) -> bytes | None:
            return Path(path).expanduser().read_bytes() if path else None

        return grpc.ssl_channel_credentials(read(self.ca_file), read(self.key_file), read(self.cert_file))


@dataclass(frozen=True)
class Retry:
    """Retries of a call answered UNAVAILABLE (before any response arrived), with exponential backoff and jitter.

    `attempts` counts every try, the first included; a server's RetryInfo delay replaces the backoff when longer
    (up to max_backoff). The call's deadline bounds all tries together, and `budget` bounds the total wait of a call
    without one (Train, WatchJob).
    """

    attempts: int = 5
    initial_backoff: float = 0.2
    max_backoff: float = 5.0
    multiplier: float = 2.0
    jitter: float = 0.2
    budget: float = 15.0

    def delay(self, attempt: int, error: APIError, deadline: float | None, waited: float = 0.0) -> float | None:
        """Seconds to wait before try `attempt + 1` (attempt counts from 0; `waited` seconds so far), or None to
        give up and raise."""
        if error.code != grpc.StatusCode.UNAVAILABLE or attempt + 1 >= self.attempts:
            return None
        if error.reason in STANDING_REASONS:
            return None
        backoff = min(self.max_backoff, self.initial_backoff * self.multiplier**attempt)
        backoff *= 1 + random.uniform(0, self.jitter)
        wait = max(backoff, min(error.retry_after or 0.0, self.max_backoff))
        if deadline is not None and time.monotonic() + wait >= deadline:
            return None
        if deadline is None and waited + wait > self.budget:
            return None
        return wait


NO_RETRY = Retry(attempts=1)
# UNAVAILABLE answers that describe a standing condition, not a passing one: retrying cannot help.
STANDING_REASONS = frozenset({"TRAINER_UNAVAILABLE", "UPSTREAM_UNAUTHENTICATED"})


@dataclass(frozen=True)
class Connection:
    """Everything needed to open a channel and make calls on it."""

    target: str = DEFAULT_TARGET
    api_key: str | None = None
    tls: Tls | None = None
    timeout: float | None = 60.0
    retry: Retry = field(default_factory=Retry)

    @classmethod
    def resolve(cls, target: str | None, api_key: str | None, tls: Tls | bool | None, timeout: float | None,
                retry: Retry | int | None) -> Connection:
        """Arguments first, then FORGEWAY_TARGET / FORGEWAY_API_KEY, then the defaults (read at call time)."""
        if isinstance(retry, int):
            retry = Retry(attempts=max(1, retry + 1))
        return cls(
            target=target or os.environ.get(TARGET_ENV) or DEFAULT_TARGET,
            api_key=api_key if api_key is not None else os.environ.get(API_KEY_ENV) or None,
            tls=Tls() if tls is True else (tls or None),
            timeout=timeout,
            retry=retry or Retry(),
        )

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.api_key}"),) if self.api_key else ()

    @property
    def options(self) -> list[tuple[str, int | str]]:
        # Reconnect about as fast as calls retry, so a retried call finds a server that has just come up.
        options: list[tuple[str, int | str]] = [
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.initial_reconnect_backoff_ms", int(self.retry.initial_backoff * 1000) or 100),
            ("grpc.min_reconnect_backoff_ms", int(self.retry.initial_backoff * 1000) or 100),
            ("grpc.max_reconnect_backoff_ms", int(self.retry.max_backoff * 1000) or 1000),
            ("grpc.primary_user_agent", "forgeway-python-sdk"),
        ]
        if self.tls is not None and self.tls.server_name:
            options.append(("grpc.ssl_target_name_override", self.tls.server_name))
        return options

    def deadline(self, timeout: float | None) -> float | None:
        return None if timeout is None else time.monotonic() + timeout

    def channel(self) -> grpc.Channel:
        if self.tls is not None:
            return grpc.secure_channel(self.target, self.tls.credentials(), options=self.options)
        return grpc.insecure_channel(self.target, options=self.options)

    def aio_channel(self) -> grpc.aio.Channel:
        if self.tls is not None:
            return grpc.aio.secure_channel(self.target, self.tls.credentials(), options=self.options)
        return grpc.aio.insecure_channel(self.target, options=self.options)


def remaining(deadline: float | None) -> float | None:
    """Seconds left before a deadline (a tiny positive number once it has passed, so the call fails DEADLINE)."""
    return None if deadline is None else max(0.001, deadline - time.monotonic())


DEFAULT = object()  # "use the client's default timeout"


def call_timeout(connection: Connection, timeout: float | None | object) -> float | None:
    return connection.timeout if timeout is DEFAULT else timeout  # type: ignore[return-value]
