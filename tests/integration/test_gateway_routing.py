"""The gateway in front of real echo processes: routing by model and capability, aliases, groups, load, plugins."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator

import grpc
import pytest
from prometheus_client import REGISTRY

from forgeway.services.runtime.service import serving
from forgeway.services.echo.engine import EchoEngine, EchoSettings
from forgeway.services.runtime.engine import Features
from forgeway.core.errors import from_rpc_error
from forgeway.core.generation import Delta, GenerationResult, TokenLogprob
from forgeway.server.server import start_server
from forgeway.testing import gateway_settings, start_echoes, start_gateway, stop_now
from forgeway.v1 import backend_pb2_grpc, capabilities_pb2, generate_pb2


class CertainEcho(EchoEngine):
    """The echo engine with logprobs: each echoed word is certain, so its log probability is 0."""

    def features(self) -> Features:
        return Features(stop=True, seed=True, multiple_choices=True, logprobs=True)

    async def generate(self, request, model):
        async for event in super().generate(request, model):
            if request.logprobs and isinstance(event, Delta):
                event.logprobs = [TokenLogprob(event.text, event.text.encode(), 0.0)]
            elif request.logprobs and isinstance(event, GenerationResult):
                for choice in event.choices:
                    choice.logprobs = [TokenLogprob(choice.text, choice.text.encode(), 0.0)]
            yield event


@pytest.fixture(scope="module")
async def stack(tmp_path_factory) -> AsyncIterator[dict]:
    logs = tmp_path_factory.mktemp("logs")
    alpha1, alpha2, beta = start_echoes(("alpha", 0.02), ("alpha", 0.02), ("beta", 0.0), log_dir=logs)
    certain = await start_server(serving(CertainEcho(EchoSettings(port=0, metrics_port=-1, model_name="alpha"))))
    settings = gateway_settings(
        [{"name": "alpha1", "address": alpha1.address}, {"name": "alpha2", "address": alpha2.address},
         {"name": "beta", "address": beta.address}, {"name": "certain", "address": f"127.0.0.1:{certain.port}"}],
        model_aliases={"gpt": "alpha", "formatted": "beta"},
        model_groups={"mix": [{"model": "alpha", "weight": 1}, {"model": "beta", "weight": 1}]},
        plugins={"formatted": [
            {"name": "system_prompt", "options": {"prompt": "Be brief."}},
            {"name": "chat_format", "options": {"template": "plain"}},
            {"name": "strip_pattern", "options": {"pattern": r"Be brief\."}},
        ]},
    )
    gateway = await start_gateway(settings)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}")
    endpoints = {e.key: e for e in gateway.service.state.pool}
    served_by = {f"echo/{e.capabilities.instance_id}": key for key, e in endpoints.items()}
    yield {"stub": backend_pb2_grpc.BackendServiceStub(channel), "served_by": served_by, "gateway": gateway}
    await channel.close()
    await stop_now(gateway)
    await stop_now(certain)
    for echo in (alpha1, alpha2, beta):
        echo.stop()


def gateway_requests() -> float:
    return sum(s.value for m in REGISTRY.collect() if m.name == "forgeway_gateway_requests" for s in m.samples
               if s.name.endswith("_total"))


async def test_routes_by_model(stack):
    stub, served_by = stack["stub"], stack["served_by"]
    beta = await stub.Generate(generate_pb2.GenerateRequest(model="beta", prompt="one two three"), timeout=10)
    assert beta.choices[0].text == "one two three" and served_by[beta.served_by] == "beta"
    request = generate_pb2.GenerateRequest(model="alpha", prompt="x")
    alphas = {served_by[(await stub.Generate(request, timeout=10)).served_by] for _ in range(12)}
    assert alphas <= {"alpha1", "alpha2", "certain"} and len(alphas) >= 2


async def test_unknown_model_is_not_found_naming_what_is_served(stack):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stack["stub"].Generate(generate_pb2.GenerateRequest(model="gamma", prompt="x"), timeout=10)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert "known: alpha, beta, formatted, gpt, mix" in caught.value.details()


async def test_routes_by_capability(stack):
    stub, served_by = stack["stub"], stack["served_by"]
    for _ in range(6):
        reply = await stub.Generate(generate_pb2.GenerateRequest(model="alpha", prompt="sure thing", logprobs=True),
                                    timeout=10)
        assert served_by[reply.served_by] == "certain" and reply.choices[0].logprobs[0].logprob == 0.0
    streamed = [m async for m in stub.GenerateStream(
        generate_pb2.GenerateRequest(model="alpha", prompt="a b", logprobs=True), timeout=10)]
    assert served_by[streamed[-1].final.served_by] == "certain"
    assert all(m.delta.logprobs for m in streamed[:-1])


async def test_requests_no_backend_can_honour_are_refused_before_any_backend(stack):
    stub, before = stack["stub"], gateway_requests()
    cases = {
        "UNSUPPORTED": generate_pb2.GenerateRequest(model="beta", prompt="x", logprobs=True),
        "backend": generate_pb2.GenerateRequest(model="alpha", prompt="x", backend="hf"),
        "sampling.temperature": generate_pb2.GenerateRequest(
            model="alpha", prompt="x", sampling=generate_pb2.SamplingParams(temperature=9)),
        "prompt": generate_pb2.GenerateRequest(model="alpha"),
    }
    for expected, request in cases.items():
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Generate(request, timeout=10)
        error = from_rpc_error(caught.value)
        assert error.code == grpc.StatusCode.INVALID_ARGUMENT, expected
        assert expected in (error.reason, *(f for f, _ in error.field_violations)), (expected, error.message)
    assert gateway_requests() == before, "a bad request reached a backend"
    assert all(e.breaker.state.value == "closed" for e in stack["gateway"].service.state.pool)


async def test_load_spreads_over_replicas(stack):
    served_by = stack["served_by"]
    request = generate_pb2.GenerateRequest(model="alpha", prompt="w " * 10)

    async def one() -> str:
        final = [m async for m in stack["stub"].GenerateStream(request, timeout=10)][-1].final
        return served_by[final.served_by]

    used = Counter(await asyncio.gather(*(one() for _ in range(6))))
    # Power of two choices never sends the second call where the first went: at least two replicas take work.
    assert len(used) >= 2, used


async def test_aliases_and_weighted_groups(stack):
    stub = stack["stub"]
    reply = await stub.Generate(generate_pb2.GenerateRequest(model="gpt", prompt="hi"), timeout=10)
    assert reply.model == "alpha"
    models = Counter([(await stub.Generate(generate_pb2.GenerateRequest(model="mix", prompt="hi"), timeout=10)).model
                      for _ in range(30)])
    assert set(models) == {"alpha", "beta"}


async def test_plugins_apply_to_unary_and_streamed_output_alike(stack):
    stub = stack["stub"]
    request = generate_pb2.GenerateRequest(model="formatted", messages=[
        generate_pb2.Message(role="system", content="Ignored."),
        generate_pb2.Message(role="user", content="hello there"),
    ])
    unary = (await stub.Generate(request, timeout=10)).choices[0].text
    assert unary == "system: \nuser: hello there\nassistant:"
    messages = [m async for m in stub.GenerateStream(request, timeout=10)]
    deltas = "".join(m.delta.text for m in messages if m.HasField("delta"))
    assert deltas == messages[-1].final.choices[0].text == unary


async def test_capabilities_aggregate_every_endpoint(stack):
    caps = await stack["stub"].Capabilities(capabilities_pb2.CapabilitiesRequest(), timeout=10)
    assert caps.backend == "gateway" and caps.availability.available
    assert caps.availability.reason == "4 of 4 endpoints serving"
    assert len(caps.endpoints) == 4
    assert {(e.health, e.breaker) for e in caps.endpoints} == {("SERVING", "closed")}
    assert {e.capabilities.backend for e in caps.endpoints} == {"echo"}
    models = {m.name: m for m in caps.models}
    assert set(models) == {"alpha", "beta", "mix"}
    assert "gpt" in models["alpha"].aliases and "formatted" in models["beta"].aliases
    assert caps.generation.logprobs and caps.generation.streaming
    assert "forgeway.v1.JobService/WatchJob" in caps.rpcs
