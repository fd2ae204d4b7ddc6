"""The stream relay: read-ahead batches, the per-stream send interval, and merging of queued deltas."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from forgeway.gateway.relay import coalesce, read_ahead
from forgeway.v1 import generate_pb2


async def paced(items: list[str], gap: float, error: BaseException | None = None):
    for item in items:
        yield item
        await asyncio.sleep(gap)
    if error is not None:
        raise error


async def batches_of(source, interval: float) -> list[list[str]]:
    async with contextlib.aclosing(read_ahead(source, interval=interval)) as batches:
        return [batch async for batch in batches]


async def test_without_an_interval_each_item_of_a_slow_source_goes_out_alone():
    assert await batches_of(paced(["a", "b", "c"], 0.01), interval=0) == [["a"], ["b"], ["c"]]


async def test_items_within_the_interval_go_out_together_after_an_immediate_first():
    batches = await batches_of(paced([f"w{i}" for i in range(6)], 0.001), interval=60)
    assert batches[0] == ["w0"]
    assert [item for batch in batches for item in batch] == [f"w{i}" for i in range(6)]
    # The end of the stream cuts the 60 s wait short: the rest arrives as one batch, not after a minute.
    assert batches[1:] == [[f"w{i}" for i in range(1, 6)]]


async def test_an_error_after_the_first_item_is_raised_once_the_queued_items_are_out():
    received: list[list[str]] = []
    with pytest.raises(RuntimeError, match="backend died"):
        async with contextlib.aclosing(read_ahead(paced(["a", "b"], 0.001, RuntimeError("backend died")),
                                                  interval=60)) as batches:
            async for batch in batches:
                received.append(batch)
    assert received == [["a"], ["b"]]


async def test_closing_the_relay_stops_reading_the_source():
    stopped = asyncio.Event()

    async def endless():
        try:
            while True:
                yield "x"
                await asyncio.sleep(0.001)
        finally:
            stopped.set()

    async with contextlib.aclosing(read_ahead(endless(), interval=0.005)) as batches:
        async for _ in batches:
            break
    assert stopped.is_set()


def test_consecutive_deltas_of_one_choice_merge_and_the_final_stays_apart():
    def delta(index: int, text: str) -> generate_pb2.GenerateStreamResponse:
        return generate_pb2.GenerateStreamResponse(delta=generate_pb2.GenerateDelta(index=index, text=text))

    final = generate_pb2.GenerateStreamResponse(final=generate_pb2.GenerateResponse(model="m"))
    merged = coalesce([delta(0, "a "), delta(0, "b "), delta(1, "x"), delta(0, "c"), final])
    assert [(m.WhichOneof("event"), m.delta.index, m.delta.text) for m in merged[:-1]] == [
        ("delta", 0, "a b "), ("delta", 1, "x"), ("delta", 0, "c")]
    assert merged[-1].HasField("final")
