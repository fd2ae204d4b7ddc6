"""Embed and Rerank, the same checks against every endpoint whose Capabilities declare them: one vector per input
in order, a batch equal to its inputs one by one, unit vectors on request, the errors of the table with the field
named, and models refusing the other kind of request."""

from __future__ import annotations

import math

import pytest

from forgeway.v1 import capabilities_pb2, common_pb2, embed_pb2

from .calls import TIMEOUT, generate_request, rpc_error

EMBED = "forgeway.v1.BackendService/Embed"
RERANK = "forgeway.v1.BackendService/Rerank"
TEXTS = ["the harbour at dawn", "gulls circled above the grey water", "the harbour at dawn"]


def model_of(capabilities: capabilities_pb2.CapabilitiesResponse, name: str):
    found = [m for m in capabilities.models if m.name == name or name in m.aliases]
    assert found, f"Capabilities list no model {name!r}: {[m.name for m in capabilities.models]}"
    return found[0]


@pytest.fixture
def embedder(endpoint, capabilities):
    """The endpoint's embedding model as its Capabilities describe it; skipped where Embed is not declared."""
    if EMBED not in capabilities.rpcs:
        pytest.skip(f"{endpoint.name} declares no Embed")
    assert endpoint.embedding_model, f"{endpoint.name} declares Embed: its conformance factory must name a model"
    return model_of(capabilities, endpoint.embedding_model)


@pytest.fixture
def reranker(endpoint, capabilities):
    if RERANK not in capabilities.rpcs:
        pytest.skip(f"{endpoint.name} declares no Rerank")
    assert endpoint.rerank_model, f"{endpoint.name} declares Rerank: its conformance factory must name a model"
    return model_of(capabilities, endpoint.rerank_model)


def embed_request(model: str, texts=TEXTS, **fields) -> embed_pb2.EmbedRequest:
    return embed_pb2.EmbedRequest(model=model, texts=texts, **fields)


def close(a, b, tol: float = 1e-4) -> bool:
    return len(a) == len(b) and all(math.isclose(x, y, rel_tol=tol, abs_tol=tol) for x, y in zip(a, b))


def field_of(error) -> set[str]:
    return {f for f, _ in error.field_violations}


async def test_capabilities_describe_the_embedding_model(embedder):
    assert embedder.task == common_pb2.TASK_EMBEDDING
    assert embedder.dimensions > 0 and embedder.context_length > 0


async def test_one_vector_per_input_in_input_order(backend, embedder):
    reply = await backend.Embed(embed_request(embedder.name), timeout=TIMEOUT)
    assert [e.index for e in reply.embeddings] == [0, 1, 2]
    assert reply.dimensions == embedder.dimensions
    assert all(len(e.values) == embedder.dimensions for e in reply.embeddings)
    assert close(reply.embeddings[0].values, reply.embeddings[2].values)
    assert not close(reply.embeddings[0].values, reply.embeddings[1].values)
    assert reply.usage.prompt_tokens > 0 and reply.usage.total_tokens == reply.usage.prompt_tokens


async def test_a_batch_equals_its_inputs_one_by_one(backend, embedder):
    batch = await backend.Embed(embed_request(embedder.name), timeout=TIMEOUT)
    for i, text in enumerate(TEXTS[:2]):
        alone = await backend.Embed(embed_request(embedder.name, [text]), timeout=TIMEOUT)
        assert close(alone.embeddings[0].values, batch.embeddings[i].values), f"input {i} differs in a batch"


async def test_normalize_gives_unit_vectors(backend, embedder):
    reply = await backend.Embed(embed_request(embedder.name, normalize=True), timeout=TIMEOUT)
    for e in reply.embeddings:
        assert math.isclose(math.sqrt(sum(v * v for v in e.values)), 1.0, rel_tol=1e-4)


@pytest.mark.parametrize(("texts", "field"), [([], "input"), (["fine", ""], "input[1]")])
async def test_empty_input_is_refused_naming_it(backend, embedder, texts, field):
    error = await rpc_error(backend.Embed(embed_request(embedder.name, texts), timeout=TIMEOUT))
    assert error.code.name == "INVALID_ARGUMENT" and field in field_of(error), error


