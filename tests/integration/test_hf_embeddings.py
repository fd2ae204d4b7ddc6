"""Embeddings and reranking in the hf service over real gRPC: vectors and scores equal sentence-transformers' own
encode and predict in this process, Matryoshka lengths, truncation, errors naming their field, and concurrent calls
sharing forward passes.

The models are tiny and untrained (forgeway.demo.embedding), so the ordering test relies on word overlap: a query
identical to a document ranks it first, a near-duplicate next, an unrelated sentence last.
"""

from __future__ import annotations

import asyncio
import shutil
import threading

import grpc
import pytest

pytestmark = pytest.mark.hf

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from prometheus_client import REGISTRY  # noqa: E402

from forgeway.testing import rpc_failure, serve_engine, wait_until  # noqa: E402
from forgeway.v1 import backend_pb2_grpc, capabilities_pb2, common_pb2, embed_pb2, generate_pb2  # noqa: E402

TEXTS = ["The river runs past the old mill.", "A gull sat on the harbour wall at dawn.",
         "Winter markets sell candles, bread and warm wine.", "Boats"]
LONG = " ".join(["the lantern by the window of the tower"] * 40)  # ~300 tokens, over the 128-token limit
TOLERANCE = 1e-5
MAX_QUEUE = 6


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    from forgeway.testing import build_embedding_model, build_reranker, build_tiny_llama

    root = tmp_path_factory.mktemp("hf-embeddings")
    build_embedding_model(root / "embed")
    build_reranker(root / "rerank")
    build_tiny_llama(root / "llama")
    shutil.copytree(root / "embed", root / "home" / "models" / "stored-embed")  # described from its files
    return root


@pytest.fixture(scope="module")
def reference(root):
    """The same models through sentence-transformers in this process."""
    from sentence_transformers import CrossEncoder, SentenceTransformer

    embed = SentenceTransformer(str(root / "embed"), device="cpu", local_files_only=True)
    return embed, CrossEncoder(str(root / "rerank"), device="cpu", local_files_only=True)


@pytest.fixture(scope="module")
async def running(root):
    from forgeway.services.hf.engine import HFEngine
    from forgeway.services.hf.settings import HFSettings

    models = [{"name": "embed", "path": str(root / "embed")}, {"name": "rerank", "path": str(root / "rerank")},
              {"name": "llama", "path": str(root / "llama")},
              {"name": "llama-embed", "path": str(root / "llama"), "task": "embedding", "pooling": "last"}]
    settings = HFSettings(host="127.0.0.1", port=0, metrics_port=-1, home=root / "home", torch_threads=1,
                          models=models, max_queue=MAX_QUEUE, load_on_demand=True)
    running = await serve_engine(HFEngine(settings))
    yield running
    await running.drain(0)


@pytest.fixture
async def stub(running):
    async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
        yield backend_pb2_grpc.BackendServiceStub(channel)


def embed_request(texts=TEXTS, **fields) -> embed_pb2.EmbedRequest:
    return embed_pb2.EmbedRequest(model=fields.pop("model", "embed"), texts=texts, **fields)


def values(response: embed_pb2.EmbedResponse) -> torch.Tensor:
    return torch.tensor([list(e.values) for e in response.embeddings])


def close(got: torch.Tensor, expected) -> bool:
    return torch.allclose(got, torch.as_tensor(expected, dtype=torch.float32), atol=TOLERANCE)


def runner_of(running, name: str):
    return getattr(running.service, "engine", running.service).served[name].runner


def passes(runner) -> float:
    return REGISTRY.get_sample_value("forgeway_embedding_batch_size_count", {"service": "hf", "model": runner.name})


async def test_capabilities_list_the_models_with_task_dimensions_and_matryoshka(stub):
    caps = await stub.Capabilities(capabilities_pb2.CapabilitiesRequest(), timeout=10)
    assert {"forgeway.v1.BackendService/Embed", "forgeway.v1.BackendService/Rerank"} <= set(caps.rpcs)
    models = {m.name: m for m in caps.models}
    embed, rerank, decoder, stored = models["embed"], models["rerank"], models["llama-embed"], models["stored-embed"]
    assert embed.task == common_pb2.TASK_EMBEDDING and embed.loaded
    assert (embed.dimensions, list(embed.matryoshka_dimensions), embed.pooling, embed.context_length) == (
        64, [16, 32], "mean", 128)
    assert rerank.task == common_pb2.TASK_RERANK and rerank.context_length == 128
    assert (decoder.task, decoder.dimensions, decoder.pooling, list(decoder.matryoshka_dimensions)) == (
        common_pb2.TASK_EMBEDDING, 64, "last", [])
    assert models["llama"].task == common_pb2.TASK_TEXT_GENERATION
    assert not stored.loaded and stored.task == common_pb2.TASK_EMBEDDING  # from its files, not loaded
    assert (stored.dimensions, list(stored.matryoshka_dimensions), stored.context_length) == (64, [16, 32], 128)


