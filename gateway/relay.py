"""Stream relay: read the backend ahead of the caller; merge deltas that queued up or came within a send interval."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

from forgeway.v1 import generate_pb2


async def read_ahead(source: AsyncIterator[Any], limit: int = 256, interval: float = 0.0) -> AsyncIterator[list[Any]]:
    """Yields lists of the items `source` produced since the last yield: reading the next one overlaps with the
    caller sending the previous ones. Past `limit` waiting items the backend is not read until the caller catches
    up. Closing this generator (the caller went away) cancels the reading, and with it the backend call.

    `interval`: least seconds between two yields. Items arriving sooner wait (at most that long) and go out with
    the next batch, so a fast stream costs one send per interval instead of one per item; the first batch, items
    slower than the interval and the end of the stream go out at once."""
    buffer: deque[Any] = deque()
    ready, space, finished = asyncio.Event(), asyncio.Event(), asyncio.Event()
    space.set()
    outcome: list[BaseException | None] = []

    async def pump() -> None:
        error = None
        try:
            async for item in source:
                buffer.append(item)
                ready.set()
                if len(buffer) >= limit:
                    space.clear()
                    await space.wait()
        except BaseException as exc:  # handed to the caller, which raises it in its own context
            error = exc
        finally:
            outcome.append(error)
            ready.set()
            finished.set()

    task = asyncio.create_task(pump())
    loop = asyncio.get_running_loop()
    due = 0.0  # loop time before which the next batch waits
    try:
        while True:
            await ready.wait()
            if interval:
                wait = due - loop.time()
                if wait > 0 and not outcome:  # the end of the stream (or its error) cuts the wait short
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(finished.wait(), wait)
                due = loop.time() + interval
            ready.clear()
            batch = list(buffer)
            buffer.clear()
            space.set()
            if batch:
                yield batch
            if outcome and not buffer:
                if outcome[0] is not None:
                    raise outcome[0]
                return
    finally:
        if not task.done():
            task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def coalesce(messages: list[generate_pb2.GenerateStreamResponse]) -> list[generate_pb2.GenerateStreamResponse]:
    """Merge consecutive deltas of the same choice into one (text, reasoning, logprobs and tool-call pieces, each in
    order); other messages stay."""
    merged: list[generate_pb2.GenerateStreamResponse] = []
    for message in messages:
        if merged and message.HasField("delta") and merged[-1].HasField("delta") and (
            merged[-1].delta.index == message.delta.index
        ):
            into = merged[-1].delta
            into.text += message.delta.text
            into.reasoning += message.delta.reasoning
            into.logprobs.extend(message.delta.logprobs)
            for piece in message.delta.tool_calls:
                add_piece(into.tool_calls, piece)
        else:
            merged.append(message)
    return merged


def add_piece(pieces, piece: generate_pb2.ToolCallDelta) -> None:
    """Append a tool-call piece; more arguments of the call the last piece belongs to extend that piece, so a call's
    id and name stay on its first piece and one merged delta holds one piece per call."""
    if pieces and pieces[-1].index == piece.index and not piece.id and not piece.name:
        pieces[-1].arguments += piece.arguments
    else:
        pieces.add().CopyFrom(piece)
