"""Server-sent events: open GenerateStream calls, read them as one stream, frame events, cancel on close."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import grpc

from forgeway.v1 import backend_pb2_grpc, generate_pb2

from .errors import OpenAIHTTPError, ParamOf, from_grpc

DONE = b"data: [DONE]\n\n"
HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def event(data: dict) -> bytes:
    return b"data: " + json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode() + b"\n\n"


class GenerationStream:
    """The GenerateStream calls of one HTTP request (one per prompt), read together in arrival order."""

    def __init__(self, calls: list, firsts: list):
        self.calls = calls
        self.firsts = firsts

    @classmethod
    async def open(cls, stub: backend_pb2_grpc.BackendServiceStub, requests: list[generate_pb2.GenerateRequest],
                   metadata, timeout: float, param_of: ParamOf) -> GenerationStream:
        """Start every call and read its first message, so that errors before any token answer an HTTP status."""
        calls = [stub.GenerateStream(r, metadata=metadata, timeout=timeout) for r in requests]
        try:
            firsts = list(await asyncio.gather(*(call.read() for call in calls)))
        except grpc.RpcError as error:
            cls(calls, []).cancel()
            raise from_grpc(error, param_of) from None
        except BaseException:
            cls(calls, []).cancel()
            raise
        if any(first is grpc.aio.EOF for first in firsts):
            cls(calls, []).cancel()
            raise OpenAIHTTPError(502, "the backend closed the stream without a response", code="bad_gateway")
        return cls(calls, firsts)

    def cancel(self) -> None:
        for call in self.calls:
            call.cancel()

    async def messages(self) -> AsyncIterator[tuple[int, generate_pb2.GenerateStreamResponse]]:
        """(prompt index, message) until every call has ended; a gRPC error is raised as grpc.RpcError."""
        if len(self.calls) == 1:
            call, message = self.calls[0], self.firsts[0]
            while message is not grpc.aio.EOF:
                yield 0, message
                message = await call.read()
            return
        queue: asyncio.Queue = asyncio.Queue()

        async def pump(index: int, call, message) -> None:
            try:
                while message is not grpc.aio.EOF:
                    await queue.put((index, message, None))
                    message = await call.read()
                await queue.put((index, None, None))
            except grpc.RpcError as error:
                await queue.put((index, None, error))

        tasks = [asyncio.ensure_future(pump(i, c, f)) for i, (c, f) in enumerate(zip(self.calls, self.firsts))]
        open_calls = len(tasks)
        try:
            while open_calls:
                index, message, error = await queue.get()
                if error is not None:
                    raise error
                if message is None:
                    open_calls -= 1
                    continue
                yield index, message
        finally:
            for task in tasks:
                task.cancel()