async def test_an_input_over_the_max_length_is_refused_naming_its_index(endpoint, backend, embedder):
    if not endpoint.refuses_long_inputs:
        pytest.skip(f"{endpoint.name}'s upstream decides what a long input gets")
    long = " ".join(["harbour"] * (embedder.context_length * 2))
    error = await rpc_error(backend.Embed(embed_request(embedder.name, ["short", long]), timeout=TIMEOUT))
    assert error.code.name == "INVALID_ARGUMENT" and "input[1]" in field_of(error), error
    cut = await backend.Embed(embed_request(embedder.name, ["short", long], truncation=embed_pb2.TRUNCATION_END),
                              timeout=TIMEOUT)
    assert cut.embeddings[1].truncated and not cut.embeddings[0].truncated
    assert cut.embeddings[1].tokens <= embedder.context_length


async def test_dimensions_only_where_the_model_declares_them(backend, embedder):
    undeclared = embedder.dimensions + 1
    error = await rpc_error(backend.Embed(embed_request(embedder.name, dimensions=undeclared), timeout=TIMEOUT))
    assert error.code.name == "INVALID_ARGUMENT" and "dimensions" in field_of(error), error
    if embedder.matryoshka_dimensions:
        shortest = min(embedder.matryoshka_dimensions)
        reply = await backend.Embed(embed_request(embedder.name, dimensions=shortest), timeout=TIMEOUT)
        assert {len(e.values) for e in reply.embeddings} == {shortest} and reply.dimensions == shortest


async def test_models_refuse_the_other_kind_of_request_naming_model(endpoint, backend, embedder):
    error = await rpc_error(backend.Embed(embed_request(endpoint.model), timeout=TIMEOUT))
    assert error.code.name == "INVALID_ARGUMENT" and "model" in field_of(error), error
    error = await rpc_error(backend.Generate(generate_request(endpoint, model=embedder.name, max_tokens=4),
                                             timeout=TIMEOUT))
    assert error.code.name == "INVALID_ARGUMENT" and "model" in field_of(error), error


async def test_an_unknown_embedding_model_is_not_found(backend, embedder):
    error = await rpc_error(backend.Embed(embed_request("no-such-embedder"), timeout=TIMEOUT))
    assert error.code.name == "NOT_FOUND", error


DOCUMENTS = ["gulls over grey water", "the harbour at dawn", "a recipe for bread", "fishermen mended their nets"]


async def test_rerank_scores_every_document_best_first(backend, reranker):
    assert reranker.task == common_pb2.TASK_RERANK
    request = embed_pb2.RerankRequest(model=reranker.name, query="the harbour at dawn", documents=DOCUMENTS)
    reply = await backend.Rerank(request, timeout=TIMEOUT)
    assert sorted(r.index for r in reply.results) == list(range(len(DOCUMENTS)))
    scores = [r.relevance_score for r in reply.results]
    assert scores == sorted(scores, reverse=True)
    assert all(r.document == "" for r in reply.results)
    top = await backend.Rerank(embed_pb2.RerankRequest(model=reranker.name, query=request.query, documents=DOCUMENTS,
                                                       top_n=2, return_documents=True), timeout=TIMEOUT)
    assert [r.index for r in top.results] == [r.index for r in reply.results[:2]]
    assert [r.document for r in top.results] == [DOCUMENTS[r.index] for r in top.results]


async def test_rerank_refuses_bad_input_naming_the_field(backend, reranker, embedder):
    error = await rpc_error(backend.Rerank(embed_pb2.RerankRequest(model=reranker.name, query="q"), timeout=TIMEOUT))
    assert "documents" in field_of(error), error
    error = await rpc_error(backend.Rerank(embed_pb2.RerankRequest(model=embedder.name, query="q", documents=["d"]),
                                           timeout=TIMEOUT))
    assert error.code.name == "INVALID_ARGUMENT" and "model" in field_of(error), error
