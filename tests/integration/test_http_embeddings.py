"""/v1/embeddings, /v1/rerank (and /v2/rerank, /rerank) and the kinds in /v1/models, served by a real gateway's HTTP
API in front of a real echo process (echo-embed: 32 dimensions, Matryoshka 8 and 16; echo-rerank), through the
official `openai` client, httpx and LangChain's OpenAIEmbeddings; every vector and score is compared with what the
echo process answers over gRPC itself."""

from __future__ import annotations

import base64
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import httpx
import openai
import pytest

from forgeway.testing import ECHO_RETRIEVAL, LoopThread, ServiceProcess, gateway_settings, start_gateway, stop_now
from forgeway.v1 import backend_pb2_grpc, embed_pb2

TEXTS = ["the quick brown fox", "jumps over the lazy dog", "a fox and a dog"]
LONG = " ".join(f"w{i}" for i in range(600))  # echo reads at most 512 words per input
DOCS = ["green pears and plums", "a red apple pie", "red apple", "blue sky"]


@dataclass
class Stack:
    echo: ServiceProcess
    gateway: Any

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.gateway.service.http_port}"


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with ServiceProcess("echo", "--grace-seconds", "1", *ECHO_RETRIEVAL) as echo:
        loop = LoopThread()
        try:
            gateway = loop.run(start_gateway(gateway_settings([echo.address], http_port=0)))
            try:
                yield Stack(echo, gateway)
            finally:
                loop.run(stop_now(gateway))
        finally:
            loop.close()


@pytest.fixture(scope="module")
def client(stack) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{stack.url}/v1", api_key="unused", max_retries=0)


@pytest.fixture(scope="module")
def http(stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.url) as session:
        yield session


def grpc_embed(stack: Stack, texts=(), token_ids=(), **fields) -> embed_pb2.EmbedResponse:
    """What the echo process itself answers, bypassing gateway and shim."""
    request = embed_pb2.EmbedRequest(model="echo-embed", texts=texts,
                                     token_ids=[embed_pb2.TokenIds(ids=ids) for ids in token_ids], **fields)
    with grpc.insecure_channel(stack.echo.address) as channel:
        return backend_pb2_grpc.BackendServiceStub(channel).Embed(request)


def vectors(reply: embed_pb2.EmbedResponse) -> list[list[float]]:
    return [list(e.values) for e in reply.embeddings]


def grpc_scores(stack: Stack, query: str, documents: list[str]) -> list[tuple[int, float]]:
    request = embed_pb2.RerankRequest(model="echo-rerank", query=query, documents=documents)
    with grpc.insecure_channel(stack.echo.address) as channel:
        reply = backend_pb2_grpc.BackendServiceStub(channel).Rerank(request)
    return [(r.index, r.relevance_score) for r in reply.results]


def test_a_string_in_base64_and_float(client, http, stack):
    expected = grpc_embed(stack, [TEXTS[0]])
    reply = client.embeddings.create(model="echo-embed", input=TEXTS[0])  # the client asks for base64 and decodes it
    assert [d.embedding for d in reply.data] == vectors(expected)
    assert (reply.model, reply.usage.prompt_tokens, reply.usage.total_tokens) == ("echo-embed", 4, 4)
    floats = client.embeddings.create(model="echo-embed", input=TEXTS[0], encoding_format="float")
    assert [d.embedding for d in floats.data] == vectors(expected)
    body = http.post("/v1/embeddings", json={"model": "echo-embed", "input": TEXTS[0], "encoding_format": "base64"})
    encoded = body.json()["data"][0]["embedding"]
    assert body.json() == {"object": "list", "model": "echo-embed", "usage": {"prompt_tokens": 4, "total_tokens": 4},
                           "data": [{"object": "embedding", "index": 0, "embedding": encoded}]}
    raw = base64.b64decode(encoded)
    assert list(struct.unpack(f"<{len(raw) // 4}f", raw)) == vectors(expected)[0]


