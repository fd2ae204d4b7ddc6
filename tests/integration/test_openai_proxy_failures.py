"""The OpenAI proxy when its real upstream fails: down, frozen, wrong path, wrong or missing key (never leaked)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import grpc
import openai
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from forgeway.services.runtime.service import serving
from forgeway.services.openai_proxy.engine import NO_KEY, OpenAIProxyEngine
from forgeway.services.openai_proxy.errors import upstream_error
from forgeway.testing import (
    LLAMA_CPP_SETTINGS,
    LocalUpstream,
    free_port,
    start_llama_server,
    tiny_model,
)
from forgeway.services.openai_proxy.settings import OpenAIProxySettings
from forgeway.core.errors import NotFound, RemoteError, from_rpc_error
from forgeway.server.server import start_server
from forgeway.v1 import backend_pb2_grpc, capabilities_pb2, generate_pb2

pytestmark = pytest.mark.llamacpp

UPSTREAM_KEY = "sk-upstream-0123456789abcdef"
WRONG_KEY = "sk-wrong-fedcba9876543210"
REQUEST = generate_pb2.GenerateRequest(
    model="tiny", prompt="The old mill", sampling=generate_pb2.SamplingParams(max_tokens=4)
)


class Proxy:
    def __init__(self, engine: OpenAIProxyEngine, address: str, channel: grpc.aio.Channel):
        self.engine, self.address = engine, address
        self.backend = backend_pb2_grpc.BackendServiceStub(channel)
        self.health = health_pb2_grpc.HealthStub(channel)

    async def availability(self) -> capabilities_pb2.Availability:
        return (await self.backend.Capabilities(capabilities_pb2.CapabilitiesRequest(), timeout=10)).availability

    async def serving(self) -> bool:
        reply = await self.health.Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
        return reply.status == health_pb2.HealthCheckResponse.SERVING

    async def error(self, request=REQUEST, timeout: float = 60) -> RemoteError:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await self.backend.Generate(request, timeout=timeout)
        return from_rpc_error(caught.value)

    async def until(self, available: bool, timeout: float = 30) -> capabilities_pb2.Availability:
        deadline = time.monotonic() + timeout
        while (state := await self.availability()).available != available or state.reason == "starting":
            assert time.monotonic() < deadline, f"still {state}"
            await asyncio.sleep(0.1)
        return state


@asynccontextmanager
async def proxy(base_url: str, **overrides) -> AsyncIterator[Proxy]:
    """The proxy in-process; not waited for: some of these never become ready."""
    values = {**LLAMA_CPP_SETTINGS, "models": [{"name": "tiny"}], "health_interval_seconds": 0.2, "max_retries": 0,
              **overrides}  # fmt: skip
    settings = OpenAIProxySettings(host="127.0.0.1", port=0, metrics_port=-1, base_url=base_url, **values)
    engine = OpenAIProxyEngine(settings)
    running = await start_server(serving(engine))
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            yield Proxy(engine, f"127.0.0.1:{running.port}", channel)
    finally:
        await running.drain(0)


@pytest.fixture
def upstream() -> LocalUpstream:
    """An upstream of its own: these tests kill and freeze it."""
    server = start_llama_server(tiny_model()[0], model="tiny", n_ctx=512)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def locked_upstream() -> LocalUpstream:
    """An upstream that wants an API key (llama-cpp-python's --api_key)."""
    server = start_llama_server(tiny_model()[0], model="tiny", n_ctx=512, api_key=UPSTREAM_KEY)
    yield server
    server.stop()


async def test_killed_upstream_is_unavailable_then_recovers(upstream):
    async with proxy(upstream.base_url) as p:
        await p.until(available=True)
        assert (await p.backend.Generate(REQUEST, timeout=60)).choices[0].text
        upstream.stop()
        error = await p.error()
        assert error.code == grpc.StatusCode.UNAVAILABLE, f"{error.code.name}: {error.message}"
        assert "unreachable" in error.message and error.retry_after is not None
        state = await p.until(available=False)
        assert "unreachable" in state.reason
        assert (await p.error()).code == grpc.StatusCode.UNAVAILABLE
        restarted = await asyncio.to_thread(start_llama_server, tiny_model()[0], model="tiny", n_ctx=512,
                                            port=upstream.port)
        try:
            await p.until(available=True)
            assert (await p.backend.Generate(REQUEST, timeout=60)).choices[0].text
        finally:
            restarted.stop()


async def test_frozen_upstream_is_deadline_exceeded(upstream):
    async with proxy(upstream.base_url, timeout_seconds=0.5) as p:
        await p.until(available=True)
        upstream.pause()
        try:
            error = await p.error()  # the proxy's own upstream timeout
            assert error.code == grpc.StatusCode.DEADLINE_EXCEEDED, f"{error.code.name}: {error.message}"
            assert "0.5s" in error.message
            streamed = p.backend.GenerateStream(REQUEST, timeout=60)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                [m async for m in streamed]
            assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        finally:
            upstream.resume()
    async with proxy(upstream.base_url, timeout_seconds=60) as p:
        await p.until(available=True)
        upstream.pause()
        try:
            error = await p.error(timeout=0.5)  # the caller's deadline, shorter than the proxy's timeout
            assert error.code == grpc.StatusCode.DEADLINE_EXCEEDED
        finally:
            upstream.resume()


async def test_started_before_its_upstream_it_waits_not_serving():
    port = free_port("127.0.0.1")
    async with proxy(f"http://127.0.0.1:{port}/v1") as p:
        state = await p.until(available=False)
        assert "unreachable" in state.reason
        assert not await p.serving()
        error = await p.error()
        assert error.code == grpc.StatusCode.UNAVAILABLE and "unreachable" in error.message
        upstream = await asyncio.to_thread(start_llama_server, tiny_model()[0], model="tiny", n_ctx=512, port=port)
        try:
            await p.until(available=True)
            deadline = time.monotonic() + 10
            while not await p.serving():
                assert time.monotonic() < deadline
                await asyncio.sleep(0.1)
            assert (await p.backend.Generate(REQUEST, timeout=60)).choices[0].text
        finally:
            upstream.stop()


async def test_a_wrong_base_path_is_reported_with_the_upstream_404(upstream):
    async with proxy(upstream.base_url + "/nope") as p:
        state = await p.until(available=False)
        assert "HTTP 404" in state.reason
        error = await p.error()
        assert error.code == grpc.StatusCode.UNAVAILABLE and "HTTP 404" in error.message
    # The same real 404 met during a generation is NOT_FOUND for the model.
    client = openai.AsyncOpenAI(base_url=upstream.base_url + "/nope", api_key="x", max_retries=0)
    with pytest.raises(openai.NotFoundError) as caught:
        await client.completions.create(model="tiny", prompt="x", max_tokens=1)
    mapped = upstream_error(caught.value, model="tiny", secret="x", timeout=1)
    assert isinstance(mapped, NotFound) and mapped.reason == "MODEL_NOT_FOUND" and "'tiny'" in mapped.message


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Every record of every logger (openai, httpx, grpc included) at DEBUG."""
    caplog.set_level(logging.DEBUG)
    for name in ("openai", "httpx", "httpx2", "httpcore", "httpcore2", "forgeway"):
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


async def test_a_wrong_key_is_unavailable_and_never_leaks(locked_upstream, debug_logs):
    async with proxy(locked_upstream.base_url, api_key=WRONG_KEY) as p:
        state = await p.until(available=False)
        assert "rejected the proxy's API key" in state.reason
        error = await p.error()
        caps = await p.backend.Capabilities(capabilities_pb2.CapabilitiesRequest(), timeout=10)
    assert error.code == grpc.StatusCode.UNAVAILABLE, f"{error.code.name}: {error.message}"
    assert "API key" in error.message
    seen = debug_logs.text + error.message + str(caps) + repr(p.engine.settings)
    assert any(r.name.startswith("openai") and r.levelno == logging.DEBUG for r in debug_logs.records), "captured"
    assert WRONG_KEY not in seen and WRONG_KEY[3:15] not in seen


async def test_a_401_during_a_generation_is_upstream_unauthenticated(debug_logs):
    """The upstream comes back with another key (the proxy's was revoked): the next call meets the 401 itself."""
    port = free_port("127.0.0.1")
    first = await asyncio.to_thread(start_llama_server, tiny_model()[0], model="tiny", n_ctx=512, port=port,
                                    api_key=UPSTREAM_KEY)
    async with proxy(first.base_url, api_key=UPSTREAM_KEY, health_interval_seconds=3600, max_retries=2) as p:
        try:
            await p.until(available=True)
            assert (await p.backend.Generate(REQUEST, timeout=60)).choices[0].text
        finally:
            first.stop()
        second = await asyncio.to_thread(start_llama_server, tiny_model()[0], model="tiny", n_ctx=512, port=port,
                                         api_key=WRONG_KEY)
        try:
            error = await p.error()
            state = await p.availability()
        finally:
            second.stop()
    assert error.code == grpc.StatusCode.UNAVAILABLE, f"{error.code.name}: {error.message}"
    assert error.reason == "UPSTREAM_UNAUTHENTICATED", error.message
    assert not state.available and "rejected the proxy's API key" in state.reason, "marked down at once"
    for secret in (UPSTREAM_KEY, WRONG_KEY):
        assert secret not in debug_logs.text + error.message + state.reason


async def test_no_key_where_the_upstream_needs_one_names_the_setting(locked_upstream):
    async with proxy(locked_upstream.base_url) as p:
        state = await p.until(available=False)
        assert state.reason == NO_KEY
        assert not await p.serving()
        error = await p.error()
    assert error.code == grpc.StatusCode.UNAVAILABLE and NO_KEY in error.message


async def test_the_right_key_from_a_file_serves_and_rotation_is_noticed(locked_upstream, tmp_path: Path):
    key_file = tmp_path / "openai-key"
    key_file.write_text(UPSTREAM_KEY + "\n")
    async with proxy(locked_upstream.base_url, api_key_file=key_file) as p:
        await p.until(available=True)
        assert (await p.backend.Generate(REQUEST, timeout=60)).choices[0].text
        key_file.write_text(WRONG_KEY)
        assert "rejected the proxy's API key" in (await p.until(available=False)).reason
        key_file.write_text(UPSTREAM_KEY)
        await p.until(available=True)
