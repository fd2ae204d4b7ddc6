"""ModelForge's hardware profile rule at each threshold, its curated recommendations as data, their contract and SDK
forms, and the disk-space estimate a trainer checks before it creates a job."""

from __future__ import annotations

import json
import shutil

import pytest

from forgeway.client import convert
from forgeway.client.requests import train_request
from forgeway.core.errors import FailedPrecondition
from forgeway.core.generation import TRAINED_TASKS, Task
from forgeway.core.profiles import GIB, PROFILES, advice, classify, profile_of, recommendation_to_proto
from forgeway.server.hardware import detect, hardware_to_proto, visible_devices
from forgeway.services.training.disk import base_model_bytes, check_disk_space, needed_bytes
from forgeway.services.training.spec import DatasetSpec, LoraSpec, TrainSpec
from forgeway.v1 import common_pb2


@pytest.mark.parametrize(("device", "gpu_gb", "ram_gb", "profile"), [
    ("cpu", 0, 64, "cpu"),
    ("cpu", 80, 64, "cpu"),  # no accelerator in use: whatever memory is reported
    ("cuda", 0, 64, "low_end"),
    ("cuda", 7.19, 64, "low_end"),
    ("cuda", 7.2, 64, "mid_range"),  # the low_end bound is exclusive
    ("cuda", 7.2, 15.19, "low_end"),  # mid-range memory with little RAM stays low_end
    ("cuda", 15.19, 15.2, "mid_range"),
    ("cuda", 15.19, 15.19, "low_end"),
    ("cuda", 15.2, 15.2, "high_end"),
    ("cuda", 15.2, 15.19, "mid_range"),  # high-end memory with little RAM is mid_range
    ("cuda", 141, 2048, "high_end"),
    ("mps", 16, 16, "high_end"),
    ("mps", 8, 8, "low_end"),
])
def test_the_profile_rule_at_each_threshold(device, gpu_gb, ram_gb, profile):
    assert classify(device, gpu_gb, ram_gb) == profile


def test_bytes_are_rounded_as_modelforge_rounds_them():
    assert profile_of("cuda", int(7.196 * GIB), 64 * GIB) == "mid_range"  # 7.196 GiB reads as 7.2
    assert profile_of("cuda", int(7.194 * GIB), 64 * GIB) == "low_end"
    assert profile_of("cuda", 16 * GIB, int(15.4 * GIB)) == "mid_range"  # RAM to whole GiB: 15.4 reads as 15
    assert profile_of("cuda", 16 * GIB, int(15.5 * GIB)) == "high_end"


@pytest.mark.parametrize("profile", PROFILES)
def test_every_profile_recommends_a_curated_model_per_task(profile):
    found = advice(profile)
    assert found.advice and [r.task for r in found.recommendations] == list(TRAINED_TASKS)
    for rec in found.recommendations:
        assert rec.model and rec.alternatives[0] == rec.model and len(rec.alternatives) >= 2
        assert rec.settings.batch_size >= 1 and rec.settings.max_seq_length >= 512 and rec.settings.epochs >= 1
    # the trainers train summarization and extractive QA unquantized, so that is what is recommended for them
    assert {found.recommendation(t).settings.quantization for t in (Task.SUMMARIZATION, Task.EXTRACTIVE_QA)} == {"none"}


def test_modelforges_lists_and_settings_are_carried_over():
    low, mid, high = advice("low_end"), advice("mid_range"), advice("high_end")
    assert low.recommendation(Task.EXTRACTIVE_QA).model == "deepset/roberta-base-squad2"
    assert low.recommendation(Task.TEXT_GENERATION).model == "qwen/Qwen2.5-3B"
    assert mid.recommendation(Task.SUMMARIZATION).alternatives[:2] == ("google/flan-t5-large", "facebook/bart-base")
    assert high.recommendation(Task.TEXT_GENERATION).model == "meta-llama/Llama-4-Maverick-17B-128E-Instruct"
    settings = [(p.recommendation(Task.TEXT_GENERATION).settings) for p in (low, mid, high)]
    assert [(s.quantization, s.batch_size, s.gradient_accumulation_steps, s.max_seq_length) for s in settings] == [
        ("nf4", 1, 8, 512), ("nf4", 2, 4, 1024), ("none", 4, 2, 2048)]
    assert {(s.epochs, s.learning_rate, s.lora_r, s.lora_alpha, s.lora_dropout) for s in settings} == {
        (3, 2e-4, 16, 32, 0.1)}
    with pytest.raises(KeyError, match="unknown hardware profile 'low_end_gpu'"):
        advice("low_end_gpu")


