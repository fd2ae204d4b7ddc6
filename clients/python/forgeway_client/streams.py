"""Synchronous stream objects: a generation's deltas, and a training job's handle (events, wait, cancel, detach)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import grpc

from forgeway.core.tools import ToolCallAssembler
from forgeway.v1 import jobs_pb2

from . import convert, types
from .errors import DeadlineExceededError, InternalError, JobFailedError, UnavailableError, from_grpc

if TYPE_CHECKING:
    from .client import Client


class GenerationCursor:
    """Bookkeeping shared by the sync and async generation streams: the texts, reasoning and tool calls received, and
    the final Generation."""

    def __init__(self, call: Any, first: Any):
        self._call = call
        self._pending = [first] if first is not None else []
        self._texts: dict[int, list[str]] = {}
        self._reasoning: dict[int, list[str]] = {}
        self._calls: dict[int, ToolCallAssembler] = {}
        self.final: types.Generation | None = None

    def accept(self, message: Any) -> types.Delta | None:
        """The delta a GenerateStream message carries (its text, reasoning and tool-call pieces recorded), or None
        for the final message (kept in `final`)."""
        if message.WhichOneof("event") == "delta":
            delta = convert.delta(message.delta)
            self._texts.setdefault(delta.index, []).append(delta.text)
            self._reasoning.setdefault(delta.index, []).append(delta.reasoning)
            for piece in delta.tool_calls:
                self._calls.setdefault(delta.index, ToolCallAssembler()).add(piece)
            return delta
        self.final = convert.generation(message.final)
        return None

    @property
    def text(self) -> str:
        """The first choice's text received so far."""
        return "".join(self._texts.get(0, ()))

    @property
    def reasoning(self) -> str:
        """The first choice's reasoning received so far."""
        return "".join(self._reasoning.get(0, ()))

    def tool_calls(self, index: int = 0) -> tuple[types.ToolCall, ...]:
        """Choice `index`'s tool calls, put together from the pieces received so far."""
        assembler = self._calls.get(index)
        return tuple(types.ToolCall(c.id, c.name, c.arguments) for c in assembler.calls()) if assembler else ()

    def finished(self) -> types.Generation:
        """The final Generation of a stream read to its end."""
        if self.final is None:
            raise InternalError("the generation stream ended without its final response")
        return self.final

    def cancel(self) -> None:
        self._call.cancel()


class GenerationStream(GenerationCursor):
    """Iterate the deltas of a generation; afterwards `final` holds the finished Generation.

    Use it as a context manager (or call cancel()) to stop generating early: the backend stops within a few tokens.
    """

    def __iter__(self) -> Iterator[types.Delta]:
        return self

    def __next__(self) -> types.Delta:
        while True:
            if self._pending:
                message = self._pending.pop()
            else:
                try:
                    message = next(self._call)
                except grpc.RpcError as error:
                    raise from_grpc(error) from None
            if (delta := self.accept(message)) is not None:
                return delta

    def until_done(self) -> types.Generation:
        """Read to the end and return the final Generation."""
        for _ in self:
            pass
        return self.finished()

    def __enter__(self) -> GenerationStream:
        return self

    def __exit__(self, *exc) -> None:
        if self.final is None:
            self.cancel()


class JobCursor:
    """Bookkeeping shared by the sync and async job handles: the last sequence seen and the final state."""

    def __init__(self, job_id: str, after: int = 0):
        self.id = job_id
        self.last_sequence = after
        self.final_state: str | None = None

    @property
    def done(self) -> bool:
        return self.final_state is not None

    def accept(self, message: jobs_pb2.JobEvent) -> types.JobEvent | None:
        """The event, or None for one already seen (a resumed stream never repeats or skips one). Sequence 0 is a
        gateway's notice outside the trainer's numbering (a fallback): passed on, never counted."""
        if message.sequence and message.sequence <= self.last_sequence:
            return None
        self.last_sequence = max(self.last_sequence, message.sequence)
        event = convert.job_event(message)
        if event.terminal:
            self.final_state = event.state
        return event

    def settle(self, job: types.Job) -> None:
        """After a watch that ended without the final state: done if the record says so (the final event came
        before `after`), else the stream was cut short."""
        if not job.done:
            raise UnavailableError(f"the watch of job {self.id} ended before the job did")
        self.final_state = job.state

    def watch_request(self) -> jobs_pb2.WatchJobRequest:
        return jobs_pb2.WatchJobRequest(job_id=self.id, after_sequence=self.last_sequence)


