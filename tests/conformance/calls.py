"""Requests and response readers the conformance checks share."""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass

import grpc

from forgeway.core.errors import RemoteError, from_rpc_error
from forgeway.v1 import backend_pb2_grpc, generate_pb2

from .endpoints import Endpoint

TIMEOUT = 60.0


def generate_request(ep: Endpoint, *, max_tokens: int | None = None, stop: tuple[str, ...] = (),
                     **fields) -> generate_pb2.GenerateRequest:
    """A greedy request (temperature unset) for the endpoint's model and prompt."""
    sampling = generate_pb2.SamplingParams(stop=list(stop))
    if max_tokens is not None:
        sampling.max_tokens = max_tokens
    fields.setdefault("model", ep.model)
    fields.setdefault("prompt", ep.prompt)
    return generate_pb2.GenerateRequest(sampling=sampling, **fields)


@dataclass
class Streamed:
    """Everything one GenerateStream call sent, in order."""

    messages: list[generate_pb2.GenerateStreamResponse]

    @property
    def finals(self) -> list[generate_pb2.GenerateResponse]:
        return [m.final for m in self.messages if m.WhichOneof("event") == "final"]

    @property
    def final(self) -> generate_pb2.GenerateResponse:
        assert len(self.finals) == 1, f"expected exactly one final message, got {len(self.finals)}"
        return self.finals[0]

    def text(self, index: int = 0) -> str:
        deltas = [m.delta for m in self.messages if m.WhichOneof("event") == "delta"]
        return "".join(d.text for d in deltas if d.index == index)


async def stream(backend: backend_pb2_grpc.BackendServiceStub, request: generate_pb2.GenerateRequest) -> Streamed:
    return Streamed([message async for message in backend.GenerateStream(request, timeout=TIMEOUT)])


async def rpc_error(call: Awaitable) -> RemoteError:
    """Await a unary call that must fail; its error, read the way clients read it."""
    try:
        reply = await call
    except grpc.aio.AioRpcError as exc:
        return from_rpc_error(exc)
    raise AssertionError(f"expected an error, got {type(reply).__name__}: {reply}")


async def stream_error(call: grpc.aio.UnaryStreamCall) -> RemoteError:
    """Drain a streaming call that must fail; its error, read the way clients read it."""
    received = []
    try:
        async for message in call:
            received.append(message)
    except grpc.aio.AioRpcError as exc:
        return from_rpc_error(exc)
    raise AssertionError(f"expected an error, the stream ended normally after {len(received)} messages")
