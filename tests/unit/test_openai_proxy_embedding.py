"""The OpenAI proxy's embedding and rerank translation: settings, what is sent, and how answers become results."""

from __future__ import annotations

import base64
import math
import struct

import pytest
from openai.types import CreateEmbeddingResponse, Embedding
from openai.types.create_embedding_response import Usage
from pydantic import ValidationError

from forgeway.core.embeddings import EmbeddingRequest, RerankRequest
from forgeway.core.errors import Internal, Unsupported
from forgeway.core.generation import Task
from forgeway.server.settings import SettingsError, build_settings
from forgeway.services.openai_proxy import embedding
from forgeway.services.openai_proxy.settings import OpenAIProxySettings, UpstreamModel

EMBED = UpstreamModel(name="small", upstream="text-embedding-3-small", task="embedding", dimensions=4,
                      matryoshka_dimensions=[2])
RERANK = UpstreamModel(name="rr", upstream="jina-reranker", task="reranker")


def b64(values: list[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode()


def response(*vectors, prompt_tokens: int = 7) -> CreateEmbeddingResponse:
    """An answer as the openai client leaves it with encoding_format base64 (unvalidated: strings stay strings)."""
    return CreateEmbeddingResponse.model_construct(
        data=[Embedding.model_construct(index=i, embedding=v, object="embedding") for i, v in enumerate(vectors)],
        model="m", object="list", usage=Usage.model_construct(prompt_tokens=prompt_tokens, total_tokens=prompt_tokens),
    )


def test_models_declare_their_task_in_the_task_tables_spellings():
    assert UpstreamModel(name="e", task="embeddings").task == Task.EMBEDDING
    assert RERANK.task == Task.RERANK and UpstreamModel(name="c").task == Task.TEXT_GENERATION
    assert UpstreamModel(name="e", task="embedding", max_input_tokens=8191).context_length == 8191
    for bad in ({"task": "summarization"}, {"task": "nonsense"}, {"dimensions": 8},
                {"task": "embedding", "dimensions": 8, "matryoshka_dimensions": [8]},
                {"task": "rerank", "matryoshka_dimensions": [4]}):
        with pytest.raises(ValidationError):
            UpstreamModel(name="m", **bad)


def test_rerank_path_is_a_path_or_an_url_without_credentials():
    assert build_settings(OpenAIProxySettings, []).rerank_path == "/rerank"
    vllm = build_settings(OpenAIProxySettings, ["--rerank-path", "http://vllm:8000/v2/rerank"])
    assert vllm.rerank_path == "http://vllm:8000/v2/rerank"
    for bad in ("rerank", "ftp://x/rerank", "https://user:s3cr3t@x/rerank"):
        with pytest.raises(SettingsError) as caught:
            build_settings(OpenAIProxySettings, ["--rerank-path", bad])
        assert "rerank_path" in str(caught.value) and "s3cr3t" not in str(caught.value)


def test_embed_and_rerank_are_served_where_a_model_serves_them():
    assert embedding.retrieval_rpcs([UpstreamModel(name="c")]) == ()
    assert embedding.retrieval_rpcs([EMBED, UpstreamModel(name="c")]) == ("Embed",)
    assert embedding.retrieval_rpcs([RERANK, EMBED]) == ("Embed", "Rerank")


def test_the_call_names_the_upstream_model_and_sends_only_a_shorter_length():
    texts = EmbeddingRequest(model="small", texts=("a", "b"), user="u-7")
    assert embedding.embed_kwargs(texts, EMBED) == {
        "model": "text-embedding-3-small", "input": ["a", "b"], "encoding_format": "base64", "user": "u-7"}
    ids = EmbeddingRequest(model="small", token_ids=((1, 2), (3,)), dimensions=2)
    assert embedding.embed_kwargs(ids, EMBED)["input"] == [[1, 2], [3]]
    assert embedding.embed_kwargs(ids, EMBED)["dimensions"] == 2
    full = EmbeddingRequest(model="small", texts=("a",), dimensions=4)
    assert "dimensions" not in embedding.embed_kwargs(full, EMBED)


@pytest.mark.parametrize(("fields", "feature"), [
    ({"normalize": False}, "normalize"), ({"truncation": "end"}, "truncation"), ({"truncation": "start"}, "truncation"),
])
def test_what_the_api_cannot_do_is_refused_naming_the_field(fields, feature):
    with pytest.raises(Unsupported) as caught:
        embedding.embed_kwargs(EmbeddingRequest(model="small", texts=("a",), **fields), EMBED)
    assert caught.value.feature == feature
    assert embedding.embed_kwargs(EmbeddingRequest(model="small", texts=("a",), normalize=True), EMBED)


def test_vectors_decode_from_base64_or_floats():
    values = [0.5, -0.25, 1.0, 3.0]
    assert embedding.decode(b64(values)) == values
    assert embedding.decode(values) == values
    with pytest.raises(Internal):
        embedding.decode([[0.1, 0.2], [0.3, 0.4]])  # per-token vectors: a model served without pooling
    with pytest.raises(Internal):
        embedding.decode(base64.b64encode(b"abc").decode())


def test_a_length_the_upstream_ignored_is_cut_and_renormalized_if_it_was_unit_length():
    unit, raw = [0.5, 0.5, 0.5, 0.5], [3.0, 4.0, 1.0, 1.0]
    request = EmbeddingRequest(model="small", texts=("a", "b"), dimensions=2)
    result = embedding.embedding_result(response(b64(unit), raw), request, EMBED, "openai/x")
    assert result.embeddings[0].values == pytest.approx([math.sqrt(0.5)] * 2)
    assert result.embeddings[1].values == [3.0, 4.0]  # not unit length upstream: cut as it is
    normalized = EmbeddingRequest(model="small", texts=("a", "b"), dimensions=2, normalize=True)
    assert embedding.embedding_result(response(unit, raw), normalized, EMBED, "").embeddings[1].values == \
        pytest.approx([0.6, 0.8])
    with pytest.raises(Internal):
        embedding.embedding_result(response([1.0]), EmbeddingRequest(model="small", texts=("a",), dimensions=2),
                                   EMBED, "")


def test_the_call_total_is_the_usage_and_vectors_come_in_input_order():
    request = EmbeddingRequest(model="small", texts=("a", "b"))
    answer = response([1.0, 0.0], [0.0, 1.0], prompt_tokens=5)
    answer.data.reverse()
    result = embedding.embedding_result(answer, request, EMBED, "openai/x")
    proto = result.to_proto()
    assert [list(e.values) for e in proto.embeddings] == [[1.0, 0.0], [0.0, 1.0]]
    assert proto.usage.prompt_tokens == proto.usage.total_tokens == 5 and proto.model == "small"
    with pytest.raises(Internal):
        embedding.embedding_result(response([1.0]), request, EMBED, "")


def test_rerank_sends_every_document_and_reads_scores_in_document_order():
    request = RerankRequest(model="rr", query="q", documents=("a", "b", "c"), top_n=2, return_documents=True)
    assert embedding.rerank_body(request, RERANK) == {"model": "jina-reranker", "query": "q",
                                                      "documents": ["a", "b", "c"]}
    answer = {"results": [{"index": 2, "relevance_score": 0.9, "document": {"text": "c"}},
                          {"index": 0, "relevance_score": 0.1}, {"index": 1, "relevance_score": 0.5}],
              "usage": {"total_tokens": 12}}  # Jina's usage has total_tokens only
    result = embedding.rerank_result(answer, request, RERANK, "openai/x")
    assert result.scores == [0.1, 0.5, 0.9] and result.prompt_tokens == 12
    proto = result.to_proto()
    assert [(r.index, r.document) for r in proto.results] == [(2, "c"), (1, "b")]


@pytest.mark.parametrize("answer", [
    {}, {"results": "no"}, {"results": [{"index": 0, "relevance_score": 1.0}]},
    {"results": [{"index": 0, "relevance_score": "high"}, {"index": 1, "relevance_score": 0.0}]},
    {"results": [{"index": 5, "relevance_score": 1.0}, {"index": 1, "relevance_score": 0.0}]},
])
def test_a_rerank_answer_missing_a_score_is_an_error_not_a_guess(answer):
    with pytest.raises(Internal):
        embedding.rerank_result(answer, RerankRequest(model="rr", query="q", documents=("a", "b")), RERANK, "")


def test_rerank_truncation_is_refused():
    with pytest.raises(Unsupported) as caught:
        embedding.rerank_body(RerankRequest(model="rr", query="q", documents=("a",), truncation="end"), RERANK)
    assert caught.value.feature == "truncation"
