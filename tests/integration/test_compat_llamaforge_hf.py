"""LlamaForge's Hugging Face backend documentation, run through Forgeway: the Backends Guide's usage and the API
Reference's HuggingFaceBackend blocks, unchanged but for the model path (a tiny Llama folder), against a real hf
service behind a gateway. Its parameters travel as LoadModel options: device, torch_dtype, trust_remote_code (the
operator allows it here), cache_dir (under the allowed roots), max_length (LlamaForge's context_length)."""

from __future__ import annotations

import shutil

import grpc
import pytest

from forgeway.client import APIError, Client
from forgeway.testing import InProcessStack

pytestmark = pytest.mark.hf


def cuda() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """(gateway target, root): an hf service (models under root, its code allowed to run) behind a gateway."""
    from forgeway.testing import build_tiny_llama

    root = tmp_path_factory.mktemp("llamaforge-hf")
    tiny = build_tiny_llama(root / "Mistral-7B-Instruct-v0.1", seed=0, context_length=1024)  # 500 tokens fit
    shutil.copytree(tiny, root / "home" / "models" / "stored")  # the service starts with a model in its store

    def hf():
        from forgeway.services.hf.service import HFService
        from forgeway.services.hf.settings import HFSettings

        return HFService(HFSettings(host="127.0.0.1", port=0, metrics_port=-1, home=root / "home", torch_threads=1,
                                    model_roots=[root], allow_remote_code=True))

    with InProcessStack(hf) as running:
        yield running.target, root


@pytest.fixture
def model_path(stack, monkeypatch, tmp_path):
    """The documented "mistralai/Mistral-7B-Instruct-v0.1", here a local folder; LlamaForge() finds the gateway."""
    target, root = stack
    monkeypatch.setenv("FORGEWAY_TARGET", target)
    monkeypatch.setenv("FORGEWAY_HOME", str(tmp_path / "home"))
    return str(root / "Mistral-7B-Instruct-v0.1")


@pytest.fixture
def client(stack):
    with Client(stack[0], timeout=120) as sdk:
        yield sdk


def served(client) -> dict:
    return {m.name: m for m in client.models.list() if m.loaded}


def test_backends_guide_hugging_face_usage(model_path, client):
    from forgeway.compat.llamaforge import LlamaForge

    forge = LlamaForge()
    forge.add_model(
        name="mistral-7b",
        path=model_path,
        backend="huggingface",
        parameters={
            "device": "cuda",
            "torch_dtype": "bfloat16",
            "trust_remote_code": True
        }
    )
    forge.config.save()

    loaded = forge.load_model("mistral-7b")
    if not cuda():  # no GPU here: the documented device is refused, naming it, and nothing is loaded; then the CPU
        assert loaded is False and forge.last_error.code == grpc.StatusCode.FAILED_PRECONDITION
        assert "cuda" in str(forge.last_error) and "mistral-7b" not in served(client)
        assert forge.load_model("mistral-7b", parameters={"device": "cpu"}) is True
    response = forge.generate("Explain quantum computing in simple terms")
    print(response)

    assert isinstance(response, str) and served(client)["mistral-7b"].backend == "hf"
    assert forge.unload_model() is True and "mistral-7b" not in served(client)


def test_api_reference_hugging_face_backend_class(model_path, client, capsys):
    from forgeway.compat.llamaforge.backends.huggingface import HuggingFaceBackend

    backend = HuggingFaceBackend()
    device = "cuda"
    if not cuda():
        with pytest.raises(APIError, match="cuda") as caught:
            backend.load_model(model_path=model_path, parameters={"device": "cuda"})
        assert caught.value.code == grpc.StatusCode.FAILED_PRECONDITION and not backend.is_model_loaded()
        device = "cpu"
    backend.load_model(
        model_path=model_path,
        parameters={
            "device": device,
            "torch_dtype": "bfloat16",
            "trust_remote_code": True
        }
    )

    response = backend.generate(
        prompt="Explain quantum computing in simple terms",
        parameters={
            "temperature": 0.7,
            "top_p": 0.9,
            "max_new_tokens": 500
        }
    )

    for chunk in backend.generate_stream(
        prompt="Explain quantum computing in simple terms",
        parameters={
            "temperature": 0.7,
            "max_new_tokens": 500
        }
    ):
        print(chunk, end="", flush=True)

    assert isinstance(response, str) and backend.get_model_info()["backend"] == "hf"
    greedy = backend.generate("Explain", parameters={"do_sample": False, "max_new_tokens": 6})
    assert backend.generate("Explain", parameters={"do_sample": False, "max_new_tokens": 6}) == greedy
    backend.unload_model()
    assert "Mistral-7B-Instruct-v0.1" not in served(client)


def test_hugging_face_parameters_reach_the_service(model_path, stack, client):
    from forgeway.compat.llamaforge import LlamaForge

    forge = LlamaForge()
    forge.add_model("short", model_path, parameters={"device": "cpu", "context_length": 128,
                                                     "cache_dir": str(stack[1] / "cache")})
    assert forge.config.get_model("short")["backend"] == "huggingface"  # a local transformers folder
    assert forge.load_model("short") is True, forge.last_error
    assert served(client)["short"].context_length == 128  # context_length is the hf service's max_length
    forge.unload_model()

    forge.add_model("elsewhere", model_path, parameters={"device": "cpu", "cache_dir": "/etc"})
    assert forge.load_model("elsewhere") is False and "options.cache_dir" in str(forge.last_error)
    forge.add_model("odd", model_path, parameters={"device": "cpu", "torch_dtype": "int3"})
    assert forge.load_model("odd") is False and "options.torch_dtype" in str(forge.last_error)
    forge.add_model("nowhere", model_path, parameters={"device": "tpu"})
    assert forge.load_model("nowhere") is False and "options.device" in str(forge.last_error)
