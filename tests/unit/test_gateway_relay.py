"""The stream relay: read-ahead batches, the per-stream send interval, and merging of queued deltas."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from forgeway.gateway.relay import coalesce, read_ahead
from forgeway.v1 import generate_pb2


class Relay:
    """read_ahead over a source the test paces by what the caller has received, not by the clock."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.received: list[list[str]] = []
        self.arrived = asyncio.Condition()  # notified on each batch the caller receives

    async def handed_over(self, batches: int) -> None:
        """Until the caller has received `batches` batches."""
        async with self.arrived:
            await self.arrived.wait_for(lambda: len(self.received) >= batches)

    async def run(self, source) -> list[list[str]]:
        async with asyncio.timeout(30):  # a relay that waited out a 60 s interval fails here instead of passing late
            async with contextlib.aclosing(read_ahead(source, interval=self.interval)) as batches:
                async for batch in batches:
                    async with self.arrived:
                        self.received.append(batch)
                        self.arrived.notify_all()
        return self.received


async def settle() -> None:
    """Let every ready task on the loop run a few times."""
    for _ in range(20):
        await asyncio.sleep(0)


async def test_without_an_interval_each_item_that_arrives_after_the_last_send_goes_out_alone():
    relay = Relay(interval=0)

    async def one_at_a_time():
        for i, item in enumerate(["a", "b", "c"]):
            yield item
            await relay.handed_over(i + 1)

    assert await relay.run(one_at_a_time()) == [["a"], ["b"], ["c"]]


async def test_without_an_interval_items_queued_while_the_caller_was_busy_go_out_together():
    relay = Relay(interval=0)

    async def burst():
        yield "a"
        await relay.handed_over(1)
        for item in ("b", "c", "d"):  # no await between them: the caller has no chance to send in between
            yield item

    assert await relay.run(burst()) == [["a"], ["b", "c", "d"]]


async def test_items_within_the_interval_wait_for_the_next_batch_after_an_immediate_first():
    relay = Relay(interval=60)
    held: list[list[list[str]]] = []

    async def steady():
        yield "w0"
        await relay.handed_over(1)  # the first batch goes out at once, not after the interval
        for i in range(1, 6):
            yield f"w{i}"
            await settle()  # the relay runs between items, and holds them back
        held.append(list(relay.received))

    # The end of the stream cuts the 60 s wait short: the rest goes out as one batch, at once.
    assert await relay.run(steady()) == [["w0"], [f"w{i}" for i in range(1, 6)]]
    assert held == [[["w0"]]]


async def test_an_error_after_the_first_item_is_raised_once_the_queued_items_are_out():
    relay = Relay(interval=60)

    async def dies():
        yield "a"
        await relay.handed_over(1)
        yield "b"
        raise RuntimeError("backend died")

    with pytest.raises(RuntimeError, match="backend died"):
        await relay.run(dies())
    assert relay.received == [["a"], ["b"]]


async def test_closing_the_relay_stops_reading_the_source():
    stopped = asyncio.Event()
    reads = 0

    async def endless():
        nonlocal reads
        try:
            while True:
                reads += 1
                yield "x"
                await asyncio.sleep(0)
        finally:
            stopped.set()

    async with contextlib.aclosing(read_ahead(endless(), interval=60)) as batches:
        async for _ in batches:
            break
    assert stopped.is_set()
    closed_at = reads
    await settle()
    assert reads == closed_at


def test_consecutive_deltas_of_one_choice_merge_and_the_final_stays_apart():
    def delta(index: int, text: str) -> generate_pb2.GenerateStreamResponse:
        return generate_pb2.GenerateStreamResponse(delta=generate_pb2.GenerateDelta(index=index, text=text))

    final = generate_pb2.GenerateStreamResponse(final=generate_pb2.GenerateResponse(model="m"))
    merged = coalesce([delta(0, "a "), delta(0, "b "), delta(1, "x"), delta(0, "c"), final])
    assert [(m.WhichOneof("event"), m.delta.index, m.delta.text) for m in merged[:-1]] == [
        ("delta", 0, "a b "), ("delta", 1, "x"), ("delta", 0, "c")]
    assert merged[-1].HasField("final")
