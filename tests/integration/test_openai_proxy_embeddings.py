"""Embed and Rerank through the OpenAI proxy against real upstreams: llama.cpp's own server (llama-server) on the tiny
GGUF, once as an embedding server (/v1/embeddings, mean pooling) and once as a rerank server (/rerank)."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import grpc
import httpx
import openai
import pytest
from tokenizers import Tokenizer

from forgeway.core.errors import RemoteError, from_rpc_error
from forgeway.server.server import start_server
from forgeway.services.openai_proxy.engine import OpenAIProxyEngine
from forgeway.services.openai_proxy.settings import OpenAIProxySettings
from forgeway.services.runtime.service import serving
from forgeway.testing.upstream import LocalUpstream, start_llama_cpp_server, tiny_model
from forgeway.v1 import capabilities_pb2, common_pb2, embed_pb2
from forgeway.v1.backend_pb2_grpc import BackendServiceStub

pytestmark = pytest.mark.llamacpp

TEXTS = ["The river carried the small boat", "past the old mill", "and the gulls followed it"]
EMBED = {"name": "embed", "upstream": "tiny-embed", "task": "embedding", "max_input_tokens": 512, "dimensions": 64}
SHORT = {"name": "embed-short", "upstream": "tiny-embed", "task": "embedding", "matryoshka_dimensions": [16, 32]}
CHAT = {"name": "tiny"}
RERANK = {"name": "rerank", "upstream": "tiny-rerank", "task": "rerank", "max_input_tokens": 512}


@pytest.fixture(scope="module")
def embedder() -> LocalUpstream:
    with start_llama_cpp_server(tiny_model()[0], model="tiny-embed", task="embedding") as server:
        yield server


@pytest.fixture(scope="module")
def reranker() -> LocalUpstream:
    with start_llama_cpp_server(tiny_model()[0], model="tiny-rerank", task="rerank") as server:
        yield server


@pytest.fixture(scope="module")
def direct(embedder: LocalUpstream) -> openai.AsyncOpenAI:
    """The embedding upstream called directly with the openai client: what the proxy must reproduce."""
    return openai.AsyncOpenAI(base_url=embedder.base_url, api_key="unused", max_retries=0)


@asynccontextmanager
async def proxy(upstream: LocalUpstream, *models: dict, **overrides) -> AsyncIterator[BackendServiceStub]:
    """A stub of the proxy in-process on a loopback port serving `models` from `upstream`, once it is ready (pytest's
    timeout bounds the wait)."""
    settings = OpenAIProxySettings(host="127.0.0.1", port=0, metrics_port=-1, base_url=upstream.base_url,
                                   models=list(models), health_interval_seconds=0.2, max_retries=0, **overrides)
    engine = OpenAIProxyEngine(settings)
    running = await start_server(serving(engine))
    try:
        while not engine.ready:
            await asyncio.sleep(0.05)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            yield BackendServiceStub(channel)
    finally:
        await running.drain(0)


async def failure(call) -> RemoteError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return from_rpc_error(caught.value)


def fields(error: RemoteError) -> set[str]:
    """The fields an error names: BadRequest violations, or the ErrorInfo of an UNSUPPORTED feature."""
    info = error.error_info
    named = {info.metadata["field"]} if info and "field" in info.metadata else set()
    return {f for f, _ in error.field_violations} | named


def close(a, b, tol: float = 1e-5) -> bool:
    return len(a) == len(b) and all(math.isclose(x, y, rel_tol=tol, abs_tol=tol) for x, y in zip(a, b))


def norm(values) -> float:
    return math.sqrt(sum(v * v for v in values))


async def test_embeddings_match_the_upstream_called_directly(embedder, direct):
    expected = await direct.embeddings.create(model="tiny-embed", input=TEXTS)
    async with proxy(embedder, EMBED) as p:
        answer = await p.Embed(embed_pb2.EmbedRequest(model="embed", texts=TEXTS, user="u-1"), timeout=60)
    assert [e.index for e in answer.embeddings] == [0, 1, 2]
    for got, want in zip(answer.embeddings, expected.data):
        assert close(got.values, want.embedding)
        assert got.tokens == 0  # the upstream reports tokens per call, not per input
    assert answer.usage.prompt_tokens == answer.usage.total_tokens == expected.usage.prompt_tokens > 0
    assert answer.dimensions == 64 and answer.model == "embed" and answer.served_by.startswith("openai/")


async def test_token_id_inputs_match_the_upstream_called_directly(embedder, direct):
    tokenizer = Tokenizer.from_file(str(tiny_model()[1]))
    ids = [tokenizer.encode(t).ids for t in TEXTS[:2]]
    expected = await direct.embeddings.create(model="tiny-embed", input=ids)
    request = embed_pb2.EmbedRequest(model="embed", token_ids=[embed_pb2.TokenIds(ids=i) for i in ids])
    async with proxy(embedder, EMBED) as p:
        answer = await p.Embed(request, timeout=60)
    assert all(close(g.values, w.embedding) for g, w in zip(answer.embeddings, expected.data))
    assert answer.usage.prompt_tokens == expected.usage.prompt_tokens == sum(len(i) for i in ids)


async def test_dimensions_are_refused_where_the_model_declares_no_shorter_lengths(embedder):
    async with proxy(embedder, EMBED) as p:
        error = await failure(p.Embed(embed_pb2.EmbedRequest(model="embed", texts=TEXTS, dimensions=16)))
        full = await p.Embed(embed_pb2.EmbedRequest(model="embed", texts=TEXTS, dimensions=64), timeout=60)
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT and "dimensions" in fields(error)
    assert full.dimensions == 64


async def test_declared_shorter_lengths_are_cut_and_renormalized_where_the_upstream_ignores_dimensions(
        embedder, direct):
    ignored = await direct.embeddings.create(model="tiny-embed", input=TEXTS, dimensions=16)
    assert len(ignored.data[0].embedding) == 64  # llama.cpp's server sends the full vector whatever it is asked
    async with proxy(embedder, SHORT) as p:
        answer = await p.Embed(embed_pb2.EmbedRequest(model="embed-short", texts=TEXTS, dimensions=16),
                                    timeout=60)
    assert answer.dimensions == 16
    for got, full in zip(answer.embeddings, ignored.data):
        cut = full.embedding[:16]
        assert close(got.values, [v / norm(cut) for v in cut]) and math.isclose(norm(got.values), 1, rel_tol=1e-5)


async def test_a_model_declaring_no_length_reports_the_one_it_answers_with(embedder):
    async with proxy(embedder, SHORT) as p:
        before = {m.name: m for m in (await p.Capabilities(capabilities_pb2.CapabilitiesRequest())).models}
        await p.Embed(embed_pb2.EmbedRequest(model="embed-short", texts=TEXTS[:1]), timeout=60)
        after = {m.name: m for m in (await p.Capabilities(capabilities_pb2.CapabilitiesRequest())).models}
    assert before["embed-short"].dimensions == 0 and after["embed-short"].dimensions == 64
    assert list(after["embed-short"].matryoshka_dimensions) == [16, 32]


async def test_what_the_upstream_api_cannot_honour_is_refused(embedder):
    async with proxy(embedder, EMBED, CHAT) as p:
        unnormalized = await failure(p.Embed(embed_pb2.EmbedRequest(model="embed", texts=TEXTS, normalize=False)))
        truncated = await failure(p.Embed(embed_pb2.EmbedRequest(
            model="embed", texts=TEXTS, truncation=embed_pb2.TRUNCATION_END)))
        chat = await failure(p.Embed(embed_pb2.EmbedRequest(model="tiny", texts=TEXTS)))
        unit = await p.Embed(embed_pb2.EmbedRequest(model="embed", texts=TEXTS, normalize=True), timeout=60)
    assert unnormalized.code == grpc.StatusCode.INVALID_ARGUMENT and unnormalized.reason == "UNSUPPORTED"
    assert "normalize" in fields(unnormalized)
    assert truncated.code == grpc.StatusCode.INVALID_ARGUMENT and "truncation" in fields(truncated)
    assert chat.code == grpc.StatusCode.INVALID_ARGUMENT and "model" in fields(chat)
    assert all(math.isclose(norm(e.values), 1, rel_tol=1e-5) for e in unit.embeddings)


async def test_an_input_the_upstream_rejects_stays_invalid_argument(embedder):
    request = embed_pb2.EmbedRequest(model="embed", token_ids=[embed_pb2.TokenIds(ids=[999_999])])
    async with proxy(embedder, EMBED) as p:
        error = await failure(p.Embed(request, timeout=60))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT and "invalid tokens" in error.message


async def test_capabilities_list_the_embedding_model_and_embed(embedder):
    async with proxy(embedder, EMBED, CHAT) as p:
        capabilities = await p.Capabilities(capabilities_pb2.CapabilitiesRequest(), timeout=10)
        rerank = await failure(p.Rerank(embed_pb2.RerankRequest(model="embed", query="q", documents=["d"])))
    models = {m.name: m for m in capabilities.models}
    assert models["embed"].task == common_pb2.TASK_EMBEDDING and not models["embed"].chat
    assert models["embed"].dimensions == 64 and models["embed"].context_length == 512
    assert models["tiny"].task == common_pb2.TASK_TEXT_GENERATION
    assert "forgeway.v1.BackendService/Embed" in capabilities.rpcs
    assert "forgeway.v1.BackendService/Rerank" not in capabilities.rpcs  # no rerank model configured
    assert rerank.code == grpc.StatusCode.UNIMPLEMENTED


async def test_the_upstream_down_is_unavailable():
    with start_llama_cpp_server(tiny_model()[0], model="tiny-embed", task="embedding") as upstream:
        async with proxy(upstream, EMBED) as p:
            upstream.stop()
            error = await failure(p.Embed(embed_pb2.EmbedRequest(model="embed", texts=TEXTS), timeout=60))
    assert error.code == grpc.StatusCode.UNAVAILABLE


async def test_rerank_matches_the_upstream_called_directly(reranker):
    documents = ["the boat floats on the river", "a mill by the water", "gulls over the harbour"]
    async with httpx.AsyncClient() as client:
        reply = await client.post(f"{reranker.base_url}/rerank", timeout=60,
                                  json={"model": "tiny-rerank", "query": "boat", "documents": documents})
    expected = {r["index"]: r["relevance_score"] for r in reply.json()["results"]}
    request = embed_pb2.RerankRequest(model="rerank", query="boat", documents=documents, top_n=2,
                                      return_documents=True)
    async with proxy(reranker, RERANK) as p:
        capabilities = await p.Capabilities(capabilities_pb2.CapabilitiesRequest(), timeout=10)
        answer = await p.Rerank(request, timeout=60)
        everything = await p.Rerank(embed_pb2.RerankRequest(model="rerank", query="boat", documents=documents),
                                         timeout=60)
    best = sorted(expected, key=lambda i: -expected[i])
    assert [r.index for r in everything.results] == best
    assert all(math.isclose(r.relevance_score, expected[r.index], rel_tol=1e-6) for r in everything.results)
    assert [r.index for r in answer.results] == best[:2]
    assert [r.document for r in answer.results] == [documents[i] for i in best[:2]]
    assert answer.usage.prompt_tokens == reply.json()["usage"]["prompt_tokens"] > 0
    assert "forgeway.v1.BackendService/Rerank" in capabilities.rpcs
    assert capabilities.models[0].task == common_pb2.TASK_RERANK


async def test_a_rerank_path_the_upstream_does_not_serve_is_an_error_not_a_silent_answer(reranker):
    async with proxy(reranker, RERANK, rerank_path="/no-such-rerank") as p:
        error = await failure(p.Rerank(embed_pb2.RerankRequest(model="rerank", query="q", documents=["d"]),
                                            timeout=60))
    assert error.code == grpc.StatusCode.NOT_FOUND and "rerank_path" in error.message


async def test_an_upstream_that_does_not_answer_in_time_is_deadline_exceeded(reranker):
    async with proxy(reranker, RERANK, timeout_seconds=0.5) as p:
        reranker.pause()
        try:
            error = await failure(p.Rerank(
                embed_pb2.RerankRequest(model="rerank", query="q", documents=["d"]), timeout=60))
        finally:
            reranker.resume()
    assert error.code == grpc.StatusCode.DEADLINE_EXCEEDED and "did not answer within 0.5s" in error.message


async def test_one_proxy_serves_an_embedder_and_a_reranker_elsewhere_by_an_absolute_rerank_url(embedder, reranker):
    async with proxy(embedder, EMBED, RERANK, rerank_path=f"{reranker.base_url}/rerank") as p:
        capabilities = await p.Capabilities(capabilities_pb2.CapabilitiesRequest(), timeout=10)
        vectors = await p.Embed(embed_pb2.EmbedRequest(model="embed", texts=TEXTS[:1]), timeout=60)
        ranked = await p.Rerank(embed_pb2.RerankRequest(model="rerank", query="boat", documents=TEXTS), timeout=60)
    assert {"forgeway.v1.BackendService/Embed", "forgeway.v1.BackendService/Rerank"} <= set(capabilities.rpcs)
    assert vectors.dimensions == 64 and sorted(r.index for r in ranked.results) == [0, 1, 2]
    assert all(m.loaded for m in capabilities.models)  # the reranker is not in base_url's listing, nor expected there
