"""Stream relay: read the backend ahead of the caller, and merge deltas that queued up while the caller was slower."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

from forgeway.v1 import generate_pb2

async def read_ahead(source: AsyncIterator[Any], limit: int = 256) -> AsyncIterator[list[Any]]:
    """Yields lists of the items `source` produced since the last yield: reading the next one overlaps with the
    caller sending the previous ones. Past `limit` waiting items the backend is not read until the caller catches
    up. Closing this generator (the caller went away) cancels the reading, and with it the backend call."""
    buffer: deque[Any] = deque()
    ready, space = asyncio.Event(), asyncio.Event()
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

    task = asyncio.create_task(pump())
    try:
        while True:
            await ready.wait()
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
    """Merge consecutive deltas of the same choice into one (text and logprobs in order); other messages stay."""
    merged: list[generate_pb2.GenerateStreamResponse] = []
    for message in messages:
        if merged and message.HasField("delta") and merged[-1].HasField("delta") and (
            merged[-1].delta.index == message.delta.index
        ):
            merged[-1].delta.text += message.delta.text
            merged[-1].delta.logprobs.extend(message.delta.logprobs)
        else:
            merged.append(message)
    return merged
