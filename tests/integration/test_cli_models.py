"""`forgeway models load|list|unload` and generating from the loaded model, as subprocesses, against the real
llama.cpp service behind a real gateway."""

from __future__ import annotations

import json

import pytest


from forgeway.testing import inference_stack, one_line_error, run_cli  # noqa: E402

pytestmark = pytest.mark.llamacpp


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    from forgeway.testing import build_tiny_gguf, build_tiny_llama

    root = tmp_path_factory.mktemp("cli-models")
    build_tiny_gguf(build_tiny_llama(root / "models" / "tiny", seed=0), root / "models" / "tiny.gguf")
    with inference_stack(root) as running:
        yield running


def cli(stack, *args: str):
    return run_cli(*args, "--target", stack.target)


def test_load_generate_unload(stack):
    gguf = str(stack.root / "models" / "tiny.gguf")
    loaded = cli(stack, "models", "load", "tiny", gguf, "--backend", "llamacpp", "-o", "n_ctx=256", "-o", "n_threads=1")
    assert loaded.returncode == 0 and loaded.stdout == "loaded tiny on llamacpp\n", loaded.stderr
    models = {m["name"]: m for m in json.loads(cli(stack, "models", "list", "--json").stdout)}
    tiny = models["tiny"]
    assert tiny["backend"] == "llamacpp" and tiny["loaded"] and tiny["context_length"] == 256
    assert "echo" in models
    generated = cli(stack, "generate", "-m", "tiny", "once upon a time", "--max-tokens", "4", "--temperature", "0",
                    "--json")
    result = json.loads(generated.stdout)
    assert result["usage"]["completion_tokens"] <= 4 and result["served_by"].startswith("llamacpp/")
    rows = {r["backend"]: r for r in json.loads(cli(stack, "backends", "--json").stdout)}
    assert "tiny" in rows["llamacpp"]["models"]
    again = cli(stack, "models", "load", "tiny", gguf, "--backend", "llamacpp")
    assert again.returncode == 1 and "is taken" in one_line_error(again)
    unloaded = cli(stack, "models", "unload", "tiny")
    assert unloaded.returncode == 0 and unloaded.stdout == "unloaded tiny\n"
    gone = cli(stack, "generate", "-m", "tiny", "x")
    assert gone.returncode == 1 and "not found" in one_line_error(gone)


def test_load_errors_are_one_line(stack):
    outside = cli(stack, "models", "load", "evil", "/etc/passwd", "--backend", "llamacpp")
    assert outside.returncode == 1 and "evil" not in {m for m in cli(stack, "models", "list").stdout.split()}
    assert one_line_error(outside)
    wrong_kind = cli(stack, "models", "load", "x", "y", "--backend", "vllm")
    assert wrong_kind.returncode == 1 and "options.backend" in one_line_error(wrong_kind)
    bad_option = cli(stack, "models", "load", "x", str(stack.root / "models" / "tiny.gguf"), "--backend", "llamacpp",
                     "-o", "n_ctx=lots")
    assert bad_option.returncode == 1 and "n_ctx" in one_line_error(bad_option)
