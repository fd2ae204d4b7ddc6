"""LlamaForge's documentation, run through Forgeway: every llama.cpp and custom-backend code block of its Backends
Guide and Backends API Reference, and the Models guide, unchanged but for paths, against the real llama.cpp service
(a tiny GGUF) and an echo backend behind a real gateway. The package prefix `llamaforge` becomes
`forgeway.compat.llamaforge`; FORGEWAY_TARGET names the gateway and FORGEWAY_HOME holds the configuration."""

from __future__ import annotations

import json

import pytest

from forgeway.client import APIError, Client
from forgeway.testing import inference_stack

pytestmark = pytest.mark.llamacpp

PROMPT = "Explain quantum computing in simple terms"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """(gateway target, root): llama.cpp (GGUFs under root/models, none loaded) and echo behind one gateway."""
    from forgeway.testing import build_tiny_gguf, build_tiny_llama

    root = tmp_path_factory.mktemp("llamaforge")
    tiny = build_tiny_llama(root / "tiny", seed=0, context_length=4096)  # the documented n_ctx and max_tokens fit
    for name in ("llama-2-7b", "other"):
        build_tiny_gguf(tiny, root / "models" / f"{name}.gguf")
    with inference_stack(root) as running:
        yield running.target, root


@pytest.fixture
def gguf(stack, monkeypatch, tmp_path):
    """The documented examples' /path/to/llama-2-7b.gguf; LlamaForge() finds the gateway and a fresh home."""
    target, root = stack
    monkeypatch.setenv("FORGEWAY_TARGET", target)
    monkeypatch.setenv("FORGEWAY_HOME", str(tmp_path / "home"))
    for name in ("LLAMAFORGE_CONFIG", "LLAMAFORGE_DEFAULT_MODEL"):
        monkeypatch.delenv(name, raising=False)
    return str(root / "models" / "llama-2-7b.gguf")


@pytest.fixture
def client(stack):
    with Client(stack[0], timeout=60) as sdk:
        yield sdk


def served(client) -> dict:
    return {m.name: m for m in client.models.list()}


def test_backends_guide_llama_cpp_usage(gguf, client, tmp_path):
    from forgeway.compat.llamaforge import LlamaForge

    forge = LlamaForge()
    forge.add_model(
        name="llama-2-7b",
        path=gguf,
        backend="llama.cpp",
        parameters={
            "n_gpu_layers": 32,  # Number of layers to offload to GPU
            "n_ctx": 4096,       # Context window size
            "temperature": 0.7
        }
    )
    forge.config.save()

    forge.load_model("llama-2-7b")
    response = forge.generate("Explain quantum computing in simple terms")
    print(response)

    saved = json.loads((tmp_path / "home" / "llamaforge" / "config.json").read_text())
    assert saved["models"]["llama-2-7b"] == {"path": gguf, "backend": "llama.cpp", "metadata": {},
                                             "parameters": {"n_gpu_layers": 32, "n_ctx": 4096, "temperature": 0.7}}
    assert isinstance(response, str)
    model = served(client)["llama-2-7b"]
    assert model.loaded and model.backend == "llamacpp" and model.context_length == 4096
    assert forge.unload_model() is True and "llama-2-7b" not in served(client)


def test_api_reference_using_backends_then_the_same_model_reopened(gguf, client):
    from forgeway.compat.llamaforge import LlamaForge

    forge = LlamaForge()

    # Add a model with a specific backend
    forge.add_model(
        name="llama-2-7b",
        path=gguf,
        backend="llama.cpp",
        parameters={
            "n_gpu_layers": 32
        }
    )

    # Load the model (uses the specified backend)
    forge.load_model("llama-2-7b")

    # Generate text (uses the loaded backend)
    response = forge.generate("Explain quantum computing in simple terms")

    assert isinstance(response, str) and forge.current_model.name == "llama-2-7b" and forge.backend.name == "llama.cpp"
    greedy = forge.generate(PROMPT, temperature=0.0, max_tokens=8)
    assert "".join(forge.generate_stream(PROMPT, temperature=0.0, max_tokens=8)) == greedy
    assert forge.generate(PROMPT, temperature=0.0, max_tokens=2) != greedy
    with pytest.raises(ValueError, match="name: a model named 'llama-2-7b' already exists"):
        forge.add_model("llama-2-7b", "elsewhere.gguf")
    forge.config.save()
    again = LlamaForge()  # the saved configuration is the source; the model Forgeway serves is used as it is
    assert again.load_model("llama-2-7b") is True and again.backend.loaded_here is False
    assert again.unload_model() is True and "llama-2-7b" in served(client)  # not its own to unload
    assert forge.unload_model() is True and "llama-2-7b" not in served(client)
    with pytest.raises(ValueError, match="No model loaded"):
        forge.generate("hi")


