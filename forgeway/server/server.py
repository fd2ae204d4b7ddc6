"""serve(): run one service on grpc.aio with health, reflection, limits, metrics and graceful drain."""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Protocol

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from .interceptor import RuntimeInterceptor
from .metrics import start_metrics_server
from .settings import ServiceSettings, SettingsError

log = logging.getLogger("forgeway.server")

# After the last call finishes in a drain: time for its status to go out before open health watches are cut.
FLUSH_SECONDS = 0.5
READINESS_POLL_SECONDS = 0.5
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class Service(Protocol):
    """What serve() runs: an inference engine, a trainer or the gateway."""

    kind: str
    settings: ServiceSettings
    ready: bool
    failure: str

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def servicers(self) -> list[tuple[object, object, str]]: ...


def server_options(settings: ServiceSettings) -> list[tuple[str, int]]:
    keepalive_ms = int(settings.keepalive_seconds * 1000)
    return [
        ("grpc.max_send_message_length", settings.max_message_bytes),
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.keepalive_time_ms", keepalive_ms),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.so_reuseport", 0),
    ]


def server_credentials(settings: ServiceSettings) -> grpc.ServerCredentials | None:
    """TLS (and mTLS with a client CA) from the settings' PEM files, or None for plaintext."""
    if settings.tls_cert_file is None and settings.tls_key_file is None:
        if settings.tls_client_ca_file is not None:
            raise SettingsError("invalid setting tls_client_ca_file: needs tls_cert_file and tls_key_file")
        return None
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        raise SettingsError("invalid setting tls_cert_file: tls_cert_file and tls_key_file go together")
    try:
        pair = (settings.tls_key_file.read_bytes(), settings.tls_cert_file.read_bytes())
        ca = settings.tls_client_ca_file.read_bytes() if settings.tls_client_ca_file else None
    except OSError as exc:
        raise SettingsError(f"invalid setting tls: cannot read {exc.filename}: {exc.strerror}") from None
    return grpc.ssl_server_credentials([pair], root_certificates=ca, require_client_auth=ca is not None)


class RunningServer:
    """A started server: its bound port, health servicer and the service behind it."""

    def __init__(
        self, service: Service, server: grpc.aio.Server, port: int, health_servicer, metrics_port: int,
        interceptor: RuntimeInterceptor,
    ):
        self.service, self.server, self.port, self.interceptor = service, server, port, interceptor
        self.health = health_servicer
        self.metrics_port = metrics_port
        self.names = [name for _, _, name in service.servicers()]
        self.startup: asyncio.Task | None = None
        self.follower: asyncio.Task | None = None

    @property
    def address(self) -> str:
        return f"{self.service.settings.host}:{self.port}"

    async def _start_service(self) -> None:
        try:
            await self.service.start()
        except Exception as exc:  # the service stays NOT_SERVING with the reason in Capabilities
            self.service.failure = f"{type(exc).__name__}: {exc}"
            log.error("%s failed to start: %s", self.service.kind, self.service.failure, exc_info=exc)
            return
        self.service.ready = True
        await self._publish(True)
        log.info("%s serving on %s", self.service.kind, self.address)
        self.follower = asyncio.create_task(self._follow_readiness())

    async def _publish(self, serving: bool) -> None:
        for name in ("", *self.names):
            await self.health.set(name, SERVING if serving else NOT_SERVING)

    async def _follow_readiness(self) -> None:
        """Health follows the service's readiness for its whole life (e.g. a proxy whose upstream went away),
        until drain() cancels this task."""
        published = True
        while True:
            await asyncio.sleep(READINESS_POLL_SECONDS)
            if self.service.ready != published:
                published = self.service.ready
                await self._publish(published)

    async def drain(self, grace: float | None = None) -> None:
        """Stop taking calls (health NOT_SERVING, new calls UNAVAILABLE), let in-flight ones finish, stop."""
        grace = self.service.settings.grace_seconds if grace is None else grace
        await self.health.enter_graceful_shutdown()
        self.service.ready = False
        self.interceptor.draining = True  # new calls get UNAVAILABLE from here on
        # Wait for the calls doing work, not for health watches (the gateway keeps one open on every backend),
        # which would otherwise hold every drain for the whole grace period. One stop() call only: concurrent
        # stops crash grpcio.
        deadline = asyncio.get_running_loop().time() + grace
        while self.interceptor.active and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        await self.server.stop(min(grace, FLUSH_SECONDS))
        for task in (self.startup, self.follower):
            if task and not task.done():
                task.cancel()
        await self.service.stop()


async def start_server(service: Service) -> RunningServer:
    """Bind and start; the service loads in the background while health says NOT_SERVING."""
    settings = service.settings
    interceptor = RuntimeInterceptor(service.kind)
    server = grpc.aio.server(interceptors=[interceptor], options=server_options(settings))
    names = []
    for add, servicer, name in service.servicers():
        add(servicer, server)
        names.append(name)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for name in ("", *names):
        await health_servicer.set(name, NOT_SERVING)
    reflection.enable_server_reflection(
        [*names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME], server
    )
    address = f"{settings.host}:{settings.port}"
    credentials = server_credentials(settings)
    port = server.add_secure_port(address, credentials) if credentials else server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"cannot bind {settings.host}:{settings.port}")
    await server.start()
    metrics_port = start_metrics_server(settings.host, settings.metrics_port)
    running = RunningServer(service, server, port, health_servicer, metrics_port, interceptor)
    service.bound_port = port  # the gateway needs it to point its HTTP shim at itself when port is 0
    running.startup = asyncio.create_task(running._start_service())
    log.info(
        "%s listening", service.kind,
        extra={"address": running.address, "metrics_port": metrics_port, "instance_id": settings.instance_id},
    )
    return running


async def serve(service: Service) -> None:
    """Run until SIGTERM or SIGINT, then drain gracefully."""
    running = await start_server(service)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("%s draining (grace %.1fs)", service.kind, service.settings.grace_seconds)
    await running.drain()
