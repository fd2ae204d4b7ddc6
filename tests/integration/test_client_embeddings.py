"""Client.embed / Client.rerank and their AsyncClient twins through a real gateway in front of a real echo backend
(processes): the vectors and rankings are the backend's own, Matryoshka cuts, truncation, and errors naming fields."""

from __future__ import annotations

import json

import grpc
import pytest

from forgeway.client import AsyncClient, Client, InvalidArgumentError, NotFoundError
from forgeway.testing import ECHO_RETRIEVAL, ServiceProcess
from forgeway.v1 import backend_pb2_grpc, embed_pb2

EMBED, RERANK = "echo-embed", "echo-rerank"
LIMIT = 6  # the echo's longest input, in words
DOCUMENTS = ["a dog runs in parks", "the cat sat on it", "cat and cat", "nothing here"]  # query + each fit LIMIT


@pytest.fixture(scope="module")
def echo():
    with ServiceProcess("echo", "--model-name", "echo", *ECHO_RETRIEVAL, "--max-input-words", str(LIMIT)) as process:
        yield process


@pytest.fixture(scope="module")
def gateway(echo):
    with ServiceProcess("gateway", "--http-port", "-1", env={"FORGEWAY_BACKENDS": json.dumps({"echo": echo.address})}
                        ) as process:
        yield process


@pytest.fixture(scope="module")
def backend(echo):
    """The echo's own BackendService, asked directly: what the SDK's answers through the gateway must equal."""
    with grpc.insecure_channel(echo.address) as channel:
        yield backend_pb2_grpc.BackendServiceStub(channel)


@pytest.fixture
def client(gateway):
    with Client(gateway.address, timeout=20) as sdk:
        yield sdk


def field_of(error: pytest.ExceptionInfo[InvalidArgumentError]) -> list[str]:
    return [name for name, _ in error.value.field_violations]


def test_vectors_are_the_backends_own_in_input_order(client, backend):
    texts = ["the cat sat", "a dog runs in the park", "cat"]
    result = client.embed(EMBED, texts)
    direct = backend.Embed(embed_pb2.EmbedRequest(model=EMBED, texts=texts))
    assert result.vectors == [list(e.values) for e in direct.embeddings]
    assert [(e.index, e.tokens, e.truncated) for e in result.embeddings] == [(0, 3, False), (1, 6, False),
                                                                             (2, 1, False)]
    assert (result.model, result.dimensions, len(result.vectors[0])) == (EMBED, 32, 32)
    assert result.usage.prompt_tokens == result.usage.total_tokens == 10 and result.served_by.startswith("echo/")
    assert client.embed(EMBED, "the cat sat").vectors == result.vectors[:1]  # one text is a batch of one


def test_token_ids_go_as_token_ids(client, backend):
    result = client.embed(EMBED, [[5, 6, 7], [8]])
    direct = backend.Embed(embed_pb2.EmbedRequest(model=EMBED, token_ids=[embed_pb2.TokenIds(ids=[5, 6, 7]),
                                                                          embed_pb2.TokenIds(ids=[8])]))
    assert result.vectors == [list(e.values) for e in direct.embeddings]
    assert [e.tokens for e in result.embeddings] == [3, 1]
    assert client.embed(EMBED, [5, 6, 7]).vectors == result.vectors[:1]  # a flat list of ints is one input


def test_matryoshka_dimensions_and_raw_vectors(client, backend):
    short = client.embed(EMBED, ["the cat sat"], dimensions=8)
    assert short.dimensions == 8 and len(short.vectors[0]) == 8
    direct = backend.Embed(embed_pb2.EmbedRequest(model=EMBED, texts=["the cat sat"], dimensions=8))
    assert short.vectors == [list(direct.embeddings[0].values)]
    raw = client.embed(EMBED, ["cat cat"], normalize=False).vectors[0]
    assert sorted(abs(v) for v in raw)[-1] == 2.0  # a word counted twice, not scaled to unit length
    with pytest.raises(InvalidArgumentError) as bad:
        client.embed(EMBED, ["the cat sat"], dimensions=12)
    assert field_of(bad) == ["dimensions"] and "8, 16, 32" in str(bad.value)


def test_models_list_says_task_and_dimensions(client):
    models = {m.name: m for m in client.models.list()}
    embed, rerank = models[EMBED], models[RERANK]
    assert (embed.task, embed.dimensions, embed.matryoshka_dimensions, embed.context_length) == (
        "embedding", 32, (8, 16), LIMIT)
    assert (rerank.task, rerank.dimensions) == ("rerank", 0) and models["echo"].task == "text-generation"


