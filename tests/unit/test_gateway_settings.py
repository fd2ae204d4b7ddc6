"""Gateway settings: the forms backends come in, and bad config refused with the key named."""

from __future__ import annotations

import subprocess
import sys

import pytest
from pydantic import ValidationError

from forgeway.gateway.settings import GatewaySettings


def test_backends_as_list_strings_or_the_mapping_forgeway_up_passes(monkeypatch):
    s = GatewaySettings(backends=["127.0.0.1:5000", {"name": "hf", "address": "dns:///hf.ns.svc:50061", "kind": "hf"}])
    assert [(b.label, b.kind) for b in s.backends] == [("127.0.0.1:5000", ""), ("hf", "hf")]
    monkeypatch.setenv("FORGEWAY_BACKENDS", '{"echo": "127.0.0.1:50069"}')
    assert [(b.name, b.address) for b in GatewaySettings().backends] == [("echo", "127.0.0.1:50069")]


@pytest.mark.parametrize("settings, message", [
    ({"backends": ["no-port"]}, "not host:port"),
    ({"backends": ["a:1", {"name": "a:1", "address": "b:2"}]}, "duplicate backend names"),
    ({"model_aliases": {"a": "b", "b": "a"}}, "cycle a -> b -> a"),
    ({"api_keys": [{"name": "k", "sha256": "sk-plaintext"}]}, "64 hex digits"),
    ({"backends": [{"address": "a:1", "tls": {"cert_file": "c.pem"}}]}, "cert_file and key_file go together"),
    ({"model_groups": {"g": []}}, "group 'g' has no models"),
])
def test_invalid_settings_name_the_problem(settings, message):
    with pytest.raises(ValidationError, match=message):
        GatewaySettings(**settings)


def test_serve_gateway_with_a_bad_config_exits_2_naming_the_key(tmp_path):
    config = tmp_path / "forgeway.yaml"
    config.write_text("backends:\n  - address: localhost:50061\nbreaker:\n  failure_threshold: 0\n")
    done = subprocess.run([sys.executable, "-m", "forgeway.cli", "serve", "gateway", "--config", str(config)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "breaker.failure_threshold" in done.stderr, done.stderr


def test_tls_files_must_exist(tmp_path):
    with pytest.raises(ValidationError, match="ca_file: no such file"):
        GatewaySettings(backends=[{"address": "a:1", "tls": {"ca_file": str(tmp_path / "missing.pem")}}])
