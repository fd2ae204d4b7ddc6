"""Embedding and rerank requests in the domain core: what a request may carry, the error each mistake gets (field
named as the HTTP API names it), and the one servable check shared by the router and every engine."""

import pytest

from forgeway.core.embeddings import MAX_INPUTS, EmbeddingRequest, RerankRequest, RerankResult
from forgeway.core.errors import InvalidArgument
from forgeway.core.generation import GenerationRequest, Task
from forgeway.core.models import ModelInfo, check_servable
from forgeway.v1 import embed_pb2 as pb
from forgeway.v1 import generate_pb2

EMBEDDER = ModelInfo("mini", task=Task.EMBEDDING, context_length=128, dimensions=32, matryoshka=[8, 16])
RERANKER = ModelInfo("judge", task=Task.RERANK, context_length=128)
CHAT = ModelInfo("demo", chat=True)


def field_of(parse, msg) -> str:
    with pytest.raises(InvalidArgument) as err:
        parse(msg)
    return err.value.field


def test_an_embed_request_round_trips_through_its_proto():
    msg = pb.EmbedRequest(model="mini", texts=["a", "b"], dimensions=16, normalize=False,
                          truncation=pb.TRUNCATION_END, user="u1")
    req = EmbeddingRequest.from_proto(msg)
    assert (req.texts, req.dimensions, req.normalize, req.truncation, req.size) == (("a", "b"), 16, False, "end", 2)
    assert req.to_proto() == msg
    ids = EmbeddingRequest.from_proto(pb.EmbedRequest(model="mini", token_ids=[pb.TokenIds(ids=[5, 6])]))
    assert ids.token_ids == ((5, 6),) and ids.normalize is None and ids.truncation == "none"


@pytest.mark.parametrize(("msg", "field"), [
    (pb.EmbedRequest(texts=["a"]), "model"),
    (pb.EmbedRequest(model="m"), "input"),
    (pb.EmbedRequest(model="m", texts=["a", ""]), "input[1]"),
    (pb.EmbedRequest(model="m", token_ids=[pb.TokenIds()]), "input[0]"),
    (pb.EmbedRequest(model="m", texts=["a"], token_ids=[pb.TokenIds(ids=[1])]), "input"),
    (pb.EmbedRequest(model="m", texts=["a"] * (MAX_INPUTS + 1)), "input"),
    (pb.EmbedRequest(model="m", texts=["a"], dimensions=0), "dimensions"),
])
def test_bad_embed_requests_name_the_field(msg, field):
    assert field_of(EmbeddingRequest.from_proto, msg) == field


def test_the_batch_limit_is_in_the_message():
    with pytest.raises(InvalidArgument, match=f"at most {MAX_INPUTS}"):
        EmbeddingRequest.from_proto(pb.EmbedRequest(model="m", texts=["a"] * (MAX_INPUTS + 1)))


@pytest.mark.parametrize(("msg", "field"), [
    (pb.RerankRequest(model="m", documents=["d"]), "query"),
    (pb.RerankRequest(model="m", query="q"), "documents"),
    (pb.RerankRequest(model="m", query="q", documents=["d", ""]), "documents[1]"),
    (pb.RerankRequest(model="m", query="q", documents=["d"], top_n=0), "top_n"),
])
def test_bad_rerank_requests_name_the_field(msg, field):
    assert field_of(RerankRequest.from_proto, msg) == field


def test_rerank_results_sort_by_score_cut_to_top_n_and_echo_documents():
    request = RerankRequest.from_proto(pb.RerankRequest(model="judge", query="q", documents=["a", "b", "c", "d"],
                                                        top_n=3, return_documents=True))
    out = RerankResult("judge", [0.1, 0.9, 0.5, 0.9], prompt_tokens=12, request=request).to_proto()
    assert [(r.index, r.document) for r in out.results] == [(1, "b"), (3, "d"), (2, "c")]  # ties keep input order
    assert out.usage.total_tokens == 12
    plain = RerankResult("judge", [0.1, 0.9], request=RerankRequest("judge", "q", ("a", "b"))).to_proto()
    assert [(r.index, r.document) for r in plain.results] == [(1, ""), (0, "")]


def test_a_model_serves_only_its_own_kind_of_request_and_the_error_names_model():
    embed = EmbeddingRequest("demo", texts=("hi",))
    with pytest.raises(InvalidArgument, match="serves generation") as err:
        check_servable(embed, CHAT, set(), "hf")
    assert err.value.field == "model" and "not embeddings" in err.value.message
    chat = GenerationRequest.from_proto(generate_pb2.GenerateRequest(model="mini", prompt="hi"))
    with pytest.raises(InvalidArgument, match="serves embeddings") as err:
        check_servable(chat, EMBEDDER, set(), "hf")
    assert err.value.field == "model"
    with pytest.raises(InvalidArgument, match="serves reranking"):
        check_servable(EmbeddingRequest("judge", texts=("hi",)), RERANKER, set(), "hf")
    check_servable(RerankRequest("judge", "q", ("d",)), RERANKER, set(), "hf")
    check_servable(embed, EMBEDDER, set(), "hf")


def test_dimensions_only_where_the_model_declares_them():
    for ok in (None, 8, 16, 32):
        check_servable(EmbeddingRequest("mini", texts=("a",), dimensions=ok), EMBEDDER, set(), "hf")
    with pytest.raises(InvalidArgument, match="allowed: 8, 16, 32") as err:
        check_servable(EmbeddingRequest("mini", texts=("a",), dimensions=12), EMBEDDER, set(), "hf")
    assert err.value.field == "dimensions"
    plain = ModelInfo("plain", task=Task.EMBEDDING, dimensions=32)
    with pytest.raises(InvalidArgument, match="no shorter"):
        check_servable(EmbeddingRequest("plain", texts=("a",), dimensions=8), plain, set(), "hf")
