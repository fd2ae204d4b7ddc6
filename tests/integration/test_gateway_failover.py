"""kill -9 a backend mid-call: retried on the other replica before the first chunk, a typed error after it; the
killed endpoint is marked unhealthy and serves again once restarted."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import pytest

from forgeway.server.server import RunningServer
from forgeway.testing import ServiceProcess, gateway_settings, start_echoes, start_gateway, stop_now, wait_until
from forgeway.v1 import backend_pb2_grpc, capabilities_pb2, generate_pb2

PROMPT = "one two three four"  # four tokens, 0.4 s apart


@dataclass
class Replicas:
    stub: backend_pb2_grpc.BackendServiceStub
    gateway: RunningServer
    echoes: dict[str, ServiceProcess]

    @property
    def endpoints(self):
        return {e.key: e for e in self.gateway.service.state.pool}

    async def busy(self) -> str:
        """The replica the gateway sent the call to."""
        await wait_until(lambda: any(e.in_flight for e in self.endpoints.values()), 10, "a call in flight")
        return next(key for key, e in self.endpoints.items() if e.in_flight)

    def owner(self, served_by: str) -> str:
        return next(k for k, e in self.endpoints.items() if served_by == f"echo/{e.capabilities.instance_id}")


@pytest.fixture(scope="module")
async def replicas(tmp_path_factory) -> AsyncIterator[Replicas]:
    a, b = start_echoes(("victim", 0.4), ("victim", 0.4), log_dir=tmp_path_factory.mktemp("logs"))
    settings = gateway_settings([{"name": "a", "address": a.address}, {"name": "b", "address": b.address}],
                                breaker={"failure_threshold": 10})
    gateway = await start_gateway(settings)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}")
    yield Replicas(backend_pb2_grpc.BackendServiceStub(channel), gateway, {"a": a, "b": b})
    await channel.close()
    await stop_now(gateway)
    a.stop()
    b.stop()


@pytest.fixture(autouse=True)
async def both_serving(replicas: Replicas) -> None:
    for echo in replicas.echoes.values():
        if echo.process.poll() is not None:
            echo.start()
            await asyncio.to_thread(echo.wait_serving)
    await wait_until(lambda: all(e.healthy for e in replicas.endpoints.values()), 15, "both replicas SERVING")


async def test_unary_call_survives_its_backend_being_killed(replicas: Replicas):
    call = asyncio.ensure_future(
        replicas.stub.Generate(generate_pb2.GenerateRequest(model="victim", prompt=PROMPT), timeout=20))
    victim = await replicas.busy()
    replicas.echoes[victim].kill()
    reply = await call
    assert reply.choices[0].text == PROMPT
    assert replicas.owner(reply.served_by) != victim


async def test_stream_killed_before_its_first_chunk_is_retried_elsewhere(replicas: Replicas):
    call = replicas.stub.GenerateStream(generate_pb2.GenerateRequest(model="victim", prompt=PROMPT), timeout=20)
    received: list = []
    reader = asyncio.create_task(asyncio.wait_for(_collect(call, received), 20))
    victim = await replicas.busy()
    replicas.echoes[victim].kill()
    assert not received, "precondition: the kill landed before the first chunk"
    await reader
    assert "".join(m.delta.text for m in received if m.HasField("delta")) == PROMPT
    assert replicas.owner(received[-1].final.served_by) != victim


async def test_stream_killed_after_its_first_chunk_ends_in_a_typed_error(replicas: Replicas):
    call = replicas.stub.GenerateStream(generate_pb2.GenerateRequest(model="victim", prompt=PROMPT), timeout=20)
    first = await call.read()
    assert first.delta.text == "one"
    victim = await replicas.busy()
    replicas.echoes[victim].kill()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        while (message := await call.read()) is not grpc.aio.EOF:
            assert not message.HasField("final"), "a killed stream must not end as if it had finished"
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert f"{victim} failed after the stream started" in caught.value.details()


async def test_killed_backend_is_marked_unhealthy_and_returns_when_restarted(replicas: Replicas):
    echo = replicas.echoes["a"]
    old_instance = replicas.endpoints["a"].capabilities.instance_id
    echo.kill()
    await wait_until(lambda: not replicas.endpoints["a"].healthy, 10, "the gateway to notice the kill")
    caps = await replicas.stub.Capabilities(capabilities_pb2.CapabilitiesRequest(), timeout=10)
    health = {e.address: e.health for e in caps.endpoints}
    assert health[echo.address] != "SERVING" and health[replicas.echoes["b"].address] == "SERVING"
    for _ in range(4):  # every call goes to the survivor meanwhile
        reply = await replicas.stub.Generate(generate_pb2.GenerateRequest(model="victim", prompt="hi"), timeout=10)
        assert replicas.owner(reply.served_by) == "b"
    echo.start()
    await asyncio.to_thread(echo.wait_serving)
    await wait_until(lambda: replicas.endpoints["a"].healthy, 15, "the restarted replica SERVING at the gateway")
    await wait_until(lambda: replicas.endpoints["a"].capabilities.instance_id != old_instance, 15,
                     "its capabilities re-read")
    owners = set()
    for _ in range(20):
        reply = await replicas.stub.Generate(generate_pb2.GenerateRequest(model="victim", prompt="hi"), timeout=10)
        owners.add(replicas.owner(reply.served_by))
        if "a" in owners:
            break
    assert "a" in owners, "the restarted replica never got a call"


async def _collect(call, into: list) -> None:
    async for message in call:
        into.append(message)
