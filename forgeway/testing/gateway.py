"""A gateway in this event loop for tests and benchmarks: settings on a free port, start until ready, stop at once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from forgeway.gateway.service import GatewayService
from forgeway.gateway.settings import GatewaySettings
from forgeway.server.server import RunningServer, start_server


def gateway_settings(backends: list, **settings) -> GatewaySettings:
    """Settings for an in-process gateway on a free port, no HTTP, console or metrics port unless asked for (the
    console's tests run it as a process: forgeway.testing.console)."""
    defaults = {"port": 0, "metrics_port": -1, "http_port": -1, "grace_seconds": 0.5, "console": False}
    return GatewaySettings(backends=backends, **{**defaults, **settings})


async def start_gateway(
    settings: GatewaySettings, endpoints: int | None = None, timeout: float = 15.0
) -> RunningServer:
    """Run a gateway in this event loop; returns once it is ready and `endpoints` of them (default all) are SERVING."""
    service = GatewayService(settings)
    running = await start_server(service)
    service.bound_port = running.port
    await wait_until(lambda: service.ready or service.failure, timeout, "the gateway to start")
    if service.failure:
        raise RuntimeError(service.failure)
    wanted = len(settings.backends) if endpoints is None else endpoints
    await wait_until(
        lambda: sum(e.healthy and e.capabilities is not None for e in service.state.pool) >= wanted, timeout,
        f"{wanted} endpoints SERVING behind the gateway",
    )
    return running


async def stop_now(running: RunningServer) -> None:
    """Stop a server at once, without a drain: one server.stop() call (overlapping stop() calls, as a graceful drain
    makes, can crash grpcio 1.85 in its shutdown path)."""
    await running.health.enter_graceful_shutdown()
    running.service.ready = False
    await running.server.stop(0)
    if running.startup is not None and not running.startup.done():
        running.startup.cancel()
    await running.service.stop()


async def wait_until(condition: Callable[[], object], timeout: float, what: str, interval: float = 0.02) -> None:
    """Poll `condition` on this loop until it holds; TimeoutError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(interval)
