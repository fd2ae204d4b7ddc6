"""LlamaForge's CLI verbs on `forgeway`, as subprocesses: config get/set/init on LlamaForge's file, the calculator."""

from __future__ import annotations

import json

from forgeway.testing import one_line_error, run_cli


def test_config_init_get_set(tmp_path):
    path = tmp_path / "config.json"
    config = ("--config", str(path))
    assert run_cli(*config, "config", "init").returncode == 0
    assert json.loads(path.read_text())["generation"]["temperature"] == 0.7
    assert run_cli(*config, "config", "get", "generation.temperature").stdout == "0.7\n"
    assert run_cli(*config, "config", "set", "generation.temperature", "0.2").returncode == 0
    assert run_cli(*config, "config", "set", "server.name", "my box").returncode == 0
    written = json.loads(path.read_text())
    assert written["generation"]["temperature"] == 0.2 and written["server"]["name"] == "my box"
    assert "generation.temperature" not in written  # a dotted key is a path, not a literal key
    section = json.loads(run_cli(*config, "config", "get", "generation").stdout)
    assert section["temperature"] == 0.2 and section["max_tokens"] == 256


def test_config_reads_llamaforge_config_from_the_environment(tmp_path):
    path = tmp_path / "env-config.json"
    path.write_text(json.dumps({"default_model": "from-file"}))
    got = run_cli("config", "get", "default_model", env={"LLAMAFORGE_CONFIG": str(path)})
    assert got.stdout == "from-file\n"
    overridden = run_cli("config", "get", "default_model",
                         env={"LLAMAFORGE_CONFIG": str(path), "LLAMAFORGE_DEFAULT_MODEL": "from-env"})
    assert overridden.stdout == "from-env\n"


def test_config_get_of_a_missing_key_fails(tmp_path):
    missing = run_cli("--config", str(tmp_path / "c.json"), "config", "get", "no.such.key")
    assert missing.returncode == 1 and missing.stdout == "None\n"
    usage = run_cli("config", "frob")
    assert usage.returncode == 2 and "frob" in usage.stderr


def test_calculator_evaluates_llamaforges_expressions():
    result = run_cli("tools", "calculator", "sqrt(16) + 2^3")
    assert (result.returncode, result.stdout) == (0, "12\n")
    assert run_cli("tools", "calculator", "calculate: (1 + 2) * pi / pi / 4").stdout == "0.75\n"


def test_calculator_refuses_code():
    refused = run_cli("tools", "calculator", "__import__('os')")
    assert refused.returncode == 1 and "'__import__' is not allowed" in one_line_error(refused)
    attribute = run_cli("tools", "calculator", "(1).__class__")
    assert attribute.returncode == 1 and "cannot evaluate" in one_line_error(attribute)
