"""Embedding and rerank models on llama.cpp: their settings, the flags their llama-server runs with, what their GGUF
header decides, and how a too-long input is cut."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from forgeway.core.errors import FailedPrecondition, InvalidArgument
from forgeway.core.generation import Task
from forgeway.services.llamacpp.llama_server import command
from forgeway.services.llamacpp.retrieval import GgufFacts, RetrievalModel, cut, gguf_facts, max_input, prepare
from forgeway.services.llamacpp.settings import ModelConfig

BINARY, GGUF = Path("/opt/llama-server"), Path("/m/model.gguf")
BERT = GgufFacts(architecture="bert", context_length=512, pooling="mean", causal=False)


def flags(config: ModelConfig) -> list[str]:
    return command(BINARY, config, GGUF, 4321)


def value(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


@pytest.mark.parametrize(("name", "task"), [
    ("embedding", Task.EMBEDDING), ("embeddings", Task.EMBEDDING), ("feature-extraction", Task.EMBEDDING),
    ("rerank", Task.RERANK), ("reranker", Task.RERANK), ("chat", Task.TEXT_GENERATION)])
def test_task_takes_the_names_users_type(name, task):
    assert ModelConfig(name="m", task=name).task == task


@pytest.mark.parametrize(("fields", "words"), [
    ({"task": "summarization"}, "llama.cpp serves"),
    ({"task": "nonsense"}, "unknown value"),
    ({"pooling": "mean"}, "set task"),
    ({"task": "embedding", "pooling": "none"}, "vector per token"),
    ({"task": "embedding", "pooling": "rank"}, "task: rerank"),
    ({"task": "rerank", "pooling": "cls"}, "by rank"),
    ({"task": "embedding", "pooling": "max"}, "mean"),
])
def test_pooling_and_task_must_fit(fields, words):
    with pytest.raises(ValidationError, match=words):
        ModelConfig(name="m", **fields)


def test_load_model_options_and_the_request_task_agree():
    config = ModelConfig.from_options("m", "/x.gguf", {"pooling": "cls", "normalize": "false"}, Task.EMBEDDING)
    assert (config.task, config.pooling, config.normalize) == (Task.EMBEDDING, "cls", False)
    assert ModelConfig.from_options("m", "", {"task": "embeddings"}).task == Task.EMBEDDING
    with pytest.raises(InvalidArgument) as caught:
        ModelConfig.from_options("m", "", {"task": "rerank"}, Task.EMBEDDING)
    assert caught.value.field == "options.task"
    with pytest.raises(InvalidArgument) as caught:
        ModelConfig.from_options("m", "", {"pooling": "none"}, Task.EMBEDDING)
    assert caught.value.field == "options.pooling" and "vector per token" in caught.value.message


def test_an_embedding_child_runs_with_embedding_pooling_one_batch_per_context_and_a_unified_cache():
    args = flags(ModelConfig(name="e", task="embedding", pooling="mean", n_ctx=1024, n_batch=256, n_threads=2,
                             instances=2, chat_format="chatml"))
    assert "--embedding" in args and value(args, "--pooling") == "mean" and "--kv-unified" in args
    assert value(args, "--batch-size") == value(args, "--ubatch-size") == "1024"  # a whole input in one batch
    assert (value(args, "--ctx-size"), value(args, "--kv-unified-per-slot"), value(args, "--threads")) == (
        "2048", "1024", "2")
    assert not {"--jinja", "--cache-reuse", "--chat-template", "--reranking", "--reasoning"} & set(args)
    larger = flags(ModelConfig(name="e", task="embedding", n_ctx=128, n_batch=512))
    assert value(larger, "--ubatch-size") == "512" and "--pooling" not in larger  # unset: the GGUF's own


def test_a_rerank_child_runs_with_reranking_and_generation_children_are_unchanged():
    rerank = flags(ModelConfig(name="r", task="rerank", n_ctx=512))
    assert "--reranking" in rerank and "--embedding" not in rerank and "--pooling" not in rerank
    generate = flags(ModelConfig(name="g", n_ctx=512, n_batch=64, chat_format="chatml"))
    assert {"--jinja", "--cache-reuse", "--chat-template"} <= set(generate)
    assert not {"--embedding", "--reranking", "--kv-unified"} & set(generate)
    assert value(generate, "--ubatch-size") == "64"


def test_prepare_takes_pooling_and_context_from_the_gguf_where_unset():
    config = prepare(ModelConfig(name="e", task="embedding"), BERT, GGUF)
    assert (config.pooling, config.n_ctx) == ("mean", 512)  # the default 2048 is capped at the training context
    config = prepare(ModelConfig(name="e", task="embedding", pooling="cls", n_ctx=0), BERT, GGUF)
    assert (config.pooling, config.n_ctx) == ("cls", 512)
    config = prepare(ModelConfig(name="e", task="embedding", n_ctx=128), BERT, GGUF)
    assert config.n_ctx == 128


def test_prepare_refuses_what_llama_cpp_cannot_serve():
    llama = GgufFacts(architecture="llama", context_length=4096)
    with pytest.raises(InvalidArgument) as caught:
        prepare(ModelConfig(name="e", task="embedding"), llama, GGUF)
    assert caught.value.field == "pooling" and str(GGUF) in caught.value.message
    assert prepare(ModelConfig(name="e", task="embedding", pooling="last"), llama, GGUF).pooling == "last"
    with pytest.raises(FailedPrecondition, match="classification head"):
        prepare(ModelConfig(name="r", task="rerank"), llama, GGUF)
    reranker = GgufFacts(architecture="bert", context_length=512, pooling="rank", causal=False, head=True)
    assert prepare(ModelConfig(name="r", task="rerank"), reranker, GGUF).pooling == "rank"
    with pytest.raises(InvalidArgument) as caught:
        prepare(ModelConfig(name="e", task="embedding"), reranker, GGUF)
    assert caught.value.field == "task"


def test_gguf_facts_read_the_header(tmp_path):
    import gguf

    path = tmp_path / "head.gguf"
    writer = gguf.GGUFWriter(path, "bert")
    writer.add_context_length(256)
    writer.add_pooling_type(gguf.PoolingType.CLS)
    writer.add_causal_attention(False)
    writer.add_tensor("cls_out.weight", np.zeros((1, 4), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    assert gguf_facts(path) == GgufFacts(architecture="bert", context_length=256, pooling="cls", causal=False,
                                         head=True)


def test_last_token_pooling_of_a_causal_model_leaves_one_position():
    assert max_input(64, "last", causal=True) == 63 and max_input(64, "rank", causal=True) == 63
    assert max_input(64, "mean", causal=True) == 64 and max_input(64, "last", causal=False) == 64


def test_cuts_keep_the_special_tokens_around_the_text():
    ids = [101, 1, 2, 3, 4, 5, 6, 102]
    assert cut(ids, 5, "end", head=1, tail=1) == [101, 1, 2, 3, 102]
    assert cut(ids, 5, "start", head=1, tail=1) == [101, 4, 5, 6, 102]
    assert cut(ids, 3, "end") == [101, 1, 2] and cut(ids, 3, "start") == [5, 6, 102]


def test_fit_names_the_input_or_cuts_it():
    model = RetrievalModel(ModelConfig(name="e", task="embedding", pooling="mean"), BERT, GGUF, n_ctx=4, n_vocab=50,
                           prefix=(1,), suffix=(6,))
    assert model.fit([1, 2, 3], 0, "none", specials=True) == ([1, 2, 3], False)
    with pytest.raises(InvalidArgument) as caught:
        model.fit([1, 2, 3, 4, 5, 6], 2, "none", specials=True)
    assert caught.value.field == "input[2]" and "6 tokens" in caught.value.message
    assert model.fit([1, 2, 3, 4, 5, 6], 2, "end", specials=True) == ([1, 2, 3, 6], True)
    assert model.fit([1, 2, 3, 4, 5, 6], 2, "end", specials=False) == ([1, 2, 3, 4], True)
    with pytest.raises(InvalidArgument) as caught:
        model.check_ids(1, (3, 50))
    assert caught.value.field == "input[1]" and "vocabulary of 50" in caught.value.message