def test_long_inputs_are_refused_or_cut_at_either_end(client):
    words = "one two three four five six seven eight"
    with pytest.raises(InvalidArgumentError) as bad:
        client.embed(EMBED, ["short", words])
    assert field_of(bad) == ["input[1]"]
    end, start = (client.embed(EMBED, [words], truncation=side).embeddings[0] for side in ("end", "start"))
    assert (end.tokens, end.truncated, start.tokens, start.truncated) == (LIMIT, True, LIMIT, True)
    assert end.values == client.embed(EMBED, ["one two three four five six"]).vectors[0]
    assert start.values == client.embed(EMBED, ["three four five six seven eight"]).vectors[0]


def test_bad_inputs_name_their_field(client):
    for inputs, field in (([], "input"), (["fine", ""], "input[1]"), ([[1], []], "input[1]"),
                          (["text", [1, 2]], "input")):
        with pytest.raises(InvalidArgumentError) as bad:
            client.embed(EMBED, inputs)
        assert field_of(bad) == [field], inputs
    with pytest.raises(InvalidArgumentError) as bad:
        client.embed(EMBED, ["x"], truncation="middle")
    assert field_of(bad) == ["truncation"] and "end" in str(bad.value)
    with pytest.raises(InvalidArgumentError) as bad:
        client.embed(RERANK, ["x"])  # a rerank model does not embed
    assert field_of(bad) == ["model"]
    with pytest.raises(NotFoundError):
        client.embed("no-such-model", ["x"])


def test_rerank_orders_cuts_and_echoes_documents(client, backend):
    ranked = client.rerank(RERANK, "cat", DOCUMENTS)
    direct = backend.Rerank(embed_pb2.RerankRequest(model=RERANK, query="cat", documents=DOCUMENTS))
    assert [(r.index, r.relevance_score) for r in ranked.results] == [(r.index, r.relevance_score)
                                                                      for r in direct.results]
    assert ranked.order[:2] == [2, 1] and sorted(ranked.order) == [0, 1, 2, 3]
    scores = [r.relevance_score for r in ranked.results]
    assert scores == sorted(scores, reverse=True) and all(r.document == "" for r in ranked.results)
    assert ranked.model == RERANK and ranked.usage.prompt_tokens > 0 and ranked.served_by.startswith("echo/")
    best = client.rerank(RERANK, "cat", DOCUMENTS, top_n=2, return_documents=True)
    assert [(r.index, r.document) for r in best.results] == [(2, DOCUMENTS[2]), (1, DOCUMENTS[1])]


def test_rerank_errors_name_their_field(client):
    for documents, options, field in (([], {}, "documents"), (["a", ""], {}, "documents[1]"),
                                      (["a"], {"top_n": 0}, "top_n"), (["a"], {"top_n": -1}, "top_n"),
                                      ("one string", {}, "documents")):
        with pytest.raises(InvalidArgumentError) as bad:
            client.rerank(RERANK, "q", documents, **options)
        assert field_of(bad) == [field], (documents, options)
    with pytest.raises(InvalidArgumentError) as bad:
        client.rerank(RERANK, "cat", ["cat " * LIMIT])
    assert field_of(bad) == ["documents[0]"]
    assert client.rerank(RERANK, "cat", ["cat " * LIMIT], truncation="end").results[0].relevance_score > 0


async def test_async_client_answers_as_the_sync_one(gateway, client):
    async with AsyncClient(gateway.address, timeout=20) as sdk:
        vectors = await sdk.embed(EMBED, ["the cat sat", "dog"], dimensions=16, truncation="end")
        ranked = await sdk.rerank(RERANK, "cat", DOCUMENTS, top_n=3, return_documents=True)
        with pytest.raises(InvalidArgumentError) as bad:
            await sdk.embed(EMBED, "x", dimensions=12)
        assert field_of(bad) == ["dimensions"]
        with pytest.raises(InvalidArgumentError) as bad:
            await sdk.embed(EMBED, [])
        assert field_of(bad) == ["input"]
    assert vectors == client.embed(EMBED, ["the cat sat", "dog"], dimensions=16, truncation="end")
    assert ranked.results == client.rerank(RERANK, "cat", DOCUMENTS, top_n=3, return_documents=True).results
