"""AsyncClient against in-process servers on this event loop: echo backends and a gateway in front of them."""

from __future__ import annotations

import asyncio

import pytest

from forgeway.client import (
    AsyncClient, InvalidArgumentError, NotFoundError, Retry, UnavailableError, UnimplementedError,
)
from forgeway.services.echo.engine import EchoEngine, EchoSettings
from forgeway.testing import gateway_settings, start_gateway, stop_now
from forgeway.server.ports import free_port


def echo_engine(name: str = "echo", port: int = 0, delay: float = 0.0) -> EchoEngine:
    return EchoEngine(EchoSettings(host="127.0.0.1", port=port, metrics_port=-1, model_name=name, token_delay=delay))


async def test_generate_stream_chat_and_errors(serve_in_process):
    echo = await serve_in_process(echo_engine())
    async with AsyncClient(echo.address, timeout=10) as client:
        result = await client.generate("echo", "one two three", max_tokens=2)
        assert (result.text, result.finish_reason, result.usage.completion_tokens) == ("one two", "length", 2)
        assert (await client.chat("echo", [("user", "hi you")])).text == "hi you"
        stream = await client.stream("echo", "a b c")
        assert [d.text async for d in stream] == ["a", " b", " c"]
        assert stream.final.text == "a b c" and stream.final.finish_reason == "stop"
        caps = await client.capabilities()
        assert caps.backend == "echo" and [m.name for m in caps.models] == ["echo"]
        assert [(r.backend, r.health) for r in await client.status()] == [("echo", "SERVING")]
        with pytest.raises(NotFoundError):
            await client.generate("missing", "x")
        with pytest.raises(NotFoundError):  # errors before the first token raise when the stream opens
            await client.stream("missing", "x")
        with pytest.raises(InvalidArgumentError) as bad:
            await client.generate("echo", "x", top_p=3)
        assert "sampling.top_p" in dict(bad.value.field_violations)
        with pytest.raises(UnimplementedError):
            await client.jobs.list()


async def test_cancelling_a_stream_stops_the_backend(serve_in_process):
    echo = await serve_in_process(echo_engine("slow", delay=0.1))
    async with AsyncClient(echo.address) as client:
        async with await client.stream("slow", "w " * 500) as stream:
            assert (await stream.__anext__()).text == "w"
        for _ in range(100):
            if echo.service.engine.in_flight == 0:
                break
            await asyncio.sleep(0.05)
        assert echo.service.engine.in_flight == 0


async def test_retries_until_a_late_server_comes_up(serve_in_process):
    port = free_port("127.0.0.1")

    async def late_start():
        await asyncio.sleep(0.5)
        await serve_in_process(echo_engine(port=port))

    starting = asyncio.create_task(late_start())
    async with AsyncClient(f"127.0.0.1:{port}", retry=Retry(attempts=40, initial_backoff=0.1, max_backoff=0.3)) as c:
        assert (await c.generate("echo", "finally up")).text == "finally up"
    await starting
    async with AsyncClient(f"127.0.0.1:{free_port('127.0.0.1')}", retry=1) as down:
        with pytest.raises(UnavailableError):
            await down.generate("echo", "x")


async def test_through_a_gateway_status_lists_every_backend(serve_in_process):
    first = await serve_in_process(echo_engine("first"))
    second = await serve_in_process(echo_engine("second"))
    gateway = await start_gateway(gateway_settings([first.address, second.address]))
    try:
        async with AsyncClient(f"127.0.0.1:{gateway.port}") as client:
            assert (await client.generate("second", "routed by model")).text == "routed by model"
            rows = await client.status()
            assert sorted((r.address, r.models) for r in rows) == sorted(
                [(first.address, ("first",)), (second.address, ("second",))])
            assert all(r.health == "SERVING" and r.breaker == "closed" for r in rows)
            assert sorted(m.name for m in await client.models.list()) == ["first", "second"]
            caps = await client.capabilities()
            assert caps.backend == "gateway" and len(caps.endpoints) == 2
    finally:
        await stop_now(gateway)
