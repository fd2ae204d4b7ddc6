"""The SDK's embed and rerank request builders and conversions (no server needed)."""

from __future__ import annotations

import pytest

from forgeway.client import InvalidArgumentError
from forgeway.client.convert import embedding_result, model, rerank_result
from forgeway.client.embeddings import embed_request, rerank_request
from forgeway.v1 import common_pb2, embed_pb2, models_pb2


def field_of(error: pytest.ExceptionInfo[InvalidArgumentError]) -> list[str]:
    return [name for name, _ in error.value.field_violations]


def test_embed_request_takes_texts_or_token_ids():
    assert list(embed_request("m", "one text").texts) == ["one text"]
    assert list(embed_request("m", ("a", "b")).texts) == ["a", "b"]
    assert [list(t.ids) for t in embed_request("m", [[1, 2], [3]]).token_ids] == [[1, 2], [3]]
    assert [list(t.ids) for t in embed_request("m", [7, 8, 9]).token_ids] == [[7, 8, 9]]  # one token-id list
    empty = embed_request("m", [])  # sent as it is: the server answers naming `input`
    assert not empty.texts and not empty.token_ids


def test_embed_request_options_stay_unset_unless_given():
    plain = embed_request("m", "x")
    assert not plain.HasField("dimensions") and not plain.HasField("normalize")
    assert plain.truncation == embed_pb2.TRUNCATION_UNSPECIFIED
    full = embed_request("m", "x", dimensions=8, normalize=False, truncation="right", backend="hf", user="u1")
    assert (full.dimensions, full.HasField("normalize"), full.normalize) == (8, True, False)
    assert (full.truncation, full.backend, full.user) == (embed_pb2.TRUNCATION_END, "hf", "u1")
    assert embed_request("m", "x", truncation="start").truncation == embed_pb2.TRUNCATION_START


@pytest.mark.parametrize(("inputs", "options", "field"), [
    (["a", [1]], {}, "input"),
    ([[1], [-1]], {}, "input[1]"),
    ([[True]], {}, "input[0]"),
    (42, {}, "input"),
    ("x", {"dimensions": -8}, "dimensions"),
    ("x", {"truncation": "middle"}, "truncation"),
])
def test_embed_request_refuses_what_cannot_be_sent(inputs, options, field):
    with pytest.raises(InvalidArgumentError) as bad:
        embed_request("m", inputs, **options)
    assert field_of(bad) == [field]


def test_rerank_request():
    request = rerank_request("r", "q", iter(["a", "b"]), top_n=1, return_documents=True, truncation="end")
    assert (list(request.documents), request.top_n, request.return_documents) == (["a", "b"], 1, True)
    assert not rerank_request("r", "q", ["a"]).HasField("top_n")
    for documents, options in (("a single string", {}), (["a", 1], {}), (["a"], {"top_n": -1})):
        with pytest.raises(InvalidArgumentError):
            rerank_request("r", "q", documents, **options)


def test_conversions_keep_input_order_and_usage():
    response = embed_pb2.EmbedResponse(
        model="m", dimensions=2, served_by="echo/1", usage=embed_pb2.EmbedUsage(prompt_tokens=5, total_tokens=5),
        embeddings=[embed_pb2.Embedding(index=1, values=[0.5, 0.25], tokens=3, truncated=True),
                    embed_pb2.Embedding(index=0, values=[1.0, 0.0], tokens=2)])
    result = embedding_result(response)
    assert result.vectors == [[1.0, 0.0], [0.5, 0.25]] and result.embeddings[1].truncated
    assert (result.usage.prompt_tokens, result.usage.total_tokens, result.dimensions) == (5, 5, 2)
    ranked = rerank_result(embed_pb2.RerankResponse(model="r", results=[
        embed_pb2.RerankResult(index=2, relevance_score=0.9, document="c"), embed_pb2.RerankResult(index=0)]))
    assert ranked.order == [2, 0] and ranked.results[0].document == "c"
    info = model(models_pb2.ModelInfo(name="e", task=common_pb2.TASK_EMBEDDING, dimensions=32,
                                      matryoshka_dimensions=[8, 16], pooling="mean"))
    assert (info.task, info.dimensions, info.matryoshka_dimensions, info.pooling) == ("embedding", 32, (8, 16), "mean")
