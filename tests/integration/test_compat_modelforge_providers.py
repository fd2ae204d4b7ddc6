"""ModelForge's provider registry against a real gateway with the trl trainer and the hf service behind it (no
unsloth here): availability from Capabilities, its two errors, LoRA training of the tiny llama through
create_provider, the artifacts ModelForge reads, the model list's provenance, settings refused all at once, and the
gateway's fallback from unsloth to trl."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from forgeway.client import Client, UnavailableError
from forgeway.compat.modelforge import BaseProvider, HuggingFaceProvider, ProviderRegistry, SettingsError, list_models
from forgeway.compat.modelforge.providers import UnslothProvider
from forgeway.testing import InProcessStack

pytestmark = [pytest.mark.trl, pytest.mark.hf, pytest.mark.slow]

# A few LoRA steps on the tiny llama; batch 4 is more than a CPU ("low end") machine is advised to take.
SETTINGS = {"max_steps": 2, "per_device_train_batch_size": 4, "gradient_accumulation_steps": 1,
            "learning_rate": 1e-3, "max_seq_length": 32, "lora_r": 4, "lora_alpha": 8, "lora_dropout": 0.0,
            "optim": "adamw_torch", "strategy": "sft"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    from forgeway import testing
    from forgeway.services.hf.service import HFService
    from forgeway.services.hf.settings import HFSettings
    from forgeway.services.trl.service import TRLService
    from forgeway.services.trl.settings import TRLSettings

    root = tmp_path_factory.mktemp("modelforge-providers")
    home = root / "home"
    base = testing.build_tiny_llama(root / "tiny-llama", seed=0)
    common = {"home": home, "port": 0, "metrics_port": -1, "host": "127.0.0.1", "log_level": "WARNING"}

    def trl():
        return TRLService(TRLSettings(**common, grace_seconds=5, allowed_roots=[root]))

    def hf():  # serves what trl writes to the shared store; a configured model to start with
        return HFService(HFSettings(**common, torch_threads=1, model_roots=[root],
                                    models=[{"name": "tiny-base", "path": str(base)}]))

    with InProcessStack(trl, hf, gateway=True, root=root) as running:
        yield running


@pytest.fixture(scope="module")
def base(stack) -> Path:
    return stack.root / "tiny-llama"


@pytest.fixture(scope="module")
def dataset(stack) -> Path:
    path = stack.root / "chat.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"Where did cat {i} sit?", "completion": " On the mat."}) + "\n"
                            for i in range(12)))
    return path


@pytest.fixture(scope="module")
def registry(stack) -> ProviderRegistry:
    return ProviderRegistry(target=stack.target)


def test_providers_are_listed_with_availability_from_the_gateway(registry):
    rows = {row["name"]: row for row in registry.list_all()}
    assert rows["huggingface"]["available"] is True and rows["huggingface"]["backend"] == "trl"
    assert rows["huggingface"]["supported_tasks"] == ["text-generation", "summarization",
                                                      "extractive-question-answering"]
    assert rows["unsloth"]["available"] is False and rows["unsloth"]["supported_tasks"] == ["text-generation"]
    assert "no unsloth trainer" in rows["unsloth"]["reason"]
    assert registry.list_available() == ["huggingface"]
    assert registry.get("huggingface") is HuggingFaceProvider and registry.get("nope") is None
    assert registry.is_available("huggingface") and not registry.is_available("unsloth")


def test_create_provider_answers_modelforges_two_errors(registry, base):
    with pytest.raises(ValueError) as unknown:
        registry.create_provider("nope", str(base), "text-generation", "low_end")
    assert str(unknown.value) == "Provider 'nope' not found"
    with pytest.raises(ValueError) as unavailable:
        registry.create_provider("unsloth", str(base), "text-generation", "low_end")
    assert str(unavailable.value) == "Provider 'unsloth' is not available. Please install required dependencies."


def test_register_adds_a_provider_on_a_trainer(stack):
    class DirectTRL(BaseProvider):
        provider_name = "forgeway-trl"
        backend = "trl"

    registry = ProviderRegistry(target=stack.target)
    registry.register(DirectTRL)
    assert "forgeway-trl" in registry.list_available() and registry.get("forgeway-trl") is DirectTRL
    with pytest.raises(TypeError):
        registry.register(dict)


def test_a_created_provider_trains_and_writes_what_modelforge_reads(registry, stack, base, dataset):
    provider = registry.create_provider("huggingface", str(base), "text-generation", "low_end")
    seen = []
    report = provider.train(str(dataset), SETTINGS, output_name="mf-chat", description="cats and mats",
                            progress_callback=seen.append)
    assert report["state"] == "succeeded", report["error"]
    assert (report["provider"], report["backend"], report["fallback"]) == ("huggingface", "trl", None)
    assert report["model_name"] == "mf-chat" and report["ignored_settings"] == ["optim"]
    assert any(w.startswith("hyperparameters.batch_size: 4 may be too large") for w in report["warnings"])
    assert seen and seen[-1].kind == "state" and any(e.kind == "progress" for e in seen)

    folder = Path(report["model_path"])
    assert json.loads((folder / "modelforge_config.json").read_text()) == {
        "model_class": "AutoPeftModelForCausalLM", "pipeline_task": "text-generation", "provider": "huggingface"}
    metadata = json.loads((folder / "forgeway.json").read_text())
    assert (metadata["provider"], metadata["backend"], metadata["description"]) == ("huggingface", "trl",
                                                                                    "cats and mats")

    listed = {m.name: m for m in Client(stack.target).models.list()}["mf-chat"]
    assert (listed.task, listed.provider, listed.trained_by) == ("text-generation", "huggingface", "trl")
    assert listed.description == "cats and mats" and listed.base_model == str(base)
    assert listed.created is not None and listed.created.tzinfo is not None
    row = {r["model_name"]: r for r in list_models(target=stack.target)}["mf-chat"]
    assert row == {"id": "mf-chat", "model_name": "mf-chat", "base_model": str(base), "task": "text-generation",
                   "description": "cats and mats", "creation_date": listed.created.isoformat(),
                   "model_path": "store:mf-chat", "is_custom_base_model": False, "provider": "huggingface",
                   "trained_by": "trl"}
    assert "tiny-base" not in {r["model_name"] for r in list_models(target=stack.target)}  # not a trained model
    assert list_models(target=stack.target, task="summarization") == []

    from fastapi.testclient import TestClient

    from forgeway.gateway.http.app import create_app

    with TestClient(create_app(stack.target)) as http:
        entry = http.get("/v1/models/mf-chat").json()
    assert (entry["provider"], entry["description"], entry["base_model"]) == ("huggingface", "cats and mats", str(base))
    assert entry["created"] == int(listed.created.timestamp()) and entry["task"] == "text-generation"


def test_bad_settings_are_refused_all_at_once_and_no_job_is_created(registry, stack, base, dataset):
    client = Client(stack.target)
    before = len(client.jobs.list())
    provider = registry.create_provider("huggingface", str(base), "text-generation", "low_end")
    bad = {**SETTINGS, "lora_dropout": 1.5, "learning_rate": 2.0, "lr_scheduler_type": "bogus", "use_8bit": True,
           "use_nested_quant": True}
    with pytest.raises(SettingsError) as refused:
        provider.train(str(dataset), bad)
    assert {name for name, _ in refused.value.violations} == {"lora_dropout", "learning_rate", "lr_scheduler_type",
                                                             "use_nested_quant"}
    assert "lora_dropout" in str(refused.value) and "bogus" in str(refused.value)
    assert len(client.jobs.list()) == before


def test_unsloth_falls_back_to_trl_only_when_allowed(stack, base, dataset):
    provider = UnslothProvider(str(base), "text-generation", "cpu", client=Client(stack.target))
    with pytest.raises(UnavailableError, match="unsloth unavailable.*fallback to trl is disabled"):
        provider.train(str(dataset), SETTINGS, output_name="mf-strict")
    report = provider.train(str(dataset), SETTINGS, output_name="mf-fallback", allow_fallback=True)
    assert report["state"] == "succeeded", report["error"]
    assert report["backend"] == "trl" and report["fallback"]["requested"] == "unsloth"
    assert report["fallback"]["used"] == "trl" and report["provider"] == "unsloth"
    written = json.loads((Path(report["model_path"]) / "modelforge_config.json").read_text())
    assert written["provider"] == "huggingface"  # who actually trained it
