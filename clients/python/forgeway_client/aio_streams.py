"""Asyncio stream objects: a generation's deltas, and a training job's handle (events, wait, cancel, detach)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import grpc

from forgeway.v1 import jobs_pb2

from . import types
from .connection import remaining
from .errors import DeadlineExceededError, from_grpc
from .streams import GenerationCursor, JobCursor, finished

if TYPE_CHECKING:
    from .aio import AsyncClient


class AsyncGenerationStream(GenerationCursor):
    """`async for delta in stream`; afterwards `final` holds the finished Generation; cancel() stops it early."""

    def __aiter__(self) -> AsyncGenerationStream:
        return self

    async def __anext__(self) -> types.Delta:
        while True:
            if self._pending:
                message = self._pending.pop()
            else:
                try:
                    message = await self._call.read()
                except grpc.RpcError as error:
                    raise from_grpc(error) from None
                if message is grpc.aio.EOF:
                    raise StopAsyncIteration
            if (delta := self.accept(message)) is not None:
                return delta

    async def until_done(self) -> types.Generation:
        async for _ in self:
            pass
        return self.finished()

    async def __aenter__(self) -> AsyncGenerationStream:
        return self

    async def __aexit__(self, *exc) -> None:
        if self.final is None:
            self.cancel()


class AsyncTrainingJob(JobCursor):
    """TrainingJob's asyncio twin: `async for event in job.events()`, `await job.wait()`, cancel(), detach()."""

    def __init__(self, client: AsyncClient, job_id: str, *, call: Any = None, after: int = 0):
        super().__init__(job_id, after)
        self._client = client
        self._call = call
        self._head: list[jobs_pb2.JobEvent] = []

    async def events(self) -> AsyncIterator[types.JobEvent]:
        while self._head:
            if (event := self.accept(self._head.pop(0))) is not None:
                yield event
        if (call := self._call) is not None:
            try:
                async for response in _messages(call):
                    if (event := self.accept(response.event)) is not None:
                        yield event
            except grpc.RpcError as rpc_error:
                error = from_grpc(rpc_error)
                if self._call is not None and error.code != grpc.StatusCode.UNAVAILABLE:
                    raise error from None
            finally:
                self._call = None
        async for event in self._watch(None):
            yield event

    async def _watch(self, deadline: float | None) -> AsyncIterator[types.JobEvent]:
        stale = 0
        while not self.done:
            seen = self.last_sequence
            try:
                first, call = await self._client.jobs._watch_call_from(self.watch_request(), remaining(deadline))
                if first is not None and (event := self.accept(first.event)) is not None:
                    yield event
                async for response in _messages(call):
                    if (event := self.accept(response.event)) is not None:
                        yield event
            except grpc.RpcError as rpc_error:
                error = from_grpc(rpc_error)
                stale = 0 if self.last_sequence > seen else stale + 1
                if error.code != grpc.StatusCode.UNAVAILABLE or stale >= self._client.connection.retry.attempts:
                    raise error from None
                continue
            if not self.done:
                self.settle(await self.get())

    async def wait(self, timeout: float | None = None, *, check: bool = False) -> types.Job:
        if timeout is None:
            async for _ in self.events():
                pass
        else:
            self.detach()
            try:
                async for _ in self._watch(time.monotonic() + timeout):
                    pass
            except DeadlineExceededError:
                state = (await self.get()).state
                raise DeadlineExceededError(f"job {self.id} still {state} after {timeout:g}s") from None
        return finished(await self.get(), check)

    async def get(self) -> types.Job:
        return await self._client.jobs.get(self.id)

    async def cancel(self) -> types.Job:
        return await self._client.jobs.cancel(self.id)

    def detach(self) -> None:
        if self._call is not None:
            self._call.cancel()
            self._call = None


async def _messages(call: Any) -> AsyncIterator[Any]:
    """The rest of a stream whose first message was read with read() (grpc.aio forbids mixing it with `async for`)."""
    while (message := await call.read()) is not grpc.aio.EOF:
        yield message
