"""Embed and Rerank through the gateway in front of real echo services: routed by model and capability like
generation, aliases resolved, retried on another endpoint when one is down, tokens counted against a key's quota and
in the metrics, and API keys limited to models."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

import grpc
import pytest
from prometheus_client import REGISTRY

from forgeway.server.server import start_server
from forgeway.services.echo.engine import EchoEngine, EchoSettings
from forgeway.services.runtime.service import serving
from forgeway.testing import gateway_settings, start_gateway, stop_now
from forgeway.v1 import backend_pb2_grpc, embed_pb2


class GenerationOnlyEcho(EchoEngine):
    """An echo that serves generation only: its Capabilities list no Embed, so it is no candidate for one."""

    retrieval_rpcs = ()


def key(name: str, secret: str, **extra) -> dict:
    return {"name": name, "sha256": hashlib.sha256(secret.encode()).hexdigest(), **extra}


def bearer(secret: str) -> tuple:
    return (("authorization", f"Bearer {secret}"),)


@pytest.fixture(scope="module")
async def stack() -> AsyncIterator[dict]:
    def echo(cls=EchoEngine, **kw):
        return start_server(serving(cls(EchoSettings(port=0, metrics_port=-1, embedding_model="vec", rerank_model="echo-rerank", **kw))))

    first, second = await echo(), await echo()
    plain = await echo(GenerationOnlyEcho, model_name="chat")
    settings = gateway_settings(
        [{"name": "first", "address": f"127.0.0.1:{first.port}"},
         {"name": "second", "address": f"127.0.0.1:{second.port}"},
         {"name": "plain", "address": f"127.0.0.1:{plain.port}"}],
        model_aliases={"text-embedding-3-small": "vec"},
        api_keys=[key("ops", "sk-ops"), key("chat-only", "sk-chat", models=["echo"]),
                  key("frugal", "sk-frugal", rate_limit={"tokens_per_minute": 5})],
    )
    gateway = await start_gateway(settings)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
        yield {"stub": backend_pb2_grpc.BackendServiceStub(channel), "first": first, "second": second}
    await stop_now(gateway)
    for server in (second, plain):  # the last test stops the first itself
        await stop_now(server)


def request(model="vec", texts=("one two", "three"), **kw) -> embed_pb2.EmbedRequest:
    return embed_pb2.EmbedRequest(model=model, texts=list(texts), **kw)


async def test_an_alias_resolves_and_calls_spread_over_the_endpoints_that_embed(stack):
    stub = stack["stub"]
    served = set()
    for _ in range(24):
        reply = await stub.Embed(request("text-embedding-3-small"), timeout=10, metadata=bearer("sk-ops"))
        assert reply.model == "vec" and len(reply.embeddings) == 2
        served.add(reply.served_by)
    assert len(served) == 2  # both echoes that embed, never the generation-only one (it would answer UNIMPLEMENTED)


async def test_prompt_tokens_are_counted_in_the_metrics(stack):
    def counted() -> float:
        return sum(REGISTRY.get_sample_value("forgeway_gateway_tokens_total", {"backend": name, "model": "vec",
                                                                      "kind": "prompt"}) or 0.0
                   for name in ("first", "second"))

    before = counted()
    reply = await stack["stub"].Embed(request(texts=["a b c", "d e"]), timeout=10, metadata=bearer("sk-ops"))
    assert reply.usage.total_tokens == 5
    assert counted() - before == 5


async def test_a_key_limited_to_other_models_is_refused(stack):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stack["stub"].Embed(request(), timeout=10, metadata=bearer("sk-chat"))
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_embedding_tokens_count_against_a_keys_token_rate(stack):
    stub = stack["stub"]
    await stub.Embed(request(texts=["one two three four five six seven"]), timeout=10, metadata=bearer("sk-frugal"))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Embed(request(), timeout=10, metadata=bearer("sk-frugal"))
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_rerank_routes_by_model_and_a_wrong_kind_names_model(stack):
    stub = stack["stub"]
    reply = await stub.Rerank(embed_pb2.RerankRequest(model="echo-rerank", query="grey water",
                                                      documents=["bread", "grey water"]),
                              timeout=10, metadata=bearer("sk-ops"))
    assert [r.index for r in reply.results] == [1, 0]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Embed(request("echo-rerank"), timeout=10, metadata=bearer("sk-ops"))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "model" in caught.value.details()


async def test_an_unknown_model_is_not_found_and_a_stopped_endpoint_is_routed_around(stack):
    stub = stack["stub"]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Embed(request("nope"), timeout=10, metadata=bearer("sk-ops"))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    await stop_now(stack["first"])
    for _ in range(6):  # whichever endpoint is picked first, the call is answered by the one still running
        reply = await stub.Embed(request(), timeout=10, metadata=bearer("sk-ops"))
        assert len(reply.embeddings) == 2
