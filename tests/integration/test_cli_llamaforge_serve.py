"""LlamaForge's `serve --host --port --model` as a real process: the local stack comes up with its OpenAI HTTP API on
that port and the model from LlamaForge's config loaded through the gateway; Ctrl-C stops it all."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import openai
import pytest

from forgeway.server.ports import free_port
from forgeway.testing import build_tiny_gguf, build_tiny_llama

pytestmark = [pytest.mark.llamacpp, pytest.mark.slow]


def test_serve_brings_up_the_http_api_with_the_configured_model(tmp_path):
    home = tmp_path / "home"
    gguf = build_tiny_gguf(build_tiny_llama(tmp_path / "tiny", seed=0), home / "models" / "tiny.gguf")
    config = tmp_path / "llamaforge.json"
    config.write_text(json.dumps({"models": {"tiny": {"path": str(gguf), "backend": "llama.cpp",
                                                      "parameters": {"n_ctx": 256, "n_threads": 1}}}}))
    port = free_port("127.0.0.1")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "FORGEWAY_HOME": str(home), "FORGEWAY_UP_SERVICES": "llamacpp,gateway",
           "FORGEWAY_UP_SERVICE_ARGS": "{}", "FORGEWAY_UP_PORTS": json.dumps({"llamacpp": 0, "gateway": 0})}
    process = subprocess.Popen([sys.executable, "-m", "forgeway.cli", "--config", str(config), "serve", "--host",
                                "127.0.0.1", "--port", str(port), "--model", "tiny"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                               start_new_session=True)
    try:
        lines = []
        for line in process.stdout:  # the addresses table, then the preloaded model
            lines.append(line)
            if line.startswith("serving tiny"):
                break
        assert lines and lines[-1] == f"serving tiny on http://127.0.0.1:{port}/v1\n", (lines, process.poll())
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0)
        assert "tiny" in [m.id for m in client.models.list()]
        completion = client.completions.create(model="tiny", prompt="once upon a time", max_tokens=3, temperature=0)
        assert completion.usage.completion_tokens <= 3 and completion.model == "tiny"
    finally:
        os.killpg(process.pid, signal.SIGINT)
        code = process.wait(120)
    assert code == 0, process.stderr.read()[-2000:]


def test_serve_stops_with_an_error_when_the_model_cannot_load(tmp_path):
    config = tmp_path / "llamaforge.json"
    config.write_text(json.dumps({"models": {"ghost": {"path": str(tmp_path / "missing.gguf"),
                                                       "backend": "llama.cpp"}}}))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "FORGEWAY_HOME": str(tmp_path / "home"),
           "FORGEWAY_UP_SERVICES": "echo,gateway", "FORGEWAY_UP_PORTS": json.dumps({"echo": 0, "gateway": 0})}
    result = subprocess.run([sys.executable, "-m", "forgeway.cli", "--config", str(config), "serve", "--port",
                             str(free_port("127.0.0.1")), "--model", "ghost"],
                            capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 1 and "cannot load 'ghost'" in result.stderr, result.stderr[-2000:]
