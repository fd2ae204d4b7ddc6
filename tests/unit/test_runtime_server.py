"""The server: health follows readiness, graceful drain, reflection, and the /metrics endpoint."""

from __future__ import annotations

import asyncio
import urllib.request

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from forgeway.services.echo.engine import EchoEngine, EchoSettings
from forgeway.core.errors import from_rpc_error
from forgeway.v1 import backend_pb2_grpc, capabilities_pb2, generate_pb2

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
BACKEND = "forgeway.v1.BackendService"


class GatedEcho(EchoEngine):
    """An echo engine whose start() waits for a gate, then fails if told to: a model that loads slowly, or never."""

    def __init__(self, settings: EchoSettings, error: str = ""):
        super().__init__(settings)
        self.gate = asyncio.Event()
        self.error = error

    async def start(self) -> None:
        await self.gate.wait()
        if self.error:
            raise RuntimeError(self.error)


def request(max_tokens: int = 4) -> generate_pb2.GenerateRequest:
    return generate_pb2.GenerateRequest(
        model="echo", prompt="one two three four five", sampling=generate_pb2.SamplingParams(max_tokens=max_tokens)
    )


async def health_of(channel: grpc.aio.Channel, service: str) -> int:
    reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
    return reply.status


@pytest.mark.parametrize("error", ["", "weights missing"])
async def test_health_is_not_serving_until_start_succeeds(serve_in_process, error):
    engine = GatedEcho(EchoSettings(port=0, metrics_port=-1), error=error)
    running = await serve_in_process(engine, wait=False)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
        backend = backend_pb2_grpc.BackendServiceStub(channel)
        assert [await health_of(channel, s) for s in ("", BACKEND)] == [NOT_SERVING, NOT_SERVING]
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await backend.Generate(request(), timeout=5)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        assert from_rpc_error(caught.value).retry_after is not None
        engine.gate.set()
        await running.startup
        caps = await backend.Capabilities(capabilities_pb2.CapabilitiesRequest(), timeout=5)
        if error:
            assert [await health_of(channel, s) for s in ("", BACKEND)] == [NOT_SERVING, NOT_SERVING]
            assert not caps.availability.available and error in caps.availability.reason
        else:
            assert [await health_of(channel, s) for s in ("", BACKEND)] == [SERVING, SERVING]
            assert caps.availability.available
            assert (await backend.Generate(request(), timeout=5)).usage.completion_tokens == 4


async def test_drain_finishes_in_flight_calls_and_refuses_new_ones(serve_in_process):
    running = await serve_in_process(EchoEngine(EchoSettings(port=0, metrics_port=-1, token_delay=0.05)))
    async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
        backend = backend_pb2_grpc.BackendServiceStub(channel)
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""))
        assert (await watch.read()).status == SERVING
        in_flight = backend.GenerateStream(request(max_tokens=20), timeout=30)
        first = await in_flight.read()
        assert first.delta.text == "one"

        draining = asyncio.create_task(running.drain(grace=60))
        assert (await watch.read()).status == NOT_SERVING
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await backend.Generate(request(), timeout=5)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE

        rest = []
        while (message := await in_flight.read()) is not grpc.aio.EOF:
            rest.append(message)
        assert rest[-1].final.usage.completion_tokens == 20
        assert rest[-1].final.choices[0].finish_reason == generate_pb2.FINISH_REASON_LENGTH
        assert await in_flight.code() == grpc.StatusCode.OK
        # Drain returns once the work is done; the open health watch does not hold it for the whole grace.
        await asyncio.wait_for(draining, timeout=20)
        with pytest.raises(grpc.aio.AioRpcError) as after:
            await backend.Generate(request(), timeout=5)
        assert after.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_reflection_lists_the_services(serve_in_process):
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    running = await serve_in_process(EchoEngine(EchoSettings(port=0, metrics_port=-1)))
    async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        replies = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
        names = {s.name async for reply in replies for s in reply.list_services_response.service}
    assert {BACKEND, "forgeway.v1.ModelService", "grpc.health.v1.Health"} <= names


def scrape(port: int) -> dict[tuple[str, frozenset], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def sample(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def test_metrics_endpoint_counts_requests(serve_in_process):
    running = await serve_in_process(EchoEngine(EchoSettings(port=0, metrics_port=0)))
    assert running.metrics_port > 0
    ok = {"service": "echo", "method": "Generate", "code": "OK"}
    bad = {"service": "echo", "method": "Generate", "code": "INVALID_ARGUMENT"}
    before = await asyncio.to_thread(scrape, running.metrics_port)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
        backend = backend_pb2_grpc.BackendServiceStub(channel)
        for _ in range(3):
            await backend.Generate(request(), timeout=5)
        with pytest.raises(grpc.aio.AioRpcError):
            await backend.Generate(generate_pb2.GenerateRequest(model="echo"), timeout=5)
    after = await asyncio.to_thread(scrape, running.metrics_port)
    assert sample(after, "forgeway_requests_total", **ok) - sample(before, "forgeway_requests_total", **ok) == 3
    assert sample(after, "forgeway_requests_total", **bad) - sample(before, "forgeway_requests_total", **bad) == 1
    latency = {"service": "echo", "method": "Generate"}
    assert sample(after, "forgeway_request_seconds_count", **latency) - sample(
        before, "forgeway_request_seconds_count", **latency
    ) == 4
    tokens = {"service": "echo", "model": "echo", "kind": "completion"}
    assert sample(after, "forgeway_tokens_total", **tokens) - sample(before, "forgeway_tokens_total", **tokens) == 12
    assert ("forgeway_in_flight", frozenset(latency.items())) in after


async def test_health_follows_readiness_after_start(serve_in_process):
    """A service that stops being ready (a proxy whose upstream went away) goes NOT_SERVING, and back."""
    engine = EchoEngine(EchoSettings(port=0, metrics_port=-1))
    running = await serve_in_process(engine)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
        assert await health_of(channel, "") == SERVING
        for ready, expected in ((False, NOT_SERVING), (True, SERVING)):
            engine.ready = ready
            for _ in range(100):
                if await health_of(channel, BACKEND) == expected:
                    break
                await asyncio.sleep(0.05)
            assert [await health_of(channel, s) for s in ("", BACKEND)] == [expected, expected]
