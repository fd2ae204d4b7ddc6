"""Settings of the OpenAI proxy: FORGEWAY_OPENAI_* environment, the secret key, bad values, declared features."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from forgeway.cli import main
from forgeway.services.openai_proxy.engine import OpenAIProxyEngine
from forgeway.services.openai_proxy.settings import OpenAIProxySettings
from forgeway.server import registry
from forgeway.server.settings import SettingsError, build_settings

KEY = "sk-settings-0a1b2c3d4e5f"


def test_registered_as_openai():
    assert registry.load("openai").Engine is OpenAIProxyEngine


def test_openai_settings_come_from_forgeway_openai_env(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("FORGEWAY_OPENAI_API_KEY", KEY)
    monkeypatch.setenv("FORGEWAY_OPENAI_BASE_URL", "http://127.0.0.1:8000/v1/")
    monkeypatch.setenv("API_KEY", "not-this-one")
    monkeypatch.setenv("FORGEWAY_PORT", "6000")
    settings = build_settings(OpenAIProxySettings, ["--timeout-seconds", "5"])
    assert settings.read_api_key() == KEY
    assert settings.base_url == "http://127.0.0.1:8000/v1"
    assert settings.port == 6000 and settings.timeout_seconds == 5
    assert KEY not in repr(settings) and KEY not in settings.model_dump_json()


def test_flags_and_yaml(tmp_path: Path):
    config = tmp_path / "openai.yaml"
    config.write_text("base_url: https://llm.internal/v1\nmodels:\n  - name: small\n    upstream: org/small-7b\n")
    models = json.dumps([{"name": "big", "aliases": ["large"], "chat": True, "prompt": False}])
    settings = build_settings(OpenAIProxySettings, ["--config", str(config), "--models", models])
    assert settings.base_url == "https://llm.internal/v1"
    got = [(m.name, m.upstream_name, m.aliases, m.prompt) for m in settings.models]
    assert got == [("big", "big", ["large"], False)]
    from_yaml = build_settings(OpenAIProxySettings, ["--config", str(config)])
    assert from_yaml.models[0].upstream_name == "org/small-7b"


def test_the_key_file_is_read_and_stripped(tmp_path: Path):
    key_file = tmp_path / "key"
    key_file.write_text(f"{KEY}\n")
    assert OpenAIProxySettings(api_key_file=key_file).read_api_key() == KEY
    assert OpenAIProxySettings().read_api_key() == ""


@pytest.mark.parametrize(
    "argv, complaint",
    [
        (["--base-url", "ftp://example.com"], "base_url"),
        (["--base-url", "localhost:8000"], "base_url"),
        (["--base-url", "https://user:pass@example.com/v1"], "credentials"),
        (["--api-key", KEY, "--api-key-file", "/etc/hostname"], "not both"),
        (["--api-key-file", "/no/such/key"], "no such file"),
        (["--extra-body-params", '{"top_q": "x"}'], "top_q"),
        (["--models", '[{"name": "a"}, {"name": "b", "aliases": ["a"]}]'], "used twice"),
        (["--structured-output", "xml"], "structured_output"),
    ],
)
def test_bad_settings_name_the_setting(argv: list[str], complaint: str):
    with pytest.raises(SettingsError) as caught:
        build_settings(OpenAIProxySettings, argv)
    assert complaint in str(caught.value)
    assert KEY not in str(caught.value)


def test_a_malformed_base_url_exits_2_with_one_line(capsys: pytest.CaptureFixture):
    assert main(["serve", "openai", "--base-url", "not a url"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "base_url" in err


def test_declared_features_follow_the_settings():
    default = OpenAIProxyEngine(OpenAIProxySettings()).features()
    assert default.streaming and default.stop and default.logprobs and default.seed and default.json_schema
    assert default.multiple_choices and not default.grammar and not default.adapters
    assert default.sampling_params == {"temperature", "top_p", "presence_penalty", "frequency_penalty"}
    vllm = OpenAIProxyEngine(OpenAIProxySettings(
        extra_body_params={"top_k": "top_k", "min_p": "min_p", "repetition_penalty": "repetition_penalty"},
        structured_output="none", logprobs=False)).features()  # fmt: skip
    assert {"top_k", "min_p", "repetition_penalty"} <= vllm.sampling_params
    assert not vllm.json_schema and not vllm.logprobs and not vllm.grammar


async def test_not_ready_before_the_upstream_answered():
    engine = OpenAIProxyEngine(OpenAIProxySettings(models=[{"name": "m"}]))
    assert not engine.ready
    assert [m.name for m in engine.models()] == ["m"]
    await engine.stop()