def test_api_reference_backends_accessed_directly(gguf, client):
    from forgeway.compat.llamaforge.backends import get_backend

    # Get a backend class
    llama_cpp_backend_class = get_backend("llama.cpp")

    # Instantiate the backend
    backend = llama_cpp_backend_class()

    # Load a model
    backend.load_model(gguf, parameters={
        "n_gpu_layers": 32,
        "n_ctx": 4096
    })

    # Generate text
    response = backend.generate("Explain quantum computing in simple terms", parameters={
        "temperature": 0.7,
        "max_tokens": 500
    })

    assert isinstance(response, str) and backend.is_model_loaded()
    assert backend.get_model_info()["name"] == "llama-2-7b" and served(client)["llama-2-7b"].loaded
    backend.unload_model()
    assert not backend.is_model_loaded() and "llama-2-7b" not in served(client)


def test_api_reference_llama_cpp_backend_class(gguf, client):
    from forgeway.compat.llamaforge.backends.llama_cpp import LlamaCppBackend

    backend = LlamaCppBackend()
    backend.load_model(
        model_path=gguf,
        parameters={
            "n_gpu_layers": 32,
            "n_ctx": 4096,
            "f16_kv": True
        }
    )

    response = backend.generate(
        prompt="Explain quantum computing in simple terms",
        parameters={
            "temperature": 0.7,
            "top_p": 0.9,
            "top_k": 40,
            "max_tokens": 500
        }
    )

    for chunk in backend.generate_stream(
        prompt="Explain quantum computing in simple terms",
        parameters={
            "temperature": 0.7,
            "max_tokens": 500
        }
    ):
        print(chunk, end="", flush=True)

    assert isinstance(response, str) and served(client)["llama-2-7b"].backend == "llamacpp"
    backend.unload_model()


def test_models_guide_add_load_with_parameters_and_remove(gguf, stack, client):
    from forgeway.compat.llamaforge import LlamaForge

    forge = LlamaForge()

    # Add a llama.cpp model
    forge.add_model(
        name="llama-2-7b",
        path=gguf,
        backend="llama.cpp",
        parameters={
            "context_length": 2048,
            "temperature": 0.7,
            "top_p": 0.9
        }
    )
    forge.config.save()

    forge.load_model("llama-2-7b", parameters={
        "temperature": 0.5,
        "top_p": 0.95
    })

    assert forge.current_model.parameters["temperature"] == 0.5 and forge.current_model.parameters["top_p"] == 0.95
    listed = forge.list_models()  # configured, then the files of the model directories, then what Forgeway serves
    assert listed[0] == "llama-2-7b" and "echo" in listed
    forge.unload_model()

    assert forge.load_model("llama-2-7b", parameters={"context_length": 256}) is True
    assert served(client)["llama-2-7b"].context_length == 256  # context_length is llama.cpp's n_ctx
    forge.unload_model()

    forge.remove_model("llama-2-7b")
    forge.config.save()
    assert LlamaForge().config.list_models() == []

    # a path alone: the backend follows from it, the model is served under the file's name
    assert forge.load_model(str(stack[1] / "models" / "other.gguf")) is True
    assert served(client)["other"].backend == "llamacpp" and forge.backend.name == "llama.cpp"
    assert forge.unload_model() is True


def test_failures_return_false_and_keep_the_typed_error(gguf, stack):
    from forgeway.compat.llamaforge import LlamaForge

    forge = LlamaForge()
    forge.add_model("missing", str(stack[1] / "models" / "missing.gguf"), backend="llama.cpp")
    assert forge.load_model("missing") is False and isinstance(forge.last_error, APIError)
    assert forge.current_model is None
    forge.add_model("strange", "x", backend="no-such-backend")
    assert forge.load_model("strange") is False and "not available" in str(forge.last_error)
    forge.add_model("typo", gguf, parameters={"colour": "red"})  # an unknown load option: the service names it
    assert forge.load_model("typo") is False and "colour" in str(forge.last_error)
    assert forge.load_model("nothing-by-that-name") is False
    assert "not found in the configuration" in str(forge.last_error)


