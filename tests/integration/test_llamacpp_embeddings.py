"""Embed and Rerank on the llama.cpp service: the tiny Llama GGUF in embedding mode (mean and last pooling), a tiny
BERT encoder and a BERT cross-encoder converted by llama.cpp's own converter, each in its own llama-server child.

Vectors are compared with llama-cpp-python computing the same GGUF in this process; rerank scores with the head
llama.cpp runs, computed by transformers."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from forgeway.services.llamacpp.engine import LlamaCppEngine
from forgeway.services.llamacpp.settings import LlamaCppSettings
from forgeway.testing import build_tiny_bert_gguf, build_tiny_gguf, build_tiny_llama, serve_engine
from forgeway.testing import rpc_failure as failure
from forgeway.testing import violated_fields as fields
from forgeway.v1 import backend_pb2_grpc, capabilities_pb2, common_pb2, embed_pb2, generate_pb2, models_pb2, \
    models_pb2_grpc

pytestmark = pytest.mark.llamacpp

TEXTS = ["The quick brown fox jumps over the lazy dog.", "A river runs through the old town.",
         "Bread is baked early in the morning."]
LONG = " ".join(["the farmer walked to the market with a basket of apples"] * 20)
TOL = 1e-4
END, START = embed_pb2.TRUNCATION_END, embed_pb2.TRUNCATION_START


@pytest.fixture(scope="module")
def ggufs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("llamacpp-embed")
    tiny = build_tiny_gguf(build_tiny_llama(root / "tiny", seed=0), root / "tiny" / "model.gguf")
    return {"tiny": tiny, "bert": build_tiny_bert_gguf(root / "bert", "embedding", "mean"),
            "rerank": build_tiny_bert_gguf(root / "rerank", "rerank")}


@pytest.fixture(scope="module")
async def channel(ggufs) -> AsyncIterator[grpc.aio.Channel]:
    """A channel to the service serving five models, each from its own llama-server child."""
    tiny, common = str(ggufs["tiny"]), {"n_threads": 1, "instances": 4}
    models = [
        {"name": "tiny", "source": tiny, "n_ctx": 256, **common},
        {"name": "tiny-mean", "source": tiny, "task": "embedding", "pooling": "mean", "n_ctx": 64, **common},
        {"name": "tiny-last", "source": tiny, "task": "embedding", "pooling": "last", "n_ctx": 64, "normalize": False,
         **common},
        {"name": "bert", "source": str(ggufs["bert"]), "task": "embeddings", **common},  # pooling: the GGUF's own
        {"name": "bert-rerank", "source": str(ggufs["rerank"]), "task": "rerank", **common},
    ]
    root = ggufs["tiny"].parent.parent
    settings = LlamaCppSettings(host="127.0.0.1", port=0, metrics_port=-1, home=root, model_roots=[root],
                                models=models)
    running = await serve_engine(LlamaCppEngine(settings))
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as chan:
            yield chan
    finally:
        await running.drain(0)


@pytest.fixture
def backend(channel) -> backend_pb2_grpc.BackendServiceStub:
    return backend_pb2_grpc.BackendServiceStub(channel)


@pytest.fixture(scope="module")
def bert_tokenizer(ggufs):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(ggufs["bert"].parent)


def embed(model: str, texts=(), ids=(), **fields) -> embed_pb2.EmbedRequest:
    return embed_pb2.EmbedRequest(model=model, texts=texts, token_ids=[embed_pb2.TokenIds(ids=i) for i in ids],
                                  **fields)


def vectors(reply: embed_pb2.EmbedResponse) -> np.ndarray:
    return np.array([list(e.values) for e in reply.embeddings])


def in_process(path: Path, pooling: str, texts: list[str], normalize: bool, n_ctx: int) -> np.ndarray:
    """What llama-cpp-python computes for the same GGUF in this process."""
    import llama_cpp

    kind = {"mean": llama_cpp.LLAMA_POOLING_TYPE_MEAN, "last": llama_cpp.LLAMA_POOLING_TYPE_LAST}[pooling]
    llm = llama_cpp.Llama(model_path=str(path), embedding=True, pooling_type=kind, n_ctx=n_ctx, n_batch=n_ctx,
                          n_ubatch=n_ctx, n_threads=1, verbose=False)
    try:
        return np.array(llm.embed(texts, normalize=normalize))
    finally:
        llm.close()


@pytest.mark.parametrize(("model", "gguf", "pooling", "n_ctx"), [
    ("tiny-mean", "tiny", "mean", 64), ("tiny-last", "tiny", "last", 64), ("bert", "bert", "mean", 128)])
async def test_vectors_equal_llama_cpp_python_in_process(backend, ggufs, model, gguf, pooling, n_ctx):
    for normalize in (True, False):
        reply = await backend.Embed(embed(model, TEXTS, normalize=normalize), timeout=60)
        expected = await asyncio.to_thread(in_process, ggufs[gguf], pooling, TEXTS, normalize, n_ctx)
        assert np.allclose(vectors(reply), expected, atol=TOL), (model, normalize)
        assert reply.model == model and reply.dimensions == 64 and [e.index for e in reply.embeddings] == [0, 1, 2]
        assert reply.usage.prompt_tokens == sum(e.tokens for e in reply.embeddings) > 0


async def test_normalize_unset_takes_the_model_setting_true_is_unit_length_false_is_raw(backend):
    unset, unit, raw = [vectors(await backend.Embed(embed("bert", TEXTS, **n), timeout=60))
                        for n in ({}, {"normalize": True}, {"normalize": False})]
    assert np.allclose(np.linalg.norm(unit, axis=1), 1.0, atol=1e-5) and np.allclose(unset, unit, atol=1e-6)
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1.0, atol=1e-2)
    assert np.allclose(raw / np.linalg.norm(raw, axis=1, keepdims=True), unit, atol=1e-5)
    # tiny-last is configured with normalize: false, so unset gives its raw vectors
    last_unset = vectors(await backend.Embed(embed("tiny-last", TEXTS), timeout=60))
    last_raw = vectors(await backend.Embed(embed("tiny-last", TEXTS, normalize=False), timeout=60))
    assert np.allclose(last_unset, last_raw, atol=1e-6)


async def test_token_ids_read_as_the_texts_they_encode(backend, bert_tokenizer):
    ids = [bert_tokenizer(t).input_ids for t in TEXTS]  # transformers' encoding: [CLS] ... [SEP]
    by_text = await backend.Embed(embed("bert", TEXTS), timeout=60)
    by_ids = await backend.Embed(embed("bert", ids=ids), timeout=60)
    assert np.allclose(vectors(by_ids), vectors(by_text), atol=1e-6)
    assert [e.tokens for e in by_ids.embeddings] == [e.tokens for e in by_text.embeddings] == [len(i) for i in ids]


async def test_a_token_id_outside_the_vocabulary_names_its_input(backend):
    error = await failure(backend.Embed(embed("bert", ids=[[2, 5, 3], [2, 99999, 3]]), timeout=30))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT and fields(error) == {"input[1]"}


async def test_too_long_inputs_are_refused_by_index_or_cut_at_either_end_keeping_cls_and_sep(backend, bert_tokenizer):
    error = await failure(backend.Embed(embed("bert", [TEXTS[0], LONG]), timeout=30))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT and fields(error) == {"input[1]"}
    assert "128" in error.message
    for truncation, side in ((END, "right"), (START, "left")):
        reply = await backend.Embed(embed("bert", [TEXTS[0], LONG], truncation=truncation), timeout=60)
        assert [(e.tokens, e.truncated) for e in reply.embeddings] == [(len(bert_tokenizer(TEXTS[0]).input_ids), False),
                                                                       (128, True)]
        bert_tokenizer.truncation_side = side
        cut = bert_tokenizer(LONG, truncation=True, max_length=128).input_ids  # transformers keeps [CLS] and [SEP]
        same = await backend.Embed(embed("bert", ids=[cut]), timeout=60)
        assert np.allclose(vectors(reply)[1], vectors(same)[0], atol=1e-6), truncation
    bert_tokenizer.truncation_side = "right"


async def test_last_pooling_reads_one_token_less_than_the_context(backend):
    ids = [list(range(10, 110))]
    error = await failure(backend.Embed(embed("tiny-last", ids=ids), timeout=30))
    assert fields(error) == {"input[0]"} and "63" in error.message
    reply = await backend.Embed(embed("tiny-last", ids=ids, truncation=START), timeout=60)
    assert reply.embeddings[0].tokens == 63 and reply.embeddings[0].truncated
    same = await backend.Embed(embed("tiny-last", ids=[ids[0][-63:]]), timeout=60)
    assert np.allclose(vectors(reply), vectors(same), atol=1e-6)
    mean = await backend.Embed(embed("tiny-mean", ids=[ids[0][:64]]), timeout=60)  # mean pooling: the whole context
    assert mean.embeddings[0].tokens == 64


async def test_models_answer_only_their_own_task(backend):
    error = await failure(backend.Embed(embed("tiny", TEXTS), timeout=30))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT and fields(error) == {"model"}
    error = await failure(backend.Generate(generate_pb2.GenerateRequest(model="bert", prompt="hi"), timeout=30))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT and fields(error) == {"model"}
    error = await failure(backend.Rerank(embed_pb2.RerankRequest(model="bert", query="q", documents=["d"]), timeout=30))
    assert fields(error) == {"model"}
    error = await failure(backend.Embed(embed("bert", TEXTS, dimensions=32), timeout=30))
    assert fields(error) == {"dimensions"}  # GGUFs declare no Matryoshka lengths


async def test_capabilities_list_embedding_and_rerank_models(backend):
    caps = await backend.Capabilities(capabilities_pb2.CapabilitiesRequest(), timeout=10)
    assert {"forgeway.v1.BackendService/Embed", "forgeway.v1.BackendService/Rerank"} <= set(caps.rpcs)
    models = {m.name: m for m in caps.models}
    bert, last, rerank = models["bert"], models["tiny-last"], models["bert-rerank"]
    embedding = common_pb2.TASK_EMBEDDING
    assert (bert.task, bert.dimensions, bert.context_length, bert.pooling) == (embedding, 64, 128, "mean")
    assert (last.task, last.dimensions, last.context_length, last.pooling) == (embedding, 64, 64, "last")
    assert not bert.matryoshka_dimensions and bert.quantization == common_pb2.QUANTIZATION_GGUF
    assert (rerank.task, rerank.context_length, rerank.pooling) == (common_pb2.TASK_RERANK, 128, "rank")
    assert models["tiny"].task == common_pb2.TASK_TEXT_GENERATION


async def test_sixteen_concurrent_calls_all_answer_correctly(backend):
    texts = [f"{TEXTS[i % 3]} Number {i}." for i in range(16)]
    alone = [vectors(await backend.Embed(embed("bert", [t]), timeout=60))[0] for t in texts]
    replies = await asyncio.gather(*(backend.Embed(embed("bert", [t]), timeout=120) for t in texts))
    for reply, expected in zip(replies, alone, strict=True):
        assert np.allclose(vectors(reply)[0], expected, atol=TOL)
    together = await backend.Embed(embed("bert", texts), timeout=120)  # one call, one HTTP request to the child
    assert np.allclose(vectors(together), np.array(alone), atol=TOL)


def rank_head(model_dir: Path, query: str, documents: list[str]) -> list[float]:
    """The score llama.cpp computes for a BertForSequenceClassification GGUF: llama.cpp's converter drops BERT's
    pooler (its dense + tanh before the classifier) and llama.cpp reads every token with segment 0, so the head is
    classifier(hidden state of [CLS]) with token_type_ids all 0; the service returns its sigmoid."""
    import torch
    from transformers import AutoTokenizer, BertForSequenceClassification

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = BertForSequenceClassification.from_pretrained(model_dir).eval()
    scores = []
    with torch.no_grad():
        for document in documents:
            ids = tokenizer(query, document, return_tensors="pt").input_ids
            hidden = model.bert(input_ids=ids, token_type_ids=torch.zeros_like(ids)).last_hidden_state[0, 0]
            scores.append(1 / (1 + math.exp(-model.classifier(hidden).item())))
    return scores


async def test_rerank_scores_are_the_gguf_head_as_probabilities(backend, ggufs):
    query, documents = "a fox and a dog", TEXTS
    reply = await backend.Rerank(embed_pb2.RerankRequest(model="bert-rerank", query=query, documents=documents,
                                                         return_documents=True), timeout=60)
    expected = await asyncio.to_thread(rank_head, ggufs["rerank"].parent, query, list(documents))
    assert {r.index: r.relevance_score for r in reply.results} == pytest.approx(dict(enumerate(expected)), abs=1e-5)
    assert [r.index for r in reply.results] == sorted(range(3), key=lambda i: -expected[i])
    assert all(r.document == documents[r.index] for r in reply.results) and reply.model == "bert-rerank"
    top = await backend.Rerank(embed_pb2.RerankRequest(model="bert-rerank", query=query, documents=documents,
                                                       top_n=1), timeout=60)
    assert [r.index for r in top.results] == [reply.results[0].index] and not top.results[0].document
    assert top.usage.prompt_tokens == reply.usage.prompt_tokens > 0


async def test_rerank_pairs_too_long_are_refused_or_lose_document_tokens(backend, ggufs):
    request = embed_pb2.RerankRequest(model="bert-rerank", query="a fox", documents=[TEXTS[0], LONG])
    error = await failure(backend.Rerank(request, timeout=30))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT and fields(error) == {"documents[1]"}
    request.truncation = END
    reply = await backend.Rerank(request, timeout=60)
    scores = {r.index: r.relevance_score for r in reply.results}
    # the kept start of the long document scores as that text does on its own
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(ggufs["rerank"].parent)
    room = 128 - 3 - len(tokenizer("a fox", add_special_tokens=False).input_ids)
    kept = tokenizer.decode(tokenizer(LONG, add_special_tokens=False).input_ids[:room])
    expected = await asyncio.to_thread(rank_head, ggufs["rerank"].parent, "a fox", [kept])
    assert scores[1] == pytest.approx(expected[0], abs=1e-5)
    assert reply.usage.prompt_tokens == len(tokenizer("a fox", TEXTS[0]).input_ids) + 128


async def test_load_model_serves_a_gguf_for_embeddings_at_run_time(channel, ggufs):
    models = models_pb2_grpc.ModelServiceStub(channel)
    backend = backend_pb2_grpc.BackendServiceStub(channel)
    request = models_pb2.LoadModelRequest(name="late", source=str(ggufs["bert"]), task=common_pb2.TASK_EMBEDDING,
                                          options={"n_threads": "1", "pooling": "cls", "instances": "1"})
    loaded = await models.LoadModel(request, timeout=120)
    try:
        assert (loaded.model.task, loaded.model.pooling, loaded.model.dimensions) == (common_pb2.TASK_EMBEDDING, "cls",
                                                                                      64)
        cls_vectors = vectors(await backend.Embed(embed("late", TEXTS), timeout=60))
        mean_vectors = vectors(await backend.Embed(embed("bert", TEXTS), timeout=60))
        assert cls_vectors.shape == mean_vectors.shape and not np.allclose(cls_vectors, mean_vectors, atol=1e-3)
    finally:
        await models.UnloadModel(models_pb2.UnloadModelRequest(name="late"), timeout=60)
    bad = models_pb2.LoadModelRequest(name="bad", source=str(ggufs["tiny"]), task=common_pb2.TASK_EMBEDDING)
    error = await failure(models.LoadModel(bad, timeout=60))  # a plain Llama GGUF declares no pooling
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT and fields(error) == {"pooling"}
    bad = models_pb2.LoadModelRequest(name="bad", source=str(ggufs["tiny"]), task=common_pb2.TASK_RERANK)
    error = await failure(models.LoadModel(bad, timeout=60))  # no classification head
    assert error.code == grpc.StatusCode.FAILED_PRECONDITION and "classification head" in error.message
