"""What the hf service reads from an embedding or rerank folder's files: task, Matryoshka lengths, pooling, sizes."""

from __future__ import annotations

import json

import pytest

from forgeway.core.errors import InvalidArgument
from forgeway.core.generation import Task
from forgeway.services.hf.encoder_config import describe_folder, encoder_task, matryoshka, pooling_name


def write(folder, name: str, value) -> None:
    (folder / name).parent.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(json.dumps(value))


def test_matryoshka_lengths_come_listed_or_as_powers_of_two():
    assert matryoshka({"matryoshka_dimensions": [768, 64, 256, 1024, 0]}, 768) == [64, 256]
    assert matryoshka({"is_matryoshka": True}, 768) == [32, 64, 128, 256, 512]
    assert matryoshka({}, 768) == [] and matryoshka({"is_matryoshka": "yes"}, 768) == []


def test_pooling_names_from_either_sentence_transformers_format():
    assert pooling_name({"pooling_mode": "lasttoken"}) == "last"
    assert pooling_name({"pooling_mode_mean_tokens": True, "pooling_mode_cls_token": False}) == "mean"
    assert pooling_name({"pooling_mode_cls_token": True}) == "cls"
    assert pooling_name({"pooling_mode": "weightedmean"}) == "weightedmean"


def test_the_task_follows_sentence_transformers_markers(tmp_path):
    plain = tmp_path / "plain"
    write(plain, "config.json", {"architectures": ["BertForSequenceClassification"]})
    assert encoder_task(plain) is None  # a classifier is no reranker unless its files or its spec say so
    embedder = tmp_path / "embedder"
    write(embedder, "modules.json", [])
    assert encoder_task(embedder) == Task.EMBEDDING
    for name, marks in [("v6", ("config_sentence_transformers.json", {"model_type": "CrossEncoder"})),
                        ("v4", ("config.json", {"sentence_transformers": {"activation_fn": "torch.nn.Sigmoid"}})),
                        ("v3", ("config.json", {"sbert_ce_default_activation_function": None}))]:
        write(tmp_path / name, *marks)
        assert encoder_task(tmp_path / name) == Task.RERANK, name
    sparse = tmp_path / "sparse"
    write(sparse, "config_sentence_transformers.json", {"model_type": "SparseEncoder"})
    with pytest.raises(InvalidArgument, match="SparseEncoder"):
        encoder_task(sparse)


def test_a_folder_is_described_without_loading_it(tmp_path):
    write(tmp_path, "config.json", {"hidden_size": 384, "max_position_embeddings": 512,
                                    "matryoshka_dimensions": [128, 256]})
    write(tmp_path, "modules.json", [{"path": "", "type": "x.Transformer"}, {"path": "1_Pooling", "type": "x.Pooling"},
                                     {"path": "2_Dense", "type": "x.Dense"}])
    write(tmp_path, "1_Pooling/config.json", {"word_embedding_dimension": 384, "pooling_mode_cls_token": True})
    write(tmp_path, "2_Dense/config.json", {"out_features": 256})
    write(tmp_path, "tokenizer_config.json", {"model_max_length": 1_000_000_000_000})
    assert describe_folder(tmp_path, Task.EMBEDDING) == {"dimensions": 256, "matryoshka": [128], "pooling": "cls",
                                                         "context_length": 512}
    (tmp_path / "modules.json").unlink()  # a plain transformers folder served with task embedding
    assert describe_folder(tmp_path, Task.EMBEDDING)["pooling"] == "mean"
    assert describe_folder(tmp_path, Task.EMBEDDING)["dimensions"] == 384
    assert describe_folder(tmp_path, Task.RERANK)["dimensions"] == 0