def test_a_list_of_texts_keeps_its_order(client, stack):
    reply = client.embeddings.create(model="echo-embed", input=TEXTS, user="user-1")
    assert [d.index for d in reply.data] == [0, 1, 2]
    expected = grpc_embed(stack, TEXTS)
    assert [d.embedding for d in reply.data] == vectors(expected)
    assert reply.usage.prompt_tokens == expected.usage.prompt_tokens


def test_token_ids_one_input_and_several(client, stack):
    one = client.embeddings.create(model="echo-embed", input=[101, 7, 4242])
    assert [d.embedding for d in one.data] == vectors(grpc_embed(stack, token_ids=[[101, 7, 4242]]))
    several = client.embeddings.create(model="echo-embed", input=[[1, 2], [3, 4, 5]], encoding_format="float")
    assert [d.embedding for d in several.data] == vectors(grpc_embed(stack, token_ids=[[1, 2], [3, 4, 5]]))


def test_matryoshka_dimensions(client, stack):
    reply = client.embeddings.create(model="echo-embed", input=TEXTS, dimensions=8)
    assert [d.embedding for d in reply.data] == vectors(grpc_embed(stack, TEXTS, dimensions=8))
    assert {len(d.embedding) for d in reply.data} == {8}
    with pytest.raises(openai.BadRequestError) as info:
        client.embeddings.create(model="echo-embed", input="x", dimensions=12)
    assert info.value.body["param"] == "dimensions" and "8, 16, 32" in info.value.body["message"]


def test_empty_and_too_many_inputs(client):
    for empty in ("", []):
        with pytest.raises(openai.BadRequestError) as info:
            client.embeddings.create(model="echo-embed", input=empty)
        assert info.value.body["param"] == "input"
    with pytest.raises(openai.BadRequestError) as info:
        client.embeddings.create(model="echo-embed", input=["a", ""])
    assert info.value.body["param"] == "input[1]"
    with pytest.raises(openai.BadRequestError) as info:
        client.embeddings.create(model="echo-embed", input=["word"] * 2049)
    assert info.value.body["param"] == "input" and "2048" in info.value.body["message"]


def test_models_of_another_kind_and_unknown_models(client):
    with pytest.raises(openai.BadRequestError) as info:
        client.embeddings.create(model="echo", input="x")
    assert info.value.body["param"] == "model"
    with pytest.raises(openai.BadRequestError) as info:
        client.embeddings.create(model="echo-rerank", input="x")
    assert info.value.body["param"] == "model"
    with pytest.raises(openai.NotFoundError) as info:
        client.embeddings.create(model="no-such-model", input="x")
    assert info.value.body["param"] == "model"
    with pytest.raises(openai.BadRequestError) as info:  # and an embedding model does not chat
        client.chat.completions.create(model="echo-embed", messages=[{"role": "user", "content": "hi"}])
    assert info.value.body["param"] == "model"


def test_truncation_is_refused_unless_asked_for(client, stack):
    with pytest.raises(openai.BadRequestError) as info:
        client.embeddings.create(model="echo-embed", input=LONG)
    assert info.value.body["param"] == "input" and "512" in info.value.body["message"]
    right = client.embeddings.create(model="echo-embed", input=LONG, extra_body={"truncate": True})
    assert right.data[0].embedding == vectors(grpc_embed(stack, [LONG], truncation=embed_pb2.TRUNCATION_END))[0]
    assert right.usage.prompt_tokens == 512
    left = client.embeddings.create(model="echo-embed", input=LONG,
                                    extra_body={"truncate": True, "truncation_direction": "Left"})
    assert left.data[0].embedding == vectors(grpc_embed(stack, [LONG], truncation=embed_pb2.TRUNCATION_START))[0]
    assert left.data[0].embedding != right.data[0].embedding
    with pytest.raises(openai.BadRequestError) as info:
        client.embeddings.create(model="echo-embed", input="x", extra_body={"truncation_direction": "left"})
    assert info.value.body["param"] == "truncation_direction"
    raw = client.embeddings.create(model="echo-embed", input=TEXTS[1], extra_body={"normalize": False})
    assert raw.data[0].embedding == vectors(grpc_embed(stack, [TEXTS[1]], normalize=False))[0]


