"""Real parts for tests and benchmarks: echo backends as processes, and a gateway in this event loop."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from forgeway.client.testing import wait_serving
from forgeway.services.runtime.server import RunningServer, start_server
from forgeway.up import free_port

from .service import GatewayService
from .settings import GatewaySettings


class EchoProcess:
    """`forgeway serve echo` in its own process on a fixed loopback port, so it can be killed and restarted there."""

    def __init__(self, model_name: str = "echo", token_delay: float = 0.0, port: int = 0, log_dir: Path | None = None):
        self.model_name, self.token_delay = model_name, token_delay
        self.port = port or free_port("127.0.0.1")
        self.log_path = (log_dir or Path("/tmp")) / f"echo-{self.port}.log"
        self.process: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> EchoProcess:
        command = [sys.executable, "-m", "forgeway.cli", "serve", "echo", "--port", str(self.port),
                   "--model-name", self.model_name, "--token-delay", str(self.token_delay), "--metrics-port", "-1",
                   "--grace-seconds", "0", "--log-format", "text"]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
        return self

    def wait_serving(self, timeout: float = 30.0) -> EchoProcess:
        wait_serving(self.address, timeout, self.process, self.log_path)
        return self

    def kill(self) -> None:
        """kill -9."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


def start_echoes(*specs: tuple[str, float], log_dir: Path | None = None) -> list[EchoProcess]:
    """Start several echo backends at once ((model name, token delay) each) and wait until all serve."""
    echoes = [EchoProcess(name, delay, log_dir=log_dir).start() for name, delay in specs]
    for echo in echoes:
        echo.wait_serving()
    return echoes


def gateway_settings(backends: list, **settings) -> GatewaySettings:
    """Settings for an in-process gateway on a free port, no HTTP and no metrics port unless asked for."""
    defaults = {"port": 0, "metrics_port": -1, "http_port": -1, "grace_seconds": 0.5}
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


async def wait_until(condition, timeout: float, what: str, interval: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(interval)
