"""The model store as the hf service reads it: names, provenance, legacy metadata, adapters."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.hf

from forgeway.services.hf.catalog import store_models  # noqa: E402
from forgeway.services.runtime.modelstore import ModelStore  # noqa: E402
from forgeway.services.runtime.generation import Task  # noqa: E402


def _entry(root, name, metadata=None, files=("config.json",)):
    folder = root / name
    folder.mkdir(parents=True)
    for f in files:
        (folder / f).write_text(json.dumps({"architectures": ["LlamaForCausalLM"], "max_position_embeddings": 256}))
    if metadata is not None:
        (folder / "forgeway.json").write_text(json.dumps(metadata))
    return folder


def test_legacy_metadata_without_provider_reads_as_huggingface(tmp_path):
    _entry(tmp_path, "old", {"base_model": "tiny", "method": "sft"})
    entry = ModelStore(tmp_path).get("old")
    assert entry.provider == "huggingface"
    assert entry.base_model == "tiny" and entry.metadata["method"] == "sft"


def test_provider_and_task_are_read(tmp_path):
    _entry(tmp_path, "qa", {"provider": "trl", "task": "extractive-question-answering"})
    entry = ModelStore(tmp_path).get("qa")
    assert entry.provider == "trl" and entry.task is Task.EXTRACTIVE_QA


def test_adapter_base_comes_from_metadata_or_the_adapter_config(tmp_path):
    folder = _entry(tmp_path, "lora", None, files=())
    (folder / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "/models/base"}))
    entry = ModelStore(tmp_path).get("lora")
    assert entry.is_adapter and entry.loadable and entry.base_model == "/models/base"


@pytest.mark.parametrize("name", ["../etc", "a/b", "", ".hidden"])
def test_names_cannot_leave_the_store(tmp_path, name):
    assert ModelStore(tmp_path).get(name) is None


def test_listing_skips_what_transformers_cannot_load(tmp_path):
    _entry(tmp_path, "weights")
    _entry(tmp_path, "gguf-only", {"provider": "llamacpp"}, files=("model.gguf",))
    infos = store_models(ModelStore(tmp_path), skip=set())
    assert [(m.name, m.loaded, m.context_length, m.task) for m in infos] == [
        ("weights", False, 256, Task.TEXT_GENERATION)]
    assert store_models(ModelStore(tmp_path), skip={"weights"}) == []
    assert store_models(ModelStore(tmp_path / "missing"), skip=set()) == []
