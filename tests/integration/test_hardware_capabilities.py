"""A real TRL trainer (behind a real gateway) reports its machine as ModelForge profiles it: disk under the model
store, accelerator, per-task recommendations; its recommended settings train; ModelForge's detect() reads them; a
job the disk cannot hold is refused before it exists."""

from __future__ import annotations

import shutil

import pytest

from forgeway.client import Client, FailedPreconditionError
from forgeway.compat import modelforge
from forgeway.core.generation import TRAINED_TASKS, Task
from forgeway.core.profiles import advice, profile_of
from forgeway.services.training.disk import ADAPTER_FACTOR, folder_bytes
from forgeway.testing import build_tiny_llama, trainer_stack

pytestmark = pytest.mark.trl

ROWS = [{"text": f"the cat number {i} sat on the mat and looked at the dog."} for i in range(6)]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    root = tmp_path_factory.mktemp("hardware")
    build_tiny_llama(root / "llama")
    with trainer_stack(root) as running:
        yield running


def test_the_trainer_reports_its_profile_disk_and_recommendations(stack):
    hw = Client(stack.addresses[0]).capabilities().hardware
    assert hw.profile == profile_of(hw.device, hw.accelerator_memory_total, hw.ram_total)
    assert hw.disk_total == shutil.disk_usage(stack.root / "home").total and 0 < hw.disk_free <= hw.disk_total
    if hw.device == "cpu":
        assert hw.profile == "cpu" and hw.accelerator_count == 0 and not hw.driver_version and not hw.cuda_version
    else:
        assert hw.accelerator_count >= 1 and hw.accelerator
    assert [r.task for r in hw.recommendations] == [t.value for t in TRAINED_TASKS]
    for rec, curated in zip(hw.recommendations, advice(hw.profile).recommendations, strict=True):
        assert (rec.model, rec.alternatives) == (curated.model, curated.alternatives)
        assert (rec.batch_size, rec.gradient_accumulation_steps, rec.max_seq_length, rec.quantization) == (
            curated.settings.batch_size, curated.settings.gradient_accumulation_steps,
            curated.settings.max_seq_length, curated.settings.quantization)
    assert len(hw.recommended("extractive-question-answering").alternatives) >= 2


def test_the_gateway_carries_each_trainers_hardware(stack):
    through = Client(stack.target).capabilities()
    trainer = next(e.capabilities for e in through.endpoints if e.capabilities.backend == "trl")
    direct = Client(stack.addresses[0]).capabilities().hardware
    assert trainer.hardware.recommendations == direct.recommendations and trainer.hardware.profile == direct.profile
    assert trainer.hardware.disk_total == direct.disk_total
    # the gateway reports its own machine (the same one here) the same way
    assert through.hardware.profile == direct.profile and through.hardware.recommendations == direct.recommendations
    assert through.hardware.disk_total > 0


def test_detect_answers_modelforges_shape_from_the_trainer(stack):
    answer = modelforge.detect("extractive-question-answering", target=stack.target)
    hw = Client(stack.addresses[0]).capabilities().hardware
    curated = advice(hw.profile).recommendation(Task.EXTRACTIVE_QA)
    assert answer["backend"] == "trl" and answer["profile"] == hw.profile and answer["device_type"] == hw.device
    assert answer["model_recommendation"] == curated.model and answer["possible_options"] == list(curated.alternatives)
    assert answer["available_diskspace_gb"] > 0
    assert abs(answer["available_diskspace_gb"] - hw.disk_free / 1024**3) < 1  # others write to this disk meanwhile
    assert answer["gpu_count"] == hw.accelerator_count
    assert answer["ram_total_gb"] == float(round(hw.ram_total / 1024**3))
    providers = {p["name"]: p for p in answer["providers"]}
    assert providers["huggingface"]["available"] and "extractive-question-answering" in providers["huggingface"][
        "supported_tasks"]
    assert not providers["unsloth"]["available"] and providers["unsloth"]["reason"]  # no unsloth trainer here
    assert answer["available_providers"] == ["huggingface"]
    settings = answer["recommended_settings"]
    assert settings["provider"] == "huggingface" and settings["compute_specs"] == hw.profile
    assert (settings["per_device_train_batch_size"], settings["max_seq_length"], settings["lora_r"]) == (
        curated.settings.batch_size, curated.settings.max_seq_length, curated.settings.lora_r)
    assert settings["use_4bit"] is False  # extractive QA trains unquantized
    with pytest.raises(ValueError, match="Invalid task"):
        modelforge.detect("translation", target=stack.target)


def test_the_recommended_settings_train_here(stack):
    client = Client(stack.target)
    rec = client.capabilities().endpoints[0].capabilities.hardware.recommended("text-generation")
    options = {**rec.train_options(), "max_steps": 2, "max_seq_length": 32}  # a short run of the same settings
    if rec.quantization != "none" and "nf4" not in client.capabilities().training.quantizations:
        options["quantization"] = "none"
    job = client.train(str(stack.root / "llama"), ROWS, output_name="recommended", **options)
    record = job.wait()
    assert record.state == "succeeded" and record.artifact.model_name == "recommended"
    assert (stack.root / "home" / "models" / "recommended" / "adapter_config.json").is_file()


def test_a_job_the_disk_cannot_hold_is_refused_before_it_exists(tmp_path):
    """min_free_disk (bytes kept free under the store) set to the disk's size: no estimate can fit."""
    llama = build_tiny_llama(tmp_path / "llama")
    total = shutil.disk_usage(tmp_path).total
    with trainer_stack(tmp_path, min_free_disk=total) as stack:
        client = Client(stack.target)
        with pytest.raises(FailedPreconditionError) as caught:
            client.train(str(llama), ROWS, max_steps=1, lora=True)
        error = caught.value
        assert error.reason == "INSUFFICIENT_DISK_SPACE" and error.http_status == 409
        assert "needs about" in error.message and "GiB free" in error.message and "min_free_disk" in error.message
        assert int(error.metadata["needed_bytes"]) == int(folder_bytes(llama) * ADAPTER_FACTOR)
        assert int(error.metadata["reserved_bytes"]) == total and 0 < int(error.metadata["free_bytes"]) < total
        with pytest.raises(FailedPreconditionError, match="not enough disk space"):
            client.jobs.create(str(llama), ROWS, max_steps=1, export=["merged"])
        assert client.jobs.list() == []
