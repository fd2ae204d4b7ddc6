"""Shared by every test: offline hub settings and a free loopback port."""

from __future__ import annotations

import os

import pytest

# No model hub here: anything that would download fails fast instead of hanging (subprocesses inherit this).
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"


@pytest.fixture
def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (for processes that must be told their port up front)."""
    from forgeway.server.ports import free_port as free_port_on

    return free_port_on("127.0.0.1")


@pytest.fixture
async def serve_in_process():
    """An async function that serves a service on grpc.aio (port 0) in this process; all are drained after the test.

    `await serve_in_process(service)` returns the RunningServer once the service's start() has finished
    (ready or failed); pass wait=False to get it while start() is still running.
    """
    from forgeway.server.server import start_server
    from forgeway.services.runtime.engine import InferenceEngine
    from forgeway.services.runtime.service import serving

    started = []

    async def serve(service, wait: bool = True):
        running = await start_server(serving(service) if isinstance(service, InferenceEngine) else service)
        started.append(running)
        if wait:
            await running.startup
        return running

    yield serve
    for running in reversed(started):
        await running.drain(0)
