"""HFSettings from flags: the one-model shortcut, a model list as JSON, and bad values named."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.hf

from forgeway.services.hf.settings import HFSettings  # noqa: E402
from forgeway.core.generation import Task  # noqa: E402
from forgeway.server.settings import SettingsError, build_settings  # noqa: E402


def test_model_flag_serves_one_model_named_after_its_folder(tmp_path):
    s = build_settings(HFSettings, ["--model", "/models/tiny-llama/", "--home", str(tmp_path)])
    assert [(m.name, m.path) for m in s.models] == [("tiny-llama", "/models/tiny-llama/")]
    s = build_settings(HFSettings, ["--model", "/models/x", "--model-name", "chat", "--home", str(tmp_path)])
    assert s.models[0].name == "chat"


def test_models_list_with_task_adapters_and_quantization(tmp_path):
    models = [{"name": "sum", "path": "/m/t5", "task": "summarization"},
              {"name": "base", "path": "/m/llama", "adapters": [{"name": "a", "path": "/m/a"}], "quantization": "nf4"}]
    s = build_settings(HFSettings, ["--models", json.dumps(models), "--max-concurrency", "8", "--home", str(tmp_path)])
    assert s.models[0].task is Task.SUMMARIZATION
    assert s.models[1].adapters[0].name == "a" and s.models[1].quantization == "nf4"
    assert s.max_concurrency == 8


@pytest.mark.parametrize("argv, where", [
    (["--models", '[{"name": "a", "path": "x"}, {"name": "a", "path": "y"}]'], "unique"),
    (["--models", '[{"name": "a", "path": "x", "quantization": "int3"}]'], "quantization"),
    (["--max-concurrency", "0"], "max_concurrency"),
    (["--device", "tpu"], "device"),
])
def test_bad_settings_are_named(tmp_path, argv, where):
    with pytest.raises(SettingsError, match=where):
        build_settings(HFSettings, [*argv, "--home", str(tmp_path)])
