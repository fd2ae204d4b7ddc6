"""Calling services in tests: an inference engine served on a loopback port in this process, and the typed error an
RPC answered with."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

import grpc

from forgeway.core.errors import RemoteError, from_rpc_error


async def serve_engine(engine: Any) -> Any:
    """Serve an InferenceEngine on grpc.aio (port 0) in this process and wait until it is ready; returns the
    RunningServer (drain it when done). Raises with the engine's failure when it does not start."""
    from forgeway.server.server import start_server
    from forgeway.services.runtime.service import serving

    running = await start_server(serving(engine))
    await running.startup
    if not running.service.ready:
        await running.drain(0)
        raise RuntimeError(f"{engine.kind} failed to start: {running.service.failure}")
    return running


async def rpc_failure(call: Awaitable) -> RemoteError:
    """The error an RPC answers with, rebuilt with its rich details; AssertionError when it succeeds."""
    try:
        await call
    except grpc.aio.AioRpcError as exc:
        return from_rpc_error(exc)
    raise AssertionError("expected an error")


def violated_fields(error: RemoteError) -> set[str]:
    """The request fields an INVALID_ARGUMENT answer names (BadRequest field violations)."""
    return {f for f, _ in error.field_violations}
