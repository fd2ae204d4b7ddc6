"""LlamaForge's per-model parameters from LoadModel options, and where a model's GGUF file is found."""

from __future__ import annotations

from pathlib import Path

import pytest

from forgeway.services.llamacpp.llama_server import command
from forgeway.services.llamacpp.settings import LlamaCppSettings, ModelConfig
from forgeway.services.llamacpp.source import locate_gguf
from forgeway.core.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from forgeway.server.settings import build_settings


def test_options_are_strings_validated_like_settings():
    config = ModelConfig.from_options("m", "/x.gguf", {
        "n_ctx": "1024", "n_gpu_layers": "-1", "n_batch": "64", "n_threads": "2", "use_mlock": "true",
        "kv_cache_type": "q8_0", "seed": "7", "chat_format": "chatml", "instances": "2", "max_queue": "0",
        "temperature": "0.5", "top_k": "40", "repeat_penalty": "1.1", "aliases": "a, b",
    })
    assert (config.n_ctx, config.n_gpu_layers, config.n_batch, config.n_threads) == (1024, -1, 64, 2)
    assert config.use_mlock and config.kv_cache_type == "q8_0" and config.seed == 7
    assert (config.instances, config.max_queue, config.temperature, config.top_k) == (2, 0, 0.5, 40)
    assert config.aliases == ["a", "b"]
    args = command(Path("/opt/llama-server"), config, Path("/x.gguf"), 4321)

    def value(flag: str) -> str:
        return args[args.index(flag) + 1]

    # LlamaForge's parameters as llama-server's flags: each of the 2 slots holds the 1024 tokens asked for
    assert (value("--threads"), value("--threads-batch"), value("--parallel")) == ("2", "2", "2")
    assert (value("--ctx-size"), value("--kv-unified-per-slot"), value("--n-gpu-layers")) == ("2048", "1024", "-1")
    assert (value("--cache-type-k"), value("--chat-template"), value("--batch-size")) == ("q8_0", "chatml", "64")
    assert "--mlock" in args and "--no-mmap" not in args
    assert (value("--host"), value("--port"), value("--model")) == ("127.0.0.1", "4321", "/x.gguf")


@pytest.mark.parametrize(("options", "field"), [
    ({"n_ctx": "lots"}, "options.n_ctx"),
    ({"n_gpu_layers": "-2"}, "options.n_gpu_layers"),
    ({"kv_cache_type": "f8"}, "options.kv_cache_type"),
    ({"no_such_option": "1"}, "options.no_such_option"),
    ({"name": "other"}, "options.name"),
    ({"chat_format": "nope"}, "options.chat_format"),
])
def test_bad_options_name_the_option(options, field):
    with pytest.raises(InvalidArgument) as caught:
        ModelConfig.from_options("m", "", options)
    assert caught.value.field == field


def test_models_setting_parses_from_a_json_flag(tmp_path):
    settings = build_settings(LlamaCppSettings, [
        "--models", '[{"name": "tiny", "source": "/m/tiny.gguf", "n_ctx": 256, "n_threads": 1}]',
        "--model-roots", f'["{tmp_path}"]', "--home", str(tmp_path),
    ])
    assert settings.models[0].name == "tiny" and settings.models[0].n_ctx == 256
    assert settings.model_roots == [tmp_path]


def _gguf(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"GGUF" + bytes(60))
    return path


def test_a_path_a_folder_and_a_store_name_resolve_to_the_gguf(tmp_path):
    home = tmp_path / "home"
    direct = _gguf(tmp_path / "direct.gguf")
    in_folder = _gguf(tmp_path / "folder" / "model.gguf")
    stored = _gguf(home / "models" / "trained" / "model-f16.gguf")
    assert locate_gguf(str(direct), home) == direct
    assert locate_gguf(str(in_folder.parent), home) == in_folder
    assert locate_gguf("trained", home) == stored


def test_missing_files_and_names_are_not_found_with_the_path(tmp_path):
    with pytest.raises(NotFound) as caught:
        locate_gguf(str(tmp_path / "absent.gguf"), tmp_path)
    assert str(tmp_path / "absent.gguf") in caught.value.message
    _gguf(tmp_path / "models" / "known" / "model.gguf")
    with pytest.raises(NotFound) as caught:
        locate_gguf("unknown", tmp_path)
    assert "known" in caught.value.message


def test_a_file_that_is_not_gguf_fails_the_precondition_with_path_and_reason(tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"PK\x03\x04 a zip, not a model")
    with pytest.raises(FailedPrecondition) as caught:
        locate_gguf(str(bad), tmp_path)
    assert str(bad) in caught.value.message and "not a GGUF file" in caught.value.message


def test_folders_without_exactly_one_gguf_say_what_to_do(tmp_path):
    hf = tmp_path / "hf-model"
    hf.mkdir()
    (hf / "config.json").write_text("{}")
    with pytest.raises(FailedPrecondition, match="export-gguf"):
        locate_gguf(str(hf), tmp_path)
    _gguf(hf / "a.gguf")
    _gguf(hf / "b.gguf")
    with pytest.raises(FailedPrecondition, match="several"):
        locate_gguf(str(hf), tmp_path)


def test_confined_loads_stay_under_the_store_and_the_allowed_roots(tmp_path):
    home, allowed = tmp_path / "home", tmp_path / "allowed"
    inside = _gguf(allowed / "m.gguf")
    stored = _gguf(home / "models" / "s" / "model.gguf")
    outside = _gguf(tmp_path / "elsewhere" / "m.gguf")
    assert locate_gguf(str(inside), home, roots=[allowed]) == inside
    assert locate_gguf("s", home, roots=[]) == stored
    with pytest.raises(PermissionDenied):
        locate_gguf(str(outside), home, roots=[allowed])
    with pytest.raises(PermissionDenied):
        locate_gguf(str(allowed / ".." / "elsewhere" / "m.gguf"), home, roots=[allowed])


@pytest.mark.parametrize(("value", "kv"), [("true", "f16"), ("false", "f32"), (True, "f16"), (False, "f32")])
def test_llamaforge_f16_kv_maps_onto_its_successor(value, kv):
    assert ModelConfig.model_validate({"name": "m", "f16_kv": value}).kv_cache_type == kv
    if isinstance(value, str):
        assert ModelConfig.from_options("m", "", {"f16_kv": value}).kv_cache_type == kv
