"""The shim's embedding and rerank conversions: HTTP bodies -> EmbedRequest / RerankRequest, replies -> HTTP shapes."""

from __future__ import annotations

import base64
import struct

import pytest
from pydantic import ValidationError

from forgeway.gateway.http import convert_embeddings as convert
from forgeway.gateway.http.schemas_embeddings import EmbeddingRequest, RerankRequest
from forgeway.v1 import embed_pb2


def embed(**extra) -> EmbeddingRequest:
    return EmbeddingRequest.model_validate({"model": "m", "input": "hi", **extra})


def rerank(**extra) -> RerankRequest:
    return RerankRequest.model_validate({"model": "r", "query": "q", "documents": ["a", "b"], **extra})


def test_texts_token_ids_and_the_options_map_onto_the_contract():
    request = convert.embed_request(embed(input=["a", "b"], dimensions=8, normalize=False, user="u", backend="hf",
                                          truncate=True, truncation_direction="Left"))
    assert (list(request.texts), request.dimensions, request.normalize) == (["a", "b"], 8, False)
    assert (request.user, request.backend, request.truncation) == ("u", "hf", embed_pb2.TRUNCATION_START)
    assert [list(t.ids) for t in convert.embed_request(embed(input=[5, 6])).token_ids] == [[5, 6]]
    assert [list(t.ids) for t in convert.embed_request(embed(input=[[5], [6, 7]])).token_ids] == [[5], [6, 7]]
    plain = convert.embed_request(embed())
    assert list(plain.texts) == ["hi"] and plain.truncation == embed_pb2.TRUNCATION_UNSPECIFIED
    assert not plain.HasField("dimensions") and not plain.HasField("normalize")
    assert convert.embed_request(embed(truncate=True)).truncation == embed_pb2.TRUNCATION_END


@pytest.mark.parametrize("body, param", [
    ({"input": ["a", 1]}, "input"),
    ({"input": [-1]}, "input"),
    ({"input": [True]}, "input"),
    ({"input": 3}, "input"),
    ({"encoding_format": "bytes"}, "encoding_format"),
    ({"dimensions": 0}, "dimensions"),
    ({"truncation_direction": "left"}, "truncation_direction"),
    ({"truncate_prompt_tokens": 8}, "truncate_prompt_tokens"),
    ({"extra": 1}, "extra"),
])
def test_bad_embedding_bodies_name_the_parameter(body, param):
    from fastapi.exceptions import RequestValidationError

    from forgeway.gateway.http.errors import from_validation

    with pytest.raises(ValidationError) as info:
        embed(**body)
    errors = [{**e, "loc": ("body", *e["loc"])} for e in info.value.errors()]
    assert from_validation(RequestValidationError(errors)).param == param


def test_a_single_input_is_named_input_in_errors():
    assert convert.param_mapper(embed())("input[0]") == "input"
    assert convert.param_mapper(embed(input=[1, 2]))("input[0]") == "input"
    assert convert.param_mapper(embed(input=["a", "b"]))("input[0]") == "input[0]"
    assert convert.param_mapper(embed())("truncation") == "truncate"
    assert convert.param_mapper(rerank())("documents[1]") == "documents[1]"
    assert convert.param_mapper(rerank())("") is None


def test_vectors_come_back_in_input_order_as_floats_or_base64():
    reply = embed_pb2.EmbedResponse(model="m", usage=embed_pb2.EmbedUsage(prompt_tokens=3, total_tokens=3),
                                    embeddings=[embed_pb2.Embedding(index=1, values=[0.5, -2.0]),
                                                embed_pb2.Embedding(index=0, values=[0.25, 1.0])])
    floats = convert.embedding_list(reply, "float")
    assert floats == {"object": "list", "model": "m", "usage": {"prompt_tokens": 3, "total_tokens": 3},
                      "data": [{"object": "embedding", "index": 0, "embedding": [0.25, 1.0]},
                               {"object": "embedding", "index": 1, "embedding": [0.5, -2.0]}]}
    encoded = convert.embedding_list(reply, "base64")["data"][1]["embedding"]
    assert struct.unpack("<2f", base64.b64decode(encoded)) == (0.5, -2.0)


def test_rerank_maps_documents_top_n_and_echo():
    request = convert.rerank_request(rerank(documents=["a", {"text": "b"}], top_n=1, return_documents=False))
    assert (list(request.documents), request.top_n, request.return_documents) == (["a", "b"], 1, False)
    assert not convert.rerank_request(rerank(top_n=0)).HasField("top_n")  # vLLM's 0: every document
    assert convert.rerank_request(rerank()).return_documents  # echoed unless asked not to, as vLLM does
    reply = embed_pb2.RerankResponse(model="r", usage=embed_pb2.EmbedUsage(prompt_tokens=4, total_tokens=4),
                                     results=[embed_pb2.RerankResult(index=1, relevance_score=0.75, document="b")])
    assert convert.reranked(reply, "rerank-1", True) == {
        "id": "rerank-1", "model": "r", "usage": {"prompt_tokens": 4, "total_tokens": 4},
        "results": [{"index": 1, "relevance_score": 0.75, "document": {"text": "b"}}]}
    assert convert.reranked(reply, "rerank-1", False)["results"] == [{"index": 1, "relevance_score": 0.75}]
    with pytest.raises(ValidationError):
        rerank(documents=[{"text": "a", "title": "t"}])
