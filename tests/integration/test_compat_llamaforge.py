"""LlamaForge's documented examples, adapted to a tiny GGUF, running through Forgeway: the real llama.cpp service
and an echo backend behind a real gateway; plus a custom in-process backend via register_backend."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest


from forgeway.client import APIError, Client  # noqa: E402
from forgeway.testing import inference_stack  # noqa: E402
from forgeway.compat.llamaforge import BaseBackend, LlamaForge, get_backend, list_backends, register_backend  # noqa: E402

pytestmark = pytest.mark.llamacpp


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """(gateway target, root with models/tiny.gguf): llama.cpp (no model loaded) and echo behind one gateway."""
    from forgeway.testing import build_tiny_gguf, build_tiny_llama

    root = tmp_path_factory.mktemp("llamaforge")
    build_tiny_gguf(build_tiny_llama(root / "models" / "tiny", seed=0), root / "models" / "tiny.gguf")
    with inference_stack(root) as running:
        yield running.target, root


@pytest.fixture
def client(stack):
    with Client(stack[0], timeout=60) as sdk:
        yield sdk


def test_the_documented_llama_cpp_example(stack, client):
    target, root = stack
    config_path = root / "llamaforge.json"
    forge = LlamaForge(config_path=config_path, client=client)
    forge.add_model(name="tiny-llama", path=str(root / "models" / "tiny.gguf"), backend="llama.cpp",
                    parameters={"n_gpu_layers": 0, "n_ctx": 256, "temperature": 0.0, "max_tokens": 8})
    forge.config.save()
    saved = json.loads(config_path.read_text())
    assert saved["models"]["tiny-llama"]["backend"] == "llama.cpp"
    assert saved["models"]["tiny-llama"]["parameters"]["n_ctx"] == 256
    with pytest.raises(ValueError, match="already exists"):
        forge.add_model("tiny-llama", "elsewhere.gguf")

    reopened = LlamaForge(config_path=config_path, client=client)  # the saved configuration is the source
    assert "tiny-llama" in reopened.list_models()
    assert reopened.load_model("tiny-llama") is True
    assert reopened.current_model.name == "tiny-llama" and reopened.backend.name == "llamacpp"
    served = {m.name: m for m in client.models.list()}
    assert served["tiny-llama"].loaded and served["tiny-llama"].backend == "llamacpp"
    text = reopened.generate("Explain quantum computing in simple terms")
    assert isinstance(text, str) and text
    chunks = list(reopened.generate_stream("Explain quantum computing in simple terms"))
    assert len(chunks) >= 1 and "".join(chunks) == text  # greedy (temperature 0 from the model's parameters)
    assert reopened.generate("Explain quantum computing", max_tokens=2) != text
    assert reopened.unload_model() is True and reopened.current_model is None
    assert "tiny-llama" not in {m.name for m in client.models.list()}
    with pytest.raises(ValueError, match="No model loaded"):
        reopened.generate("hi")


def test_failures_return_false_and_keep_the_typed_error(stack, client):
    _, root = stack
    forge = LlamaForge(config_path=root / "failures.json", client=client)
    forge.add_model("missing", str(root / "models" / "missing.gguf"), backend="llama.cpp")
    assert forge.load_model("missing") is False and isinstance(forge.last_error, APIError)
    assert forge.current_model is None
    forge.add_model("strange", "x", backend="no-such-backend")
    assert forge.load_model("strange") is False and "not available" in str(forge.last_error)


def test_a_model_forgeway_already_serves(stack, client):
    _, root = stack
    forge = LlamaForge(config_path=root / "served.json", client=client)
    assert forge.load_model("echo") is True  # served by the echo backend: nothing to load
    assert forge.generate("hello from llamaforge") == "hello from llamaforge"
    assert "".join(forge.generate_stream("a b c")) == "a b c"
    with pytest.raises(ValueError, match="unknown generation parameters: colour"):
        forge.generate("x", colour="red")
    assert forge.unload_model() is True and "echo" in {m.name for m in client.models.list()}  # not ours to unload


class Reverser(BaseBackend):
    """A custom backend in this process: answers with the prompt reversed."""

    name = "reverser"

    def __init__(self):
        self.loaded = None

    def load_model(self, model_path, parameters=None):
        self.loaded = (model_path, parameters)

    def generate(self, prompt, parameters=None):
        return prompt[::-1]

    def generate_stream(self, prompt, parameters=None) -> Iterator[str]:
        yield from prompt[::-1]

    def is_model_loaded(self):
        return self.loaded is not None


def test_register_backend_for_a_custom_backend(stack, client):
    _, root = stack
    register_backend("reverser", Reverser)
    assert get_backend("reverser") is Reverser and "reverser" in list_backends()
    forge = LlamaForge(config_path=root / "custom.json", client=client)
    forge.add_model("mine", "/models/mine", backend="reverser", parameters={"custom_param": "value"})
    assert forge.load_model("mine") is True
    assert forge.backend.loaded == ("/models/mine", {"custom_param": "value"})
    assert forge.generate("abc") == "cba" and list(forge.generate_stream("ab")) == ["b", "a"]
    with pytest.raises(TypeError):
        register_backend("bad", object)
