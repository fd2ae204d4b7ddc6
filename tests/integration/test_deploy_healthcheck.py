"""deploy/docker/healthcheck.py, the images' HEALTHCHECK, against a real server: SERVING, still loading, and down."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from forgeway.services.echo.engine import EchoEngine, EchoSettings

SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "docker" / "healthcheck.py"


async def healthcheck(port: int) -> tuple[int, str]:
    """Run the script as the image does (FORGEWAY_PORT in the environment) without blocking the server's loop."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(SCRIPT), env={**os.environ, "FORGEWAY_PORT": str(port)},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(), timeout=60)
    return process.returncode, out.decode()


class SlowStartEcho(EchoEngine):
    """The echo engine, held in start() until released: the state of a backend still loading its model."""

    def __init__(self, settings: EchoSettings):
        super().__init__(settings)
        self.release = asyncio.Event()

    async def start(self) -> None:
        await self.release.wait()


async def test_healthy_when_serving(serve_in_process):
    running = await serve_in_process(EchoEngine(EchoSettings(port=0, metrics_port=-1)))
    code, out = await healthcheck(running.port)
    assert code == 0 and "SERVING" in out


async def test_unhealthy_while_loading_then_healthy(serve_in_process):
    engine = SlowStartEcho(EchoSettings(port=0, metrics_port=-1))
    running = await serve_in_process(engine, wait=False)
    code, out = await healthcheck(running.port)
    assert code == 1 and "NOT_SERVING" in out
    engine.release.set()
    await running.startup
    code, out = await healthcheck(running.port)
    assert code == 0, out


async def test_unhealthy_when_nothing_listens(free_port):
    code, out = await healthcheck(free_port)
    assert code == 1 and "UNAVAILABLE" in out
