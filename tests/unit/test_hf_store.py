"""The model store as the hf service reads it: names, provenance, legacy metadata, adapters."""

from __future__ import annotations

import json
import os
import shutil
import time

import pytest

pytestmark = pytest.mark.hf

from forgeway.services.hf.catalog import Catalog  # noqa: E402
from forgeway.core.modelstore import ModelStore  # noqa: E402
from forgeway.core.generation import Task  # noqa: E402


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
    _entry(tmp_path, "qa", {"provider": "unsloth", "backend": "unsloth", "task": "extractive-question-answering"})
    entry = ModelStore(tmp_path).get("qa")
    assert entry.provider == "unsloth" and entry.trained_by == "unsloth" and entry.task is Task.EXTRACTIVE_QA
    _entry(tmp_path, "older", {"provider": "trl"})  # written before providers took ModelForge's names
    assert ModelStore(tmp_path).get("older").provider == "huggingface"


def test_adapter_base_comes_from_metadata_or_the_adapter_config(tmp_path):
    folder = _entry(tmp_path, "lora", None, files=())
    (folder / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "/models/base"}))
    entry = ModelStore(tmp_path).get("lora")
    assert entry.is_adapter and entry.loadable and entry.base_model == "/models/base"


@pytest.mark.parametrize("name", ["../etc", "a/b", "", ".hidden"])
def test_names_cannot_leave_the_store(tmp_path, name):
    assert ModelStore(tmp_path).get(name) is None


def still(root, seconds_ago: int = 3600):
    """Leave the store as if nothing had touched it for a while (or, negative, as if touched in the future)."""
    when = time.time_ns() - seconds_ago * 10**9
    for path in [root, *root.iterdir(), *root.glob("*/forgeway.json")]:
        os.utime(path, ns=(when, when))


def names(infos) -> list[str]:
    return [m.name for m in infos]


def test_listing_skips_what_transformers_cannot_load(tmp_path):
    _entry(tmp_path, "weights")
    _entry(tmp_path, "gguf-only", {"provider": "llamacpp"}, files=("model.gguf",))
    catalog = Catalog(ModelStore(tmp_path))
    assert [(m.name, m.loaded, m.context_length, m.task) for m in catalog.models()] == [
        ("weights", False, 256, Task.TEXT_GENERATION)]
    assert catalog.models(skip={"weights"}) == []
    assert Catalog(ModelStore(tmp_path / "missing")).models() == []


def test_an_unchanged_store_is_not_read_again(tmp_path):
    _entry(tmp_path, "weights", {"provider": "trl"})
    still(tmp_path)
    catalog = Catalog(ModelStore(tmp_path))
    for _ in range(5):
        assert names(catalog.models()) == ["weights"]
    assert catalog.scans == 1
    catalog.invalidate()  # LoadModel / UnloadModel
    assert names(catalog.models()) == ["weights"] and catalog.scans == 2


def test_a_published_entry_is_listed_on_the_next_call(tmp_path):
    store = ModelStore(tmp_path)
    _entry(tmp_path, "weights", {"provider": "trl"})
    still(tmp_path)
    catalog = Catalog(store)
    assert names(catalog.models()) == ["weights"]
    with store.writing("fresh") as folder:  # how a trainer publishes: a rename into models/
        (folder / "config.json").write_text(json.dumps({"architectures": ["T5ForConditionalGeneration"],
                                                        "is_encoder_decoder": True}))
        ModelStore.write_metadata(folder, provider="trl", base_model="t5")
    listed = {m.name: m for m in catalog.models()}
    assert sorted(listed) == ["fresh", "weights"] and listed["fresh"].task == Task.SUMMARIZATION
    assert catalog.scans == 2


def test_rewritten_metadata_and_removed_entries_are_seen(tmp_path):
    _entry(tmp_path, "weights", {"provider": "trl"})
    _entry(tmp_path, "other", {"provider": "trl"})
    still(tmp_path)
    catalog = Catalog(ModelStore(tmp_path))
    assert {m.name: m.task for m in catalog.models()} == {"other": Task.TEXT_GENERATION,
                                                          "weights": Task.TEXT_GENERATION}
    # rewritten in place: the store folder itself does not change, the entry's metadata file does
    (tmp_path / "weights" / "forgeway.json").write_text(json.dumps({"provider": "trl", "task": "summarization"}))
    assert {m.name: m.task for m in catalog.models()}["weights"] == Task.SUMMARIZATION
    shutil.rmtree(tmp_path / "other")
    assert names(catalog.models()) == ["weights"]


def test_a_store_changed_too_recently_to_trust_its_stamp_is_read_each_time(tmp_path):
    _entry(tmp_path, "weights", {"provider": "trl"})
    still(tmp_path, seconds_ago=-3600)  # an mtime the clock has not passed: a later change could keep it
    catalog = Catalog(ModelStore(tmp_path))
    for _ in range(3):
        assert names(catalog.models()) == ["weights"]
    assert catalog.scans == 3
    still(tmp_path)
    catalog.models()
    catalog.models()
    assert catalog.scans == 4


def test_callers_get_copies_of_the_index(tmp_path):
    _entry(tmp_path, "weights", {"provider": "trl"})
    still(tmp_path)
    catalog = Catalog(ModelStore(tmp_path))
    catalog.models()[0].name = "changed"
    assert names(catalog.models()) == ["weights"]
