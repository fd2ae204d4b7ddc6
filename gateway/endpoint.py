"""One backend endpoint as the gateway sees it: channel, health watch, capabilities, breaker and in-flight count."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from forgeway.core.capabilities import features_from_proto, model_from_proto
from forgeway.core.models import ModelInfo
from forgeway.v1 import backend_pb2_grpc, capabilities_pb2, datasets_pb2_grpc, jobs_pb2_grpc, models_pb2_grpc

from . import metrics
from .breaker import STATE_VALUE, BreakerState, CircuitBreaker
from .settings import BreakerConfig, TlsConfig

log = logging.getLogger("forgeway.gateway.endpoint")

SERVING = "SERVING"
UNKNOWN = "UNKNOWN"
HEALTH_BACKOFF_MIN, HEALTH_BACKOFF_MAX = 0.1, 1.0


@dataclass(frozen=True)
class EndpointSpec:
    """Where one endpoint is and how to reach it."""

    key: str  # unique label: the backend's name, plus "/ip:port" for addresses found by DNS
    address: str  # host:port to dial
    backend: str  # label of the configured backend it came from
    kind: str = ""
    tls: TlsConfig | None = None
    authority: str = ""  # name its TLS certificate is checked against when dialled by IP


def channel_options(max_message_bytes: int, keepalive_seconds: float) -> list[tuple[str, int | str]]:
    return [
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.keepalive_time_ms", int(keepalive_seconds * 1000)),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.initial_reconnect_backoff_ms", 100),
        ("grpc.min_reconnect_backoff_ms", 100),
        ("grpc.max_reconnect_backoff_ms", 1_000),
        ("grpc.enable_retries", 0),
    ]


def open_channel(spec: EndpointSpec, options: list) -> grpc.aio.Channel:
    if spec.tls is None:
        return grpc.aio.insecure_channel(spec.address, options=options)
    tls = spec.tls

    def read(path: str | None) -> bytes | None:
        return Path(path).read_bytes() if path else None

    credentials = grpc.ssl_channel_credentials(read(tls.ca_file), read(tls.key_file), read(tls.cert_file))
    name = tls.server_name or spec.authority
    if name:
        options = [*options, ("grpc.ssl_target_name_override", name)]
    return grpc.aio.secure_channel(spec.address, credentials, options=options)


class Endpoint:
    """A live endpoint: watches its health, keeps its last Capabilities, counts the calls sent to it."""

    def __init__(self, spec: EndpointSpec, breaker: BreakerConfig, options: list, refresh_seconds: float,
                 connect_timeout: float):
        self.spec = spec
        self.key = spec.key
        self.channel = open_channel(spec, options)
        self.backend = backend_pb2_grpc.BackendServiceStub(self.channel)
        self.jobs = jobs_pb2_grpc.JobServiceStub(self.channel)
        self.datasets = datasets_pb2_grpc.DatasetServiceStub(self.channel)
        self.models = models_pb2_grpc.ModelServiceStub(self.channel)
        self._health = health_pb2_grpc.HealthStub(self.channel)
        self.breaker = CircuitBreaker(breaker, on_change=self._breaker_changed)
        self.refresh_seconds, self.connect_timeout = refresh_seconds, connect_timeout
        self.health = UNKNOWN
        self.health_reason = "not checked yet"
        self.capabilities: capabilities_pb2.CapabilitiesResponse | None = None
        self.capabilities_error = ""
        self.model_index: dict[str, ModelInfo] = {}
        self.feature_names: frozenset[str] = frozenset()
        self.rpcs: frozenset[str] = frozenset()
        self.in_flight = 0
        self._refresh_now = asyncio.Event()
        self._shared_refresh: asyncio.Future | None = None
        self._shared_refresh_began = 0.0
        self._tasks: list[asyncio.Task] = []
        self._gauge_in_flight = metrics.ENDPOINT_IN_FLIGHT.labels(self.key)
        metrics.BREAKER_STATE.labels(self.key).set(0)
        metrics.ENDPOINT_HEALTHY.labels(self.key).set(0)

    # -- state the router reads -------------------------------------------------------------------------------------
    @property
    def healthy(self) -> bool:
        return self.health == SERVING

    @property
    def kind(self) -> str:
        return self.capabilities.backend if self.capabilities is not None else self.spec.kind

    @property
    def available(self) -> bool:
        return self.capabilities is not None and self.capabilities.availability.available

    @property
    def unavailable_reason(self) -> str:
        if self.capabilities is None:
            return f"no capabilities yet ({self.capabilities_error or self.health_reason})"
        return self.capabilities.availability.reason or "unavailable"

    @property
    def score(self) -> int:
        queued = self.capabilities.load.queue_depth if self.capabilities is not None else 0
        return self.in_flight + queued

    def serves(self, rpc: str) -> bool:
        return rpc in self.rpcs

    def started_call(self) -> None:
        self.in_flight += 1
        self._gauge_in_flight.set(self.in_flight)

    def ended_call(self) -> None:
        self.in_flight -= 1
        self._gauge_in_flight.set(self.in_flight)

    # -- lifecycle ---------------------------------------------------------------------------------------------------
    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._watch_health()), asyncio.create_task(self._refresh_loop())]

    async def close(self, grace: float | None = None) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.channel.close(grace)
        for gauge in (metrics.BREAKER_STATE, metrics.ENDPOINT_HEALTHY, metrics.ENDPOINT_IN_FLIGHT):
            try:
                gauge.remove(self.key)
            except KeyError:
                pass

    def _breaker_changed(self, state: BreakerState) -> None:
        metrics.BREAKER_STATE.labels(self.key).set(STATE_VALUE[state])
        log.warning("endpoint %s: circuit breaker %s", self.key, state.value)

    def _set_health(self, health: str, reason: str) -> None:
        self.health_reason = reason
        if health == self.health:
            return
        log.info("endpoint %s: health %s -> %s (%s)", self.key, self.health, health, reason)
        self.health = health
        metrics.ENDPOINT_HEALTHY.labels(self.key).set(1 if health == SERVING else 0)
        self._refresh_now.set()

    async def _watch_health(self) -> None:
        """Follow grpc.health.v1 Watch of the whole server, reconnecting with jittered exponential backoff."""
        backoff = HEALTH_BACKOFF_MIN
        while True:
            try:
                call = self._health.Watch(health_pb2.HealthCheckRequest(service=""))
                async for reply in call:
                    backoff = HEALTH_BACKOFF_MIN
                    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
                    self._set_health(status, "health watch")
                self._set_health(UNKNOWN, "health watch ended")
            except grpc.aio.AioRpcError as exc:
                self._set_health(UNKNOWN, f"health watch failed: {exc.code().name} {exc.details()}")
            await asyncio.sleep(backoff * (1 + random.random() * 0.2))
            backoff = min(backoff * 2, HEALTH_BACKOFF_MAX)

    async def _refresh_loop(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._refresh_now.wait(), self.refresh_seconds)
            except TimeoutError:
                pass
            self._refresh_now.clear()
            if self.health != UNKNOWN or self.capabilities is None:
                try:
                    await self.refresh()
                except Exception:  # a malformed answer: keep the last one, try again next time
                    log.exception("endpoint %s: reading capabilities failed", self.key)

    async def refresh_shared(self, since: float) -> None:
        """refresh(), joined by every caller that asks while one begun at or after `since` (monotonic) is in flight:
        a burst of requests for a model nobody knows costs one Capabilities call per endpoint, not one per request,
        and no caller relies on an answer read before it asked."""
        shared = self._shared_refresh
        if shared is None or shared.done() or self._shared_refresh_began < since:
            self._shared_refresh_began = time.monotonic()
            shared = self._shared_refresh = asyncio.ensure_future(self.refresh())
        await asyncio.shield(shared)

    async def refresh(self) -> None:
        """Read Capabilities now; on failure keep the last answer and note why."""
        try:
            caps = await self.backend.Capabilities(capabilities_pb2.CapabilitiesRequest(), timeout=self.connect_timeout)
        except grpc.aio.AioRpcError as exc:
            self.capabilities_error = f"Capabilities failed: {exc.code().name}"
            return
        self.capabilities_error = ""
        self.update(caps)

    def update(self, caps: capabilities_pb2.CapabilitiesResponse) -> None:
        """Take a Capabilities answer as this endpoint's current state."""
        if self.spec.kind and caps.backend != self.spec.kind and (
            self.capabilities is None or self.capabilities.backend != caps.backend
        ):
            log.warning("endpoint %s: configured as %s but reports %s", self.key, self.spec.kind, caps.backend)
        index: dict[str, ModelInfo] = {}
        for model in map(model_from_proto, caps.models):
            for name in model.names:
                index.setdefault(name, model)
        features = features_from_proto(caps.generation)
        self.feature_names = frozenset(features.names() | ({"streaming"} if features.streaming else set()))
        self.model_index = index
        self.rpcs = frozenset(caps.rpcs)
        self.capabilities = caps

    def status(self) -> capabilities_pb2.EndpointStatus:
        status = capabilities_pb2.EndpointStatus(address=self.spec.address, health=self.health,
                                                 breaker=self.breaker.state.value)
        if self.capabilities is not None:
            status.capabilities.CopyFrom(self.capabilities)
            status.capabilities.load.in_flight = max(status.capabilities.load.in_flight, self.in_flight)
        else:
            status.capabilities.availability.reason = self.unavailable_reason
        return status