def test_a_recommendation_goes_through_the_contract_into_a_train_request():
    rec = advice("low_end").recommendation(Task.TEXT_GENERATION)
    msg = recommendation_to_proto(rec)
    assert msg.task == common_pb2.TASK_TEXT_GENERATION
    assert msg.quantization.quantization == common_pb2.QUANTIZATION_4BIT_NF4
    sdk = convert.recommendation(msg)
    assert (sdk.task, sdk.model, sdk.alternatives) == ("text-generation", rec.model, rec.alternatives)
    assert (sdk.learning_rate, sdk.lora_dropout, sdk.quantization) == (2e-4, 0.1, "nf4")
    request = train_request(sdk.model, [{"text": "a"}], **sdk.train_options())
    assert request.hyperparameters.batch_size == 1 and request.hyperparameters.gradient_accumulation_steps == 8
    assert request.hyperparameters.max_seq_length == 512 and request.lora.r == 16 and request.lora.alpha == 32
    assert request.quantization.quantization == common_pb2.QUANTIZATION_4BIT_NF4
    assert request.task == common_pb2.TASK_TEXT_GENERATION


def test_detect_reports_the_disk_under_the_store_and_the_profiles_recommendations(tmp_path):
    store = tmp_path / "home" / "models"  # not there yet: its nearest existing folder's filesystem counts
    hw = detect(store)
    assert hw.disk_total == shutil.disk_usage(tmp_path).total and 0 < hw.disk_free <= hw.disk_total
    assert hw.profile == profile_of(hw.device, hw.accelerator_memory_total, hw.ram_total)
    assert hw.recommendations == advice(hw.profile).recommendations
    msg = hardware_to_proto(hw)
    assert msg.disk_free == hw.disk_free and len(msg.recommendations) == 3
    sdk = convert.hardware(msg)
    assert sdk.recommended("extractive-question-answering").alternatives == advice(hw.profile).recommendation(
        Task.EXTRACTIVE_QA).alternatives
    assert detect().disk_total == 0  # no store named: no disk reported


def spec(lora: bool = True, formats: tuple[str, ...] = (), save_steps: int | None = None) -> TrainSpec:
    return TrainSpec(base_model="m", method="sft", task=Task.TEXT_GENERATION, dataset=DatasetSpec("inline"),
                     lora=LoraSpec() if lora else None, export_formats=formats, save_steps=save_steps)


def test_the_disk_estimate_follows_its_rule():
    base = 1000 * 1000
    assert needed_bytes(spec(), base) == base // 4  # a LoRA adapter
    assert needed_bytes(spec(lora=False), base) == base  # full fine-tuning writes the whole model
    assert needed_bytes(spec(formats=("adapter", "merged")), base) == base + base // 4
    assert needed_bytes(spec(formats=("merged", "gguf")), base) == 2 * base
    assert needed_bytes(spec(lora=False, save_steps=10), base) == 4 * base  # + weights and Adam's two moments
    assert needed_bytes(spec(save_steps=10), base) == base // 2


def test_a_store_adapter_counts_its_base_too(tmp_path):
    base = tmp_path / "base"
    base.mkdir()
    (base / "model.safetensors").write_bytes(b"x" * 5000)
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_model.safetensors").write_bytes(b"y" * 300)
    (adapter / "adapter_config.json").write_text("{}")
    (adapter / "forgeway.json").write_text(json.dumps({"base_model": str(base)}))
    assert base_model_bytes(str(base)) == 5000
    assert base_model_bytes(str(adapter)) == 5000 + 300 + 2 + len(json.dumps({"base_model": str(base)}))
    assert base_model_bytes("nobody/not-in-the-cache") == 0


def test_the_disk_check_names_what_is_needed_and_what_is_free(tmp_path):
    free = shutil.disk_usage(tmp_path).free
    check_disk_space(tmp_path, 1024, 0)
    with pytest.raises(FailedPrecondition) as caught:
        check_disk_space(tmp_path, 3 * GIB, free)
    error = caught.value
    assert "needs about 3.00 GiB" in error.message and "GiB free" in error.message and "min_free_disk" in error.message
    assert error.reason == "INSUFFICIENT_DISK_SPACE" and int(error.metadata["needed_bytes"]) == 3 * GIB
    assert 0 < int(error.metadata["free_bytes"]) <= shutil.disk_usage(tmp_path).total


@pytest.mark.parametrize(("listed", "visible"), [
    (None, [0, 1, 2, 3]),
    ("", []),
    ("-1", []),
    ("2,0", [2, 0]),
    ("1,7,2", [1]),  # CUDA stops at the first entry that names no device
    ("0,0", [0]),
    ("GPU-8a1f,3", ["GPU-8a1f", 3]),
    ("MIG-abc", []),  # MIG slices: not counted as whole GPUs
])
def test_cuda_visible_devices_is_read_as_cuda_reads_it(listed, visible):
    assert visible_devices(listed, 4) == visible