def finished(job: types.Job, check: bool) -> types.Job:
    if check and job.state != "succeeded":
        raise JobFailedError(job)
    return job


class TrainingJob(JobCursor):
    """A training job: iterate events() (progress, logs, state changes, artifact), wait() for its end, cancel() it,
    or detach() and re-attach later with client.job(job_id, after=last_sequence). The job outlives this handle."""

    def __init__(self, client: Client, job_id: str, *, call: Any = None, head: list[types.JobEvent] | None = None,
                 after: int = 0):
        super().__init__(job_id, after)
        self._client = client
        self._call = call
        self._head = list(head or ())

    def __repr__(self) -> str:
        return f"TrainingJob({self.id!r}, last_sequence={self.last_sequence})"

    def events(self) -> Iterator[types.JobEvent]:
        """Every event from where this handle stands until the job ends: first the Train stream's, then (after a
        detach or a dropped connection) WatchJob's from the last sequence seen."""
        while self._head:
            event = self._head.pop(0)
            self.last_sequence = max(self.last_sequence, event.sequence)
            if event.terminal:
                self.final_state = event.state
            yield event
        if (call := self._call) is not None:
            try:
                for response in call:
                    if (event := self.accept(response.event)) is not None:
                        yield event
            except grpc.RpcError as rpc_error:
                error = from_grpc(rpc_error)
                if self._call is not None and error.code != grpc.StatusCode.UNAVAILABLE:  # not detached, not dropped
                    raise error from None
            finally:
                self._call = None
        yield from self._watch(None)

    def _watch(self, deadline: float | None) -> Iterator[types.JobEvent]:
        stale = 0  # reconnects in a row that brought nothing new
        while not self.done:
            seen = self.last_sequence
            timeout = None if deadline is None else max(0.001, deadline - time.monotonic())
            first, call = self._client.jobs._watch_call_from(self.watch_request(), timeout)
            try:
                for response in ([first] if first is not None else []):
                    if (event := self.accept(response.event)) is not None:
                        yield event
                for response in call:
                    if (event := self.accept(response.event)) is not None:
                        yield event
            except grpc.RpcError as rpc_error:
                error = from_grpc(rpc_error)
                if error.code != grpc.StatusCode.UNAVAILABLE:
                    raise error from None
                stale = 0 if self.last_sequence > seen else stale + 1
                if stale >= self._client.connection.retry.attempts:
                    raise error from None
                continue
            if not self.done:  # ended without the final state: watched after it, or the server went away
                self.settle(self.get())

    def wait(self, timeout: float | None = None, *, check: bool = False) -> types.Job:
        """Follow the job until it ends and return its record; with check=True a failed or cancelled job raises
        JobFailedError. A timeout detaches and raises DeadlineExceededError (the job keeps running)."""
        if timeout is None:
            for _ in self.events():
                pass
        else:
            self.detach()
            deadline = time.monotonic() + timeout
            try:
                for _ in self._watch(deadline):
                    pass
            except DeadlineExceededError:
                raise DeadlineExceededError(f"job {self.id} still {self.get().state} after {timeout:g}s") from None
        return finished(self.get(), check)

    def get(self) -> types.Job:
        return self._client.jobs.get(self.id)

    def cancel(self) -> types.Job:
        return self._client.jobs.cancel(self.id)

    def detach(self) -> None:
        """Close the Train stream; the job keeps running and events() continues from WatchJob."""
        if self._call is not None:
            self._call.cancel()
            self._call = None