@pytest.mark.parametrize("path", ["/v1/rerank", "/v2/rerank", "/rerank"])
def test_rerank_orders_documents(http, stack, path):
    expected = grpc_scores(stack, "red apple", DOCS)
    reply = http.post(path, json={"model": "echo-rerank", "query": "red apple", "documents": DOCS})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["id"].startswith("rerank-") and body["model"] == "echo-rerank"
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] > 0
    results = body["results"]
    assert [(r["index"], r["relevance_score"]) for r in results] == expected
    assert [r["relevance_score"] for r in results] == sorted((r["relevance_score"] for r in results), reverse=True)
    assert [r["document"]["text"] for r in results] == [DOCS[i] for i, _ in expected]  # echoed by default, as vLLM


def test_rerank_top_n_return_documents_and_document_objects(http, stack):
    expected = grpc_scores(stack, "red apple", DOCS)
    top = http.post("/v1/rerank", json={"model": "echo-rerank", "query": "red apple", "documents": DOCS, "top_n": 2,
                                        "return_documents": False}).json()
    assert [(r["index"], r["relevance_score"]) for r in top["results"]] == expected[:2]
    assert all("document" not in r for r in top["results"])
    objects = http.post("/v2/rerank", json={"model": "echo-rerank", "query": "red apple",
                                            "documents": [{"text": d} for d in DOCS]}).json()
    assert [(r["index"], r["relevance_score"]) for r in objects["results"]] == expected
    assert objects["results"][0]["document"] == {"text": DOCS[expected[0][0]]}
    every = http.post("/v1/rerank", json={"model": "echo-rerank", "query": "red apple", "documents": DOCS, "top_n": 0})
    assert len(every.json()["results"]) == len(DOCS)  # 0 means all, as in vLLM


@pytest.mark.parametrize("body, param", [
    ({"query": "", "documents": ["a"]}, "query"),
    ({"query": "q", "documents": []}, "documents"),
    ({"query": "q", "documents": ["a", ""]}, "documents[1]"),
    ({"query": "q", "documents": ["a"], "top_n": -1}, "top_n"),
    ({"query": "q", "documents": ["a"], "model": "echo-embed"}, "model"),
    ({"query": "q", "documents": ["a"], "model": "no-such-model"}, "model"),
    ({"query": "q", "documents": ["a"], "rank_fields": ["title"]}, "rank_fields"),
])
def test_rerank_errors_name_the_parameter(http, body, param):
    reply = http.post("/v1/rerank", json={"model": "echo-rerank", **body})
    assert reply.status_code == (404 if body.get("model") == "no-such-model" else 400), reply.text
    assert reply.json()["error"]["param"] == param


def test_models_say_their_kind(client):
    models = {m.id: m.model_extra for m in client.models.list()}
    assert models["echo-embed"]["task"] == "embedding"
    assert (models["echo-embed"]["dimensions"], models["echo-embed"]["matryoshka_dimensions"]) == (32, [8, 16])
    assert models["echo-rerank"]["task"] == "rerank" and models["echo-rerank"]["dimensions"] is None
    assert models["echo"]["task"] == "text-generation" and models["echo"]["matryoshka_dimensions"] is None


def test_langchain_openai_embeddings(stack):
    from langchain_openai import OpenAIEmbeddings

    # check_embedding_ctx_length=False sends the texts as they are: with it on, LangChain tokenizes them with
    # tiktoken first, which downloads its encoding file (this machine is offline).
    embeddings = OpenAIEmbeddings(model="echo-embed", base_url=f"{stack.url}/v1", api_key="unused",
                                  check_embedding_ctx_length=False, max_retries=0)
    assert embeddings.embed_documents(TEXTS) == vectors(grpc_embed(stack, TEXTS))
    assert embeddings.embed_query(TEXTS[2]) == vectors(grpc_embed(stack, [TEXTS[2]]))[0]
    short = OpenAIEmbeddings(model="echo-embed", base_url=f"{stack.url}/v1", api_key="unused", dimensions=16,
                             check_embedding_ctx_length=False, max_retries=0)
    assert short.embed_query(TEXTS[0]) == vectors(grpc_embed(stack, [TEXTS[0]], dimensions=16))[0]
