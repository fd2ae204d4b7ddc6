"""Every TRL method, task and PEFT/quantization mode runs a few steps on the tiny models to SUCCEEDED."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from trl_harness import (
    PREFERENCES,
    PROMPTS,
    QUANT_NF4,
    QUESTIONS,
    SUMMARIES,
    UNPAIRED,
    assert_succeeded,
    request,
    rows,
    tiny,
    trl_service,
)

from forgeway.v1 import common_pb2, train_pb2

pytestmark = [pytest.mark.trl, pytest.mark.slow]

M = train_pb2


@pytest.fixture(scope="module")
async def trainer(tmp_path_factory):
    async with trl_service(tmp_path_factory.mktemp("trl-methods")) as service:
        yield service


def metadata(artifact) -> dict:
    return json.loads((Path(artifact.path) / "forgeway.json").read_text())


async def test_sft_lora_writes_an_adapter_with_provenance(trainer):
    events = await trainer.train(request(output=M.TrainOutput(model_name="sft-tiny")))
    artifact = assert_succeeded(events)
    assert (artifact.model_name, artifact.format) == ("sft-tiny", "adapter")
    meta = metadata(artifact)
    assert (meta["provider"], meta["backend"], meta["method"]) == ("huggingface", "trl", "sft")
    assert meta["description"] == f"sft fine-tune of {tiny('llama')} for text-generation"
    assert meta["base_model"] == str(tiny("llama")) and len(meta["dataset_sha256"]) == 64
    assert "train_loss" in meta["metrics"] and meta["model_class"] == "AutoPeftModelForCausalLM"
    modelforge = json.loads((Path(artifact.path) / "modelforge_config.json").read_text())
    assert modelforge == {"model_class": "AutoPeftModelForCausalLM", "pipeline_task": "text-generation",
                          "provider": "huggingface"}
    assert (Path(artifact.path) / "adapter_config.json").is_file()


async def test_sft_full_fine_tuning_with_merged_and_gguf_exports(trainer):
    req = request(lora=False, output=M.TrainOutput(model_name="full-tiny",
                                                   formats=[M.EXPORT_FORMAT_MERGED, M.EXPORT_FORMAT_GGUF]))
    events = await trainer.train(req)
    artifacts = [e.artifact for e in events if e.WhichOneof("kind") == "artifact"]
    assert_succeeded(events)
    assert {(a.model_name, a.format) for a in artifacts} == {("full-tiny", "merged"), ("full-tiny-gguf", "gguf")}
    assert (Path(artifacts[-1].path) / "model.safetensors").is_file()
    assert (trainer.home / "models" / "full-tiny-gguf" / "model.gguf").stat().st_size > 0


@pytest.mark.parametrize("loss_type", ["sigmoid", "ipo"])
async def test_dpo(trainer, loss_type):
    params = M.MethodParams(beta=0.1, loss_type=loss_type)
    assert_succeeded(await trainer.train(request(M.TRAINING_METHOD_DPO, rows(PREFERENCES), method_params=params)))


@pytest.mark.parametrize("loss_type", ["dr_grpo", "gspo"])
async def test_grpo_with_builtin_rewards(trainer, loss_type):
    params = M.MethodParams(loss_type=loss_type, num_generations=2, max_completion_length=8, max_prompt_length=16,
                            reward_functions=[M.RewardFunction(name="length:20", weight=1.0),
                                              M.RewardFunction(name="keywords:cat", weight=0.5)])
    assert_succeeded(await trainer.train(request(M.TRAINING_METHOD_GRPO, rows(PROMPTS), lora=True,
                                                 method_params=params)))


async def test_kto_from_unpaired_and_from_paired_preferences(trainer):
    assert_succeeded(await trainer.train(request(M.TRAINING_METHOD_KTO, rows(UNPAIRED))))
    assert_succeeded(await trainer.train(request(M.TRAINING_METHOD_KTO, rows(PREFERENCES))))


async def test_rloo_with_a_reward_model_and_a_reward_function(trainer):
    params = M.MethodParams(num_generations=2, max_completion_length=8, reward_model=str(tiny("reward")),
                            reward_functions=[M.RewardFunction(name="exact_match:reference")])
    assert_succeeded(await trainer.train(request(M.TRAINING_METHOD_RLOO, rows(PROMPTS), method_params=params)))


async def test_reward_modelling(trainer):
    artifact = assert_succeeded(await trainer.train(request(M.TRAINING_METHOD_REWARD, rows(PREFERENCES),
                                                            lora=False)))
    assert metadata(artifact)["model_class"] == "AutoModelForSequenceClassification"


@pytest.mark.parametrize("method", [M.TRAINING_METHOD_ORPO, M.TRAINING_METHOD_CPO])
async def test_experimental_preference_methods(trainer, method):
    params = M.MethodParams(beta=0.1, max_completion_length=16)
    assert_succeeded(await trainer.train(request(method, rows(PREFERENCES), method_params=params)))


async def test_online_dpo_with_a_reward_function(trainer):
    params = M.MethodParams(max_completion_length=8, reward_functions=[M.RewardFunction(name="length:10")])
    assert_succeeded(await trainer.train(request(M.TRAINING_METHOD_ONLINE_DPO, rows(PROMPTS), method_params=params)))


async def test_qlora_nf4_on_this_device_with_adapter_and_merged_exports(trainer):
    output = M.TrainOutput(model_name="qlora-tiny", formats=[M.EXPORT_FORMAT_ADAPTER, M.EXPORT_FORMAT_MERGED])
    events = await trainer.train(request(quantization=QUANT_NF4, output=output))
    assert metadata(assert_succeeded(events))["training"]["quantization"] == "nf4"
    merged = trainer.home / "models" / "qlora-tiny-merged"
    assert (merged / "model.safetensors").is_file() and metadata(type("A", (), {"path": merged}))["format"] == "merged"


async def test_training_on_top_of_a_stored_adapter(trainer):
    assert_succeeded(await trainer.train(request(output=M.TrainOutput(model_name="chain-sft"))))
    req = request(M.TRAINING_METHOD_DPO, rows(PREFERENCES), lora=False, base_model="chain-sft",
                  output=M.TrainOutput(model_name="chain-dpo"))
    meta = metadata(assert_succeeded(await trainer.train(req)))
    assert meta["format"] == "merged" and meta["base_model_requested"] == "chain-sft"
    assert meta["base_adapter"] == str(trainer.home / "models" / "chain-sft")


async def test_summarization_task_with_eval_perplexity(trainer):
    req = request(base_model=str(tiny("seq2seq")), task=common_pb2.TASK_SUMMARIZATION, dataset=rows(SUMMARIES),
                  eval_dataset=rows(SUMMARIES[:2]), method_params=M.MethodParams(max_completion_length=8))
    artifact = assert_succeeded(await trainer.train(req))
    meta = metadata(artifact)
    assert meta["pipeline_task"] == "summarization" and meta["task"] == "summarization"
    assert "eval_loss" in meta["metrics"] and "eval_perplexity" in meta["metrics"]


async def test_extractive_qa_task(trainer):
    req = request(base_model=str(tiny("qa")), task=common_pb2.TASK_EXTRACTIVE_QUESTION_ANSWERING,
                  dataset=rows(QUESTIONS), lora=False)
    meta = metadata(assert_succeeded(await trainer.train(req)))
    assert meta["model_class"] == "AutoModelForQuestionAnswering" and meta["pipeline_task"] == "question-answering"