async def test_vectors_equal_sentence_transformers_encode(stub, reference):
    model, _ = reference
    unit = model.encode(TEXTS)
    response = await stub.Embed(embed_request(), timeout=30)
    assert close(values(response), unit) and response.dimensions == 64 and response.model == "embed"
    ids = model.tokenizer(TEXTS)["input_ids"]
    assert [e.tokens for e in response.embeddings] == [len(i) for i in ids]  # the closing special token counts
    assert response.usage.prompt_tokens == sum(len(i) for i in ids) == response.usage.total_tokens
    from sentence_transformers import SentenceTransformer

    unnormalized = SentenceTransformer(modules=[model[0], model[1]], device="cpu").encode(TEXTS)
    assert close(values(await stub.Embed(embed_request(normalize=False), timeout=30)), unnormalized)
    assert close(values(await stub.Embed(embed_request(normalize=True), timeout=30)), unit)


async def test_token_id_inputs_go_to_the_model_as_given(stub, reference):
    model, _ = reference
    ids = model.tokenizer(TEXTS)["input_ids"]
    request = embed_pb2.EmbedRequest(model="embed", token_ids=[embed_pb2.TokenIds(ids=i) for i in ids])
    response = await stub.Embed(request, timeout=30)
    assert close(values(response), model.encode(TEXTS))
    assert [e.tokens for e in response.embeddings] == [len(i) for i in ids]
    outside = embed_pb2.EmbedRequest(model="embed", token_ids=[embed_pb2.TokenIds(ids=[5, 10**6])])
    assert (await rpc_failure(stub.Embed(outside, timeout=30))).field_violations[0][0] == "input[0]"


async def test_matryoshka_lengths_only_where_the_model_declares_them(stub, reference):
    model, _ = reference
    full = torch.tensor(model.encode(TEXTS))  # unit length: cutting then renormalising equals cutting the raw vector
    short = await stub.Embed(embed_request(dimensions=16), timeout=30)
    assert short.dimensions == 16 and close(values(short), F.normalize(full[:, :16], dim=1))
    raw = await stub.Embed(embed_request(dimensions=32, normalize=False), timeout=30)
    from sentence_transformers import SentenceTransformer

    unnormalized = torch.tensor(SentenceTransformer(modules=[model[0], model[1]], device="cpu").encode(TEXTS))
    assert close(values(raw), unnormalized[:, :32])
    assert (await stub.Embed(embed_request(dimensions=64), timeout=30)).dimensions == 64  # its own length
    for request in (embed_request(dimensions=20), embed_request(model="llama-embed", dimensions=16)):
        error = await rpc_failure(stub.Embed(request, timeout=30))
        assert error.code == grpc.StatusCode.INVALID_ARGUMENT and error.field_violations[0][0] == "dimensions"


async def test_word_overlap_orders_documents(stub):
    query, same, near, unrelated = ("The river runs past the old mill.", "The river runs past the old mill.",
                                    "The river runs past the mill.", "Winter markets sell candles and bread.")
    vectors = values(await stub.Embed(embed_request([query, same, near, unrelated]), timeout=30))
    cosines = (vectors[1:] @ vectors[0]).tolist()
    assert cosines[0] > cosines[1] > cosines[2]


async def test_rerank_scores_equal_cross_encoder_predict_and_come_sorted(stub, reference):
    _, cross = reference
    query = "Where is the old mill?"
    expected = cross.predict([(query, d) for d in TEXTS])
    request = embed_pb2.RerankRequest(model="rerank", query=query, documents=TEXTS, return_documents=True)
    response = await stub.Rerank(request, timeout=30)
    assert sorted(r.index for r in response.results) == list(range(len(TEXTS)))
    scores = [r.relevance_score for r in response.results]
    assert scores == sorted(scores, reverse=True)
    for result in response.results:
        assert abs(result.relevance_score - float(expected[result.index])) < TOLERANCE
        assert result.document == TEXTS[result.index]
    pair_tokens = sum(len(cross.tokenizer(query, d)["input_ids"]) for d in TEXTS)
    assert response.usage.prompt_tokens == pair_tokens
    top = await stub.Rerank(embed_pb2.RerankRequest(model="rerank", query=query, documents=TEXTS, top_n=2),
                            timeout=30)
    assert [r.index for r in top.results] == [r.index for r in response.results[:2]]


