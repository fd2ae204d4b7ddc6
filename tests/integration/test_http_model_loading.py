"""POST /v1/models/{id} loads a model and DELETE unloads it (LlamaForge's server loads with POST), through the HTTP
shim of a real gateway with API keys in front of a real llama.cpp service: only a key that may manage models may."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import httpx
import openai
import pytest

from forgeway.gateway.http.app import create_app
from forgeway.gateway.http.serve import BackgroundServer
from forgeway.testing import build_tiny_gguf, build_tiny_llama, inference_stack
from forgeway.testing.gateway import gateway_settings, start_gateway, stop_now

pytestmark = pytest.mark.llamacpp

ADMIN, USER = "admin-key", "user-key"


def key(name: str, secret: str, train: bool) -> dict:
    return {"name": name, "sha256": hashlib.sha256(secret.encode()).hexdigest(), "train": train}


@pytest.fixture(scope="module")
def shim(tmp_path_factory) -> Iterator[tuple[str, str]]:
    root = tmp_path_factory.mktemp("http-models")
    gguf = build_tiny_gguf(build_tiny_llama(root / "models" / "tiny", seed=0), root / "models" / "tiny.gguf")
    with inference_stack(root, gateway=False) as services:
        gateway = services.loop.run(start_gateway(gateway_settings(
            services.addresses, api_keys=[key("admin", ADMIN, True), key("user", USER, False)])))
        try:
            with BackgroundServer(create_app(f"127.0.0.1:{gateway.port}")) as server:
                yield server.url, str(gguf)
        finally:
            services.loop.run(stop_now(gateway))


def call(method: str, url: str, secret: str | None, **kwargs) -> httpx.Response:
    headers = {"authorization": f"Bearer {secret}"} if secret else {}
    return httpx.request(method, url, headers=headers, timeout=120, **kwargs)


def test_post_loads_delete_unloads(shim):
    url, gguf = shim
    body = {"source": gguf, "backend": "llamacpp", "options": {"n_ctx": 256, "n_threads": 1}}
    loaded = call("POST", f"{url}/v1/models/tiny", ADMIN, json=body)
    assert loaded.status_code == 200, loaded.text
    entry = loaded.json()
    assert entry["id"] == "tiny" and entry["status"] == "loaded" and entry["backend"] == "llamacpp"
    assert entry["context_length"] == 256

    sdk = openai.OpenAI(base_url=f"{url}/v1", api_key=USER, max_retries=0)
    assert "tiny" in [m.id for m in sdk.models.list()]
    completion = sdk.completions.create(model="tiny", prompt="once upon a time", max_tokens=3, temperature=0)
    assert completion.usage.completion_tokens <= 3

    again = call("POST", f"{url}/v1/models/tiny", ADMIN, json=body)
    assert again.status_code == 409 and "tiny" in again.json()["error"]["message"]

    deleted = call("DELETE", f"{url}/v1/models/tiny", ADMIN)
    assert deleted.status_code == 200 and deleted.json() == {"id": "tiny", "object": "model", "deleted": True}
    assert "tiny" not in [m.id for m in sdk.models.list()]
    with pytest.raises(openai.NotFoundError):
        sdk.completions.create(model="tiny", prompt="x", max_tokens=1)
    assert call("DELETE", f"{url}/v1/models/tiny", ADMIN).status_code == 404


def test_loading_needs_a_key_that_may_manage_models(shim):
    url, gguf = shim
    body = {"source": gguf, "backend": "llamacpp"}
    assert call("POST", f"{url}/v1/models/tiny2", None, json=body).status_code == 401
    refused = call("POST", f"{url}/v1/models/tiny2", USER, json=body)
    assert refused.status_code == 403 and "user" in refused.json()["error"]["message"]
    assert call("DELETE", f"{url}/v1/models/echo", USER).status_code == 403


def test_bad_load_bodies_name_the_field(shim):
    url, gguf = shim
    unknown = call("POST", f"{url}/v1/models/x", ADMIN, json={"source": gguf, "colour": "red"})
    assert unknown.status_code == 400 and unknown.json()["error"]["param"] == "colour"
    task = call("POST", f"{url}/v1/models/x", ADMIN, json={"source": gguf, "task": "poetry"})
    assert task.status_code == 400 and task.json()["error"]["param"] == "task"
    option = call("POST", f"{url}/v1/models/x", ADMIN,
                  json={"source": gguf, "backend": "llamacpp", "options": {"n_ctx": "lots"}})
    assert option.status_code == 400 and "n_ctx" in option.json()["error"]["message"]
