"""What the Unsloth trainer refuses before any job, wherever it runs: other tasks than text generation, base models
whose architecture Unsloth has no path for, adapters as a base. Checked on the engine itself (no unsloth needed);
tests/integration/test_unsloth_training.py makes the same calls over gRPC to a service run from .venv-unsloth."""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import pytest
from google.protobuf import struct_pb2

from forgeway.core.errors import InvalidArgument, Unsupported
from forgeway.services.training.spec import TrainSpec
from forgeway.services.unsloth.architecture import UnsupportedArchitecture
from forgeway.services.unsloth.engine import UnslothEngine
from forgeway.services.unsloth.settings import UnslothSettings
from forgeway.v1 import common_pb2, train_pb2

pytestmark = pytest.mark.hf


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    from forgeway import testing

    root = tmp_path_factory.mktemp("unsloth-models")
    return {"llama": testing.build_tiny_llama(root / "llama"), "t5": testing.build_tiny_seq2seq(root / "t5")}


@pytest.fixture
def engine(models, tmp_path) -> UnslothEngine:
    settings = UnslothSettings(home=tmp_path, port=0, metrics_port=-1, allowed_roots=[models["llama"].parent.parent])
    return UnslothEngine(settings)


def spec(base: Path, **fields) -> TrainSpec:
    row = struct_pb2.Struct()
    row.update({"text": "the cat sat on the mat"})
    request = train_pb2.TrainRequest(base_model=str(base), method=train_pb2.TRAINING_METHOD_SFT,
                                     dataset=train_pb2.DatasetSource(inline=train_pb2.InlineRows(rows=[row, row])),
                                     lora=train_pb2.LoraParams(r=4, alpha=8), **fields)
    return TrainSpec.from_proto(request)


@pytest.mark.parametrize("task", [common_pb2.TASK_SUMMARIZATION, common_pb2.TASK_EXTRACTIVE_QUESTION_ANSWERING])
def test_other_tasks_than_text_generation_are_invalid(engine, models, task):
    with pytest.raises(InvalidArgument) as caught:
        engine.validate(spec(models["llama"], task=task))
    assert caught.value.field == "task" and caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "text generation only" in caught.value.message and "backend trl" in caught.value.message


def test_an_architecture_unsloth_does_not_train_is_invalid_and_named(engine, models):
    with pytest.raises(UnsupportedArchitecture) as caught:
        engine.validate(spec(models["t5"]))
    error = caught.value
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT and error.field == "base_model"
    assert "t5 (T5ForConditionalGeneration)" in error.message and "llama" in error.message
    assert error.reason == "UNSUPPORTED_ARCHITECTURE"
    assert error.metadata["model_type"] == "t5" and error.metadata["fallback"] == "trl"


def test_the_architecture_list_is_a_setting(models, tmp_path):
    engine = UnslothEngine(UnslothSettings(home=tmp_path, port=0, metrics_port=-1, architectures=["qwen3"],
                                           allowed_roots=[models["llama"].parent.parent]))
    with pytest.raises(UnsupportedArchitecture, match="llama .*LlamaForCausalLM.* it trains qwen3"):
        engine.validate(spec(models["llama"]))


def test_a_lora_adapter_as_the_base_is_unsupported(engine, models, tmp_path):
    adapter = tmp_path / "models" / "my-adapter"
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(models["llama"])}))
    (adapter / "forgeway.json").write_text(json.dumps({"name": "my-adapter", "format": "adapter"}))
    with pytest.raises(Unsupported, match="my-adapter is a LoRA adapter"):
        engine.validate(spec(Path("my-adapter")))


def test_capabilities_before_the_probe_say_starting_and_list_what_it_would_train(engine):
    assert engine.availability() == (False, "starting: probing unsloth")
    features = engine.features()
    assert features.methods == ["sft", "dpo", "grpo"] and [t.value for t in features.tasks] == ["text-generation"]