def test_a_served_model_gets_the_generation_defaults_it_honours(gguf, client):
    from forgeway.compat.llamaforge import LlamaForge

    forge = LlamaForge()
    assert forge.load_model("echo") is True  # served by the echo backend: nothing to load
    # echo honours no sampling parameter, so only the configuration's max_tokens (256) applies: it cycles the words
    assert forge.generate(" hello from llamaforge").split() == ["hello", "from", "llamaforge"] * 85 + ["hello"]
    assert forge.generate("hello from llamaforge", max_tokens=3) == "hello from llamaforge"
    assert "".join(forge.generate_stream("a b c", max_tokens=3)) == "a b c"
    with pytest.raises(APIError, match="temperature"):  # given by the caller: sent, and refused by the backend
        forge.generate("x", temperature=0.3)
    with pytest.raises(ValueError, match="unknown generation parameters: colour"):
        forge.generate("x", colour="red")
    forge.config.set("generation.max_tokens", 2)
    assert forge.generate("one two three") == "one two"
    assert forge.unload_model() is True and "echo" in served(client)  # not ours to unload


def test_the_default_model_loads_when_llamaforge_starts(gguf, monkeypatch):
    from forgeway.compat.llamaforge import LlamaForge

    monkeypatch.setenv("LLAMAFORGE_DEFAULT_MODEL", "echo")
    forge = LlamaForge()
    assert forge.current_model.name == "echo" and forge.generate("a b", max_tokens=2) == "a b"


# --- custom backends (Backends API Reference, "Creating Custom Backends" and "Backend Registry")

def load_your_model(model_path, **parameters):
    return {"path": model_path, **parameters}


def your_generation_function(model, prompt, **parameters):
    return f"{model['custom_param']}: {prompt[::-1]}"


def your_streaming_function(model, prompt, **parameters):
    yield from your_generation_function(model, prompt, **parameters).split(" ")


from forgeway.compat.llamaforge.backends.base import BaseBackend  # noqa: E402


class MyCustomBackend(BaseBackend):
    """A custom backend implementation."""

    def __init__(self):
        super().__init__()
        self.model = None

    def load_model(self, model_path, parameters=None):
        """Load a model from the given path with the given parameters."""
        parameters = parameters or {}
        # Implement model loading logic
        self.model = load_your_model(model_path, **parameters)

    def generate(self, prompt, parameters=None):
        """Generate text from the given prompt with the given parameters."""
        if self.model is None:
            raise RuntimeError("No model loaded")

        parameters = parameters or {}
        # Implement text generation logic
        return your_generation_function(self.model, prompt, **parameters)

    def generate_stream(self, prompt, parameters=None):
        """Stream generated text from the given prompt with the given parameters."""
        if self.model is None:
            raise RuntimeError("No model loaded")

        parameters = parameters or {}
        # Implement streaming text generation logic
        for chunk in your_streaming_function(self.model, prompt, **parameters):
            yield chunk

    def is_model_loaded(self):
        """Check if a model is loaded."""
        return self.model is not None


def test_api_reference_custom_backend_registered_and_used(gguf):
    from forgeway.compat.llamaforge.backends import register_backend

    register_backend("my_custom", MyCustomBackend)

    from forgeway.compat.llamaforge import LlamaForge

    forge = LlamaForge()
    forge.add_model(
        name="my-model",
        path="/path/to/my-model",
        backend="my_custom",
        parameters={
            "custom_param": "value"
        }
    )

    assert forge.load_model("my-model") is True and forge.backend.is_model_loaded()
    assert forge.backend.model == {"path": "/path/to/my-model", "custom_param": "value"}
    assert forge.generate("abc") == "value: cba" and list(forge.generate_stream("ab cd")) == ["value:", "dc", "ba"]


def test_api_reference_backend_registry():
    from forgeway.compat.llamaforge.backends import get_backend, list_backends, register_backend

    # Register a backend
    register_backend("my_custom", MyCustomBackend)

    # Get a backend class
    backend_class = get_backend("my_custom")

    # List all available backends
    available_backends = list_backends()  # ["llama.cpp", "huggingface", "openai", "my_custom"]

    assert backend_class is MyCustomBackend
    assert available_backends[:3] == ["llama.cpp", "huggingface", "openai"] and "my_custom" in available_backends


def test_backends_guide_custom_backend_registered():
    from forgeway.compat.llamaforge.backends.base import BaseBackend

    class MyCustomBackend(BaseBackend):
        def load_model(self, model_path, parameters=None):
            # Implementation here
            pass

        def generate(self, prompt, parameters=None):
            # Implementation here
            pass

        def generate_stream(self, prompt, parameters=None):
            # Implementation here
            yield "Streaming response"

        def is_model_loaded(self):
            # Implementation here
            return True

    from forgeway.compat.llamaforge.backends import register_backend

    register_backend("my_custom", MyCustomBackend)

    from forgeway.compat.llamaforge.backends import get_backend

    assert get_backend("my_custom") is MyCustomBackend
    register_backend("my_custom", globals()["MyCustomBackend"])  # the API Reference's, for the tests after this one
