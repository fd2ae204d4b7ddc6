"""Training settings by ModelForge's rules where they are right: every violation named at once, advice per hardware
profile as warnings; the provider vocabulary of the model store; the ModelForge facade's settings mapping."""

from __future__ import annotations

import json

import pytest
from google.protobuf import struct_pb2

from forgeway.compat.modelforge.providers import HuggingFaceProvider, SettingsError, UnslothProvider
from forgeway.core.errors import InvalidArgument
from forgeway.core.modelstore import ModelStore, modelforge_provider
from forgeway.services.training.spec import LR_SCHEDULERS, TrainSpec
from forgeway.v1 import common_pb2, train_pb2


def request(**fields) -> train_pb2.TrainRequest:
    row = struct_pb2.Struct()
    row.update({"input": "hello", "output": "world"})
    req = train_pb2.TrainRequest(base_model="tiny", method=train_pb2.TRAINING_METHOD_SFT, **fields)
    req.dataset.inline.rows.append(row)
    return req


def test_every_bad_setting_is_named_in_one_answer():
    bad = request(
        hyperparameters=train_pb2.Hyperparameters(epochs=0, learning_rate=2.0, lr_scheduler="bogus",
                                                  batch_size=0, warmup_ratio=1.5),
        lora=train_pb2.LoraParams(r=512, alpha=16, dropout=1.5),
        quantization=train_pb2.QuantizationParams(quantization=common_pb2.QUANTIZATION_8BIT, double_quant=True),
    )
    with pytest.raises(InvalidArgument) as caught:
        TrainSpec.from_proto(bad)
    fields = dict(caught.value.violations)
    assert set(fields) == {
        "hyperparameters.epochs", "hyperparameters.learning_rate", "hyperparameters.lr_scheduler",
        "hyperparameters.batch_size", "hyperparameters.warmup_ratio", "lora.r", "lora.dropout",
        "quantization.double_quant",
    }
    assert "bogus" in fields["hyperparameters.lr_scheduler"] and "cosine" in fields["hyperparameters.lr_scheduler"]
    assert "4-bit" in fields["quantization.double_quant"] and "int8" in fields["quantization.double_quant"]


def test_good_settings_pass_and_nested_4bit_quantization_is_allowed():
    spec = TrainSpec.from_proto(request(
        hyperparameters=train_pb2.Hyperparameters(epochs=3, learning_rate=2e-4, lr_scheduler="cosine"),
        lora=train_pb2.LoraParams(r=16, alpha=32, dropout=0.1),
        quantization=train_pb2.QuantizationParams(quantization=common_pb2.QUANTIZATION_4BIT_NF4, double_quant=True),
    ))
    assert (spec.lr_scheduler, spec.quantization, spec.double_quant) == ("cosine", "nf4", True)


def test_the_schedules_are_transformers_own():
    from transformers import SchedulerType

    assert set(LR_SCHEDULERS) <= {s.value for s in SchedulerType}


@pytest.mark.parametrize(("profile", "batch", "warned"), [
    ("cpu", 2, False), ("cpu", 3, True), ("low_end", 3, True), ("mid_range", 4, False), ("mid_range", 5, True),
    ("high_end", 64, False),
])
def test_batch_size_per_profile_is_advice(profile, batch, warned):
    spec = TrainSpec.from_proto(request(hyperparameters=train_pb2.Hyperparameters(batch_size=batch)))
    advice = dict(spec.warnings(profile))
    assert ("hyperparameters.batch_size" in advice) is warned
    if warned:
        assert profile in advice["hyperparameters.batch_size"]


def test_many_epochs_and_a_high_learning_rate_are_advice_not_errors():
    spec = TrainSpec.from_proto(request(hyperparameters=train_pb2.Hyperparameters(epochs=40, learning_rate=0.5)))
    assert set(dict(spec.warnings("high_end"))) == {"hyperparameters.epochs", "hyperparameters.learning_rate"}
    calm = TrainSpec.from_proto(request(hyperparameters=train_pb2.Hyperparameters(epochs=3, learning_rate=2e-4)))
    assert calm.warnings("high_end") == []


def test_the_store_speaks_modelforges_provider_vocabulary(tmp_path):
    assert [modelforge_provider(p) for p in ("trl", "unsloth", "", "huggingface", "llamacpp")] == [
        "huggingface", "unsloth", "huggingface", "huggingface", "llamacpp"]
    for name, metadata in {"legacy": {}, "trl-made": {"provider": "trl", "backend": "trl"},
                           "new": {"provider": "huggingface", "backend": "trl", "description": "a summarizer",
                                   "created": "2026-01-02T03:04:05Z"}}.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "forgeway.json").write_text(json.dumps(metadata))
    store = ModelStore(tmp_path)
    entries = {e.name: e for e in store.list()}
    assert {e.provider for e in entries.values()} == {"huggingface"}
    assert entries["new"].trained_by == "trl" and entries["new"].description == "a summarizer"
    assert entries["new"].created.isoformat() == "2026-01-02T03:04:05+00:00" and entries["legacy"].created is None
    assert store.metadata("trl-made")["provider"] == store.metadata("legacy")["provider"] == "huggingface"


def test_modelforge_settings_become_train_options():
    provider = HuggingFaceProvider("tiny", "summarization", "low_end", client=None)
    options = provider.validate_hyperparameters({
        "num_train_epochs": 2, "per_device_train_batch_size": 1, "gradient_accumulation_steps": 4,
        "learning_rate": 2e-4, "lr_scheduler_type": "cosine", "max_steps": -1, "max_seq_length": -1,
        "lora_r": 8, "lora_alpha": 16, "lora_dropout": 0.1, "use_4bit": True, "bnb_4bit_quant_type": "fp4",
        "use_nested_quant": True, "optim": "paged_adamw_32bit", "bf16": True, "strategy": "sft",
    })
    assert options == {"task": "summarization", "method": "sft", "epochs": 2, "batch_size": 1,
                       "gradient_accumulation_steps": 4, "learning_rate": 2e-4, "lr_scheduler": "cosine",
                       "lora": {"r": 8, "alpha": 16, "dropout": 0.1}, "quantization": "fp4", "double_quant": True,
                       "precision": "bf16"}
    assert provider.get_model_class_name() == "AutoPeftModelForSeq2SeqLM"
    assert provider.validate_hyperparameters({}) == {"task": "summarization", "method": "sft", "lora": True}
    assert provider.validate_hyperparameters({"strategy": "rlhf"})["method"] == "dpo"
    assert provider.validate_hyperparameters({"strategy": "qlora"})["quantization"] == "nf4"
    with pytest.raises(ValueError, match="Unknown settings: colour, epochs"):
        provider.validate_hyperparameters({"epochs": 1, "colour": "red"})
    with pytest.raises(SettingsError, match="strategy"):
        provider.validate_hyperparameters({"strategy": "ppo"})


def test_provider_arguments_are_checked_as_modelforge_does():
    with pytest.raises(ValueError, match="supports \\['text-generation'\\], but got 'summarization'"):
        UnslothProvider("tiny", "summarization", "high_end", client=None)
    with pytest.raises(ValueError, match="Invalid compute specs"):
        HuggingFaceProvider("tiny", "text-generation", "huge", client=None)
