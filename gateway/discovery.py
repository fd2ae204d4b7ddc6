"""Discovery: turns configured backends (static or dns:///) into live endpoints, re-resolving names on an interval."""

from __future__ import annotations

import asyncio
import logging
import socket

from .endpoint import Endpoint, EndpointSpec, channel_options
from .settings import ADDRESS, BackendConfig, GatewaySettings

log = logging.getLogger("forgeway.gateway.discovery")

DNS_PREFIX = "dns:///"


def _join(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def resolve(backend: BackendConfig) -> list[EndpointSpec]:
    """The endpoints of one backend: itself, or one per address its DNS name resolves to."""
    if not backend.address.startswith(DNS_PREFIX):
        return [EndpointSpec(backend.label, backend.address, backend.label, backend.kind, backend.tls)]
    match = ADDRESS.match(backend.address)
    assert match is not None  # validated in settings
    host, port = match.group(2).strip("[]"), int(match.group(3))
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses = sorted({_join(info[4][0], port) for info in infos})
    return [
        EndpointSpec(f"{backend.label}/{address}", address, backend.label, backend.kind, backend.tls, authority=host)
        for address in addresses
    ]


class EndpointPool:
    """Every endpoint behind the gateway, kept in step with the configured backends."""

    def __init__(self, settings: GatewaySettings):
        self.settings = settings
        self.endpoints: dict[str, Endpoint] = {}
        self._last: dict[str, list[EndpointSpec]] = {}
        self._changed = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._closing: set[asyncio.Task] = set()

    def __iter__(self):
        return iter(list(self.endpoints.values()))

    def __len__(self) -> int:
        return len(self.endpoints)

    async def start(self) -> None:
        await self.sync()
        self._task = asyncio.create_task(self._loop())

    async def settle(self, timeout: float) -> None:
        """Wait (at most timeout) until every endpoint has answered once: its capabilities read, or found down."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline and any(
            e.capabilities is None and not e.capabilities_error and e.health_reason == "not checked yet" or
            e.healthy and e.capabilities is None for e in self.endpoints.values()
        ):
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await asyncio.gather(*(e.close(0) for e in self.endpoints.values()), *self._closing, return_exceptions=True)
        self.endpoints.clear()

    def configure(self, settings: GatewaySettings) -> None:
        """New settings (a reload): re-resolve now and apply breaker and refresh settings to existing endpoints."""
        self.settings = settings
        for endpoint in self.endpoints.values():
            endpoint.breaker.config = settings.breaker
            endpoint.refresh_seconds = settings.capabilities_refresh_seconds
            endpoint.connect_timeout = settings.connect_timeout_seconds
        self._changed.set()

    async def _loop(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._changed.wait(), self.settings.dns_refresh_seconds)
            except TimeoutError:
                pass
            self._changed.clear()
            try:
                await self.sync()
            except Exception:  # keep discovering: the next round may succeed
                log.exception("endpoint discovery failed")

    async def sync(self) -> None:
        """Resolve every backend and open/close endpoints to match. A failed lookup keeps that backend's last set."""
        wanted: dict[str, EndpointSpec] = {}
        found: dict[str, list[EndpointSpec]] = {}
        for backend in self.settings.backends:
            try:
                specs = await resolve(backend)
            except OSError as exc:
                specs = self._last.get(backend.label, [])
                log.warning("cannot resolve %s (%s); keeping %d endpoints", backend.address, exc, len(specs))
            found[backend.label] = specs
            wanted.update((spec.key, spec) for spec in specs)
        self._last = found
        for key, endpoint in list(self.endpoints.items()):
            if wanted.get(key) != endpoint.spec:
                log.info("endpoint %s removed", key)
                del self.endpoints[key]
                task = asyncio.create_task(endpoint.close(self.settings.grace_seconds))
                self._closing.add(task)
                task.add_done_callback(self._closing.discard)
        options = channel_options(self.settings.max_message_bytes, self.settings.keepalive_seconds)
        for key, spec in wanted.items():
            if key in self.endpoints:
                continue
            try:
                endpoint = Endpoint(spec, self.settings.breaker, options, self.settings.capabilities_refresh_seconds,
                                    self.settings.connect_timeout_seconds)
            except (OSError, ValueError) as exc:  # unreadable certificate files
                log.error("endpoint %s not added: %s", key, exc)
                continue
            self.endpoints[key] = endpoint
            endpoint.start()
            log.info("endpoint %s added (%s)", key, spec.address)
