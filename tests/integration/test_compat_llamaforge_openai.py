"""LlamaForge's OpenAI backend documentation, run through Forgeway: the Backends Guide's usage and the API Reference's
OpenAIBackend blocks, unchanged but for the API base (a local OpenAI-compatible server, llama-cpp-python's, serving
the tiny GGUF as "gpt-4" and requiring the documented key), against the real OpenAI proxy behind a gateway. The model
is registered on the proxy at run time; its key is a secret: used upstream, never listed or logged."""

from __future__ import annotations

import logging

import pytest

from forgeway.client import Client
from forgeway.testing import LLAMA_CPP_SETTINGS, InProcessStack

pytestmark = pytest.mark.llamacpp

KEY = "your-api-key"


@pytest.fixture(scope="module")
def upstream(tmp_path_factory):
    from forgeway.testing import build_tiny_gguf, build_tiny_llama, start_llama_server

    root = tmp_path_factory.mktemp("llamaforge-openai")
    gguf = build_tiny_gguf(build_tiny_llama(root / "tiny", context_length=4096), root / "gpt-4.gguf")
    server = start_llama_server(gguf, model="gpt-4", api_key=KEY, n_ctx=2048)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def stack(upstream):
    """The OpenAI proxy (its upstream the local server, with the operator's key; the upstream's model configured
    under another name, so that "gpt-4" is LlamaForge's to register) behind a gateway."""
    def proxy():
        from forgeway.services.openai_proxy.servicer import OpenAIProxyService
        from forgeway.services.openai_proxy.settings import OpenAIProxySettings

        return OpenAIProxyService(OpenAIProxySettings(host="127.0.0.1", port=0, metrics_port=-1,
                                                      base_url=upstream.base_url, api_key=KEY,
                                                      models=[{"name": "operator-gpt", "upstream": "gpt-4"}],
                                                      **LLAMA_CPP_SETTINGS))

    with InProcessStack(proxy) as running:
        yield running.target


@pytest.fixture
def environment(stack, monkeypatch, tmp_path):
    monkeypatch.setenv("FORGEWAY_TARGET", stack)
    monkeypatch.setenv("FORGEWAY_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("LLAMAFORGE_OPENAI_API_KEY", raising=False)


@pytest.fixture
def client(stack):
    with Client(stack, timeout=120) as sdk:
        yield sdk


def listed(client) -> dict:
    return {m.name: m for m in client.models.list()}


def test_backends_guide_openai_usage(environment, client, caplog):
    caplog.set_level(logging.DEBUG)
    from forgeway.compat.llamaforge import LlamaForge

    forge = LlamaForge()
    forge.add_model(
        name="gpt-4",
        path="gpt-4",
        backend="openai",
        parameters={
            "api_key": "your-api-key",
            "temperature": 0.7,
            "max_tokens": 1000
        }
    )
    forge.config.save()

    forge.load_model("gpt-4")
    response = forge.generate("Explain quantum computing in simple terms")
    print(response)

    assert forge.last_error is None and isinstance(response, str)
    model = listed(client)["gpt-4"]
    assert model.backend == "openai" and model.loaded and forge.backend.loaded_here  # registered by this call
    assert KEY not in repr(client.models.list()) and KEY not in repr(client.capabilities())
    assert KEY not in caplog.text  # the proxy's and the gateway's logs, in this process
    assert forge.unload_model() is True and "gpt-4" not in listed(client)


def test_api_reference_openai_backend_class(environment, upstream, client):
    from forgeway.compat.llamaforge.backends.openai_api import OpenAIBackend

    backend = OpenAIBackend()
    backend.load_model(
        model_path="gpt-4",
        parameters={
            "api_key": "your-api-key",
            "api_base": upstream.base_url,
            "organization": "your-org-id"
        }
    )

    response = backend.generate(
        prompt="Explain quantum computing in simple terms",
        parameters={
            "temperature": 0.7,
            "max_tokens": 500,
            "presence_penalty": 0.0,
            "frequency_penalty": 0.0
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

    assert isinstance(response, str) and backend.is_model_loaded()
    greedy = backend.generate("Explain", parameters={"temperature": 0.0, "max_tokens": 6})
    assert greedy and backend.generate("Explain", parameters={"temperature": 0.0, "max_tokens": 6}) == greedy
    backend.unload_model()
    assert "gpt-4" not in listed(client)


def test_the_key_can_come_from_llamaforges_environment_and_a_wrong_one_fails(environment, client, monkeypatch):
    from forgeway.compat.llamaforge import LlamaForge

    forge = LlamaForge()
    forge.add_model("gpt-4o-mini-here", "gpt-4")  # backend inferred from the path (gpt-*): openai
    assert forge.config.get_model("gpt-4o-mini-here")["backend"] == "openai"
    monkeypatch.setenv("LLAMAFORGE_OPENAI_API_KEY", KEY)
    assert forge.load_model("gpt-4o-mini-here") is True, forge.last_error
    assert forge.current_model.parameters["api_key"] == KEY
    assert isinstance(forge.generate("Hello", max_tokens=4, temperature=0.0), str)
    assert forge.unload_model() is True

    forge.add_model("wrong-key", "gpt-4", parameters={"api_key": "not-the-key"})
    assert forge.load_model("wrong-key") is False  # the run-time key, not the operator's, goes upstream: refused
    assert "options.api_key" in str(forge.last_error) and "not-the-key" not in str(forge.last_error)
    assert "wrong-key" not in listed(client)