async def test_too_long_inputs_are_refused_naming_them_unless_truncation_is_allowed(stub, reference):
    model, cross = reference
    error = await rpc_failure(stub.Embed(embed_request(["short", LONG]), timeout=30))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT and error.field_violations[0][0] == "input[1]"
    end = await stub.Embed(embed_request(["short", LONG], truncation=embed_pb2.TRUNCATION_END), timeout=30)
    short = len(model.tokenizer("short")["input_ids"])
    assert [(e.tokens, e.truncated) for e in end.embeddings] == [(short, False), (128, True)]
    assert close(values(end), model.encode(["short", LONG]))  # sentence-transformers keeps the start too
    start = await stub.Embed(embed_request([LONG], truncation=embed_pb2.TRUNCATION_START), timeout=30)
    model.tokenizer.truncation_side = "left"
    try:
        assert close(values(start), model.encode([LONG])) and start.embeddings[0].tokens == 128
    finally:
        model.tokenizer.truncation_side = "right"
    ids = model.tokenizer(LONG)["input_ids"]
    as_ids = embed_pb2.EmbedRequest(model="embed", token_ids=[embed_pb2.TokenIds(ids=ids)])
    assert (await rpc_failure(stub.Embed(as_ids, timeout=30))).field_violations[0][0] == "input[0]"
    as_ids.truncation = embed_pb2.TRUNCATION_START
    cut = await stub.Embed(as_ids, timeout=30)
    assert cut.embeddings[0].tokens == 128 and cut.embeddings[0].truncated
    pairs = embed_pb2.RerankRequest(model="rerank", query="the tower", documents=["a lantern", LONG])
    assert (await rpc_failure(stub.Rerank(pairs, timeout=30))).field_violations[0][0] == "documents[1]"
    pairs.truncation = embed_pb2.TRUNCATION_END
    scores = {r.index: r.relevance_score for r in (await stub.Rerank(pairs, timeout=30)).results}
    expected = cross.predict([("the tower", "a lantern"), ("the tower", LONG)])
    assert all(abs(scores[i] - float(expected[i])) < TOLERANCE for i in (0, 1))


async def test_a_model_of_another_task_is_refused_naming_model(stub):
    asks = [stub.Embed(embed_request(model="llama"), timeout=30),
            stub.Embed(embed_request(model="rerank"), timeout=30),
            stub.Rerank(embed_pb2.RerankRequest(model="embed", query="q", documents=["d"]), timeout=30),
            stub.Generate(generate_pb2.GenerateRequest(model="embed", prompt="Hello"), timeout=30)]
    for ask in asks:
        error = await rpc_failure(ask)
        assert error.code == grpc.StatusCode.INVALID_ARGUMENT and error.field_violations[0][0] == "model"


async def test_a_decoder_model_embeds_with_last_token_pooling(stub, root):
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer

    from forgeway.services.hf.encoders import TEXT_ONLY, TOKEN_STATES

    # its raw text, as vLLM embeds a prompt
    transformer = Transformer(str(root / "llama"), modality_config=TEXT_ONLY, module_output_name=TOKEN_STATES)
    model = SentenceTransformer(modules=[transformer, Pooling(64, "lasttoken"), Normalize()], device="cpu")
    response = await stub.Embed(embed_request(model="llama-embed"), timeout=30)
    assert close(values(response), model.encode(TEXTS))


async def test_a_store_model_loads_on_first_use(stub, reference):
    response = await stub.Embed(embed_request(model="stored-embed"), timeout=60)
    assert response.model == "stored-embed" and close(values(response), reference[0].encode(TEXTS))


async def test_waiting_calls_share_one_forward_pass_and_the_line_is_bounded(running, stub, reference):
    runner, release = runner_of(running, "embed"), threading.Event()
    before = passes(runner)
    held = runner.call(release.wait)  # the worker is busy: what arrives now waits together
    inputs = [[text] for text in TEXTS] + [TEXTS[:2], TEXTS[2:]]
    calls = [asyncio.ensure_future(stub.Embed(embed_request(texts), timeout=60)) for texts in inputs]
    await wait_until(lambda: runner.queued == len(calls) == MAX_QUEUE, 30, "the calls to queue")
    extra = await rpc_failure(stub.Embed(embed_request(["one more"]), timeout=30))
    caps = await stub.Capabilities(capabilities_pb2.CapabilitiesRequest(), timeout=10)
    release.set()
    held.result(timeout=30)
    results = await asyncio.gather(*calls)
    assert extra.code == grpc.StatusCode.RESOURCE_EXHAUSTED and caps.load.queue_depth >= len(calls)
    for texts, response in zip(inputs, results):
        assert close(values(response), reference[0].encode(texts))
    assert passes(runner) - before == 1, "the waiting calls' 8 inputs went through one forward pass"


async def test_a_cancelled_call_leaves_its_batch_mates_served(running, stub, reference):
    runner, release = runner_of(running, "embed"), threading.Event()
    held = runner.call(release.wait)
    calls = [stub.Embed(embed_request([text]), timeout=60) for text in TEXTS[:3]]
    tasks = [asyncio.ensure_future(call) for call in calls]
    await wait_until(lambda: runner.queued == 3, 30, "the calls to queue")
    calls[1].cancel()
    await wait_until(lambda: runner.queued == 2, 30, "the cancelled call to leave the line")
    release.set()
    held.result(timeout=30)
    first, third = await tasks[0], await tasks[2]
    expected = reference[0].encode(TEXTS[:3])
    assert close(values(first), expected[:1]) and close(values(third), expected[2:3])
    with pytest.raises(asyncio.CancelledError):
        await tasks[1]
