"""Settings: flags over FORGEWAY_* env over the YAML file over defaults; bad input is one line naming the setting."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from forgeway.services.echo.engine import EchoSettings
from forgeway.server.settings import SettingsError, build_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No FORGEWAY_* variable from the calling shell leaks into these tests."""
    for name in list(os.environ):
        if name.startswith("FORGEWAY_"):
            monkeypatch.delenv(name)


def yaml_file(tmp_path: Path, text: str) -> str:
    path = tmp_path / "service.yaml"
    path.write_text(text)
    return str(path)


def test_precedence_flags_env_yaml_defaults(tmp_path, monkeypatch):
    config = yaml_file(tmp_path, "port: 1111\nmetrics_port: 2222\nlog_level: DEBUG\ntoken_delay: 0.5\n")
    monkeypatch.setenv("FORGEWAY_PORT", "3333")
    monkeypatch.setenv("FORGEWAY_METRICS_PORT", "4444")
    settings = build_settings(EchoSettings, ["--config", config, "--port", "5555"])
    assert settings.port == 5555  # flag beats env and YAML
    assert settings.metrics_port == 4444  # env beats YAML
    assert settings.log_level == "DEBUG"  # YAML beats the default
    assert settings.token_delay == 0.5  # a subclass's own field, from YAML
    assert settings.grace_seconds == 10.0  # the default
    assert settings.model_name == "echo"


def test_env_alone_and_flag_spelling(monkeypatch):
    monkeypatch.setenv("FORGEWAY_GRACE_SECONDS", "2.5")
    settings = build_settings(EchoSettings, ["--model-name", "parrot", "--metrics-port=-1"])
    assert settings.grace_seconds == 2.5
    assert settings.model_name == "parrot"
    assert settings.metrics_port == -1


def test_defaults_without_any_source():
    settings = build_settings(EchoSettings, [])
    assert (settings.host, settings.port, settings.log_format) == ("127.0.0.1", 50051, "json")
    assert settings.instance_id and settings.instance_id != build_settings(EchoSettings, []).instance_id


def one_line_error(argv: list[str]) -> str:
    with pytest.raises(SettingsError) as caught:
        build_settings(EchoSettings, argv)
    message = str(caught.value)
    assert "\n" not in message, message
    return message


@pytest.mark.parametrize(
    ("argv", "setting"),
    [
        (["--port", "notanumber"], "port"),
        (["--port", "70000"], "port"),
        (["--metrics-port=-2"], "metrics_port"),
        (["--log-level", "LOUD"], "log_level"),
        (["--token-delay", "-1"], "token_delay"),
        (["--nope", "1"], "--nope"),  # an unknown flag
        (["--port"], "--port"),  # a flag without its value
    ],
)
def test_bad_flag_names_the_setting(argv, setting):
    assert setting in one_line_error(argv)


def test_bad_env_value_names_the_setting(monkeypatch):
    monkeypatch.setenv("FORGEWAY_GRACE_SECONDS", "-1")
    assert "grace_seconds" in one_line_error([])


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("prot: 1\n", "prot"),  # a misspelt key is rejected, not ignored
        ("log_level: LOUD\n", "log_level"),
        ("port: [\n", "--config"),  # not YAML
        ("- port\n- 1\n", "--config"),  # YAML, but not a mapping
    ],
)
def test_bad_yaml_names_the_setting(tmp_path, text, named):
    assert named in one_line_error(["--config", yaml_file(tmp_path, text)])


def test_missing_config_file_is_an_error(tmp_path):
    assert "--config" in one_line_error(["--config", str(tmp_path / "absent.yaml")])
