"""Credentials pass through the shim as gRPC metadata, and the target's verdict comes back as 401 / 403.

First against a small real gRPC server that records what reaches it, then against the real gateway and its keys.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from concurrent import futures

import grpc
import httpx
import openai
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from forgeway.gateway.http.app import create_app
from forgeway.gateway.http.serve import BackgroundServer
from forgeway.testing import ServiceProcess, free_port
from forgeway.v1 import backend_pb2_grpc, capabilities_pb2, models_pb2


class KeyCheckingBackend(backend_pb2_grpc.BackendServiceServicer):
    """Capabilities for the key "good", PERMISSION_DENIED for "readonly", UNAUTHENTICATED otherwise."""

    def __init__(self):
        self.seen: list[dict[str, str]] = []

    def Capabilities(self, request, context):
        metadata = dict(context.invocation_metadata())
        self.seen.append(metadata)
        key = metadata.get("authorization", "")
        if key == "Bearer readonly":
            context.abort(grpc.StatusCode.PERMISSION_DENIED, "this key may not list models")
        if key != "Bearer good":
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or unknown API key")
        return capabilities_pb2.CapabilitiesResponse(
            backend="keyed", availability=capabilities_pb2.Availability(available=True),
            models=[models_pb2.ModelInfo(name="m", backend="keyed", aliases=["m-alias"])])


@pytest.fixture(scope="module")
def keyed() -> Iterator[tuple[KeyCheckingBackend, str]]:
    servicer = KeyCheckingBackend()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    backend_pb2_grpc.add_BackendServiceServicer_to_server(servicer, server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with BackgroundServer(create_app(f"127.0.0.1:{port}")) as shim:
            yield servicer, shim.url
    finally:
        server.stop(0)


def client(url: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)


def test_key_and_request_id_are_forwarded(keyed):
    servicer, url = keyed
    models = client(url, "good").models.with_raw_response.list(extra_headers={"x-request-id": "req-auth-7"})
    assert [m.id for m in models.parse()] == ["m", "m-alias"]
    assert servicer.seen[-1]["authorization"] == "Bearer good"
    assert servicer.seen[-1]["x-request-id"] == "req-auth-7" == models.headers["x-request-id"]


def test_ready_when_capabilities_need_a_key(keyed):
    _, url = keyed
    ready = httpx.get(f"{url}/readyz")
    assert ready.status_code == 200 and "grpc.health.v1" in ready.json()["reason"]


def test_bad_key_is_401_and_a_forbidden_one_403(keyed):
    _, url = keyed
    with pytest.raises(openai.AuthenticationError) as unauthenticated:
        client(url, "wrong").models.list()
    assert unauthenticated.value.body["type"] == "authentication_error"
    with pytest.raises(openai.PermissionDeniedError) as denied:
        client(url, "readonly").models.list()
    assert denied.value.body["type"] == "permission_error"


def test_alias_is_its_own_model_entry(keyed):
    _, url = keyed
    alias = client(url, "good").models.retrieve("m-alias")
    assert alias.id == "m-alias" and alias.model_extra["alias_of"] == "m"


@pytest.fixture(scope="module")
def gateway_http() -> Iterator[str]:
    """An echo process behind a real `forgeway serve gateway` holding three API keys; its HTTP API's URL."""
    keys = [{"name": "ops", "sha256": hashlib.sha256(b"sk-ops").hexdigest()},
            {"name": "intern", "sha256": hashlib.sha256(b"sk-intern").hexdigest(), "models": ["other"]},
            {"name": "burst", "sha256": hashlib.sha256(b"sk-burst").hexdigest(),
             "rate_limit": {"requests_per_minute": 1}}]
    with ServiceProcess("echo", "--grace-seconds", "1") as echo:
        port = free_port("127.0.0.1")
        env = {"FORGEWAY_BACKENDS": json.dumps({"echo": echo.address}), "FORGEWAY_API_KEYS": json.dumps(keys)}
        with ServiceProcess("gateway", "--http-port", str(port), "--grace-seconds", "1", env=env):
            yield f"http://127.0.0.1:{port}"


def test_keys_at_the_gateway_http_port(gateway_http):
    chat = {"model": "echo", "messages": [{"role": "user", "content": "a b c"}]}
    assert client(gateway_http, "sk-ops").chat.completions.create(**chat).choices[0].message.content == "a b c"
    with pytest.raises(openai.AuthenticationError) as unknown:
        client(gateway_http, "sk-wrong").chat.completions.create(**chat)
    assert unknown.value.body["type"] == "authentication_error"
    with pytest.raises(openai.PermissionDeniedError) as denied:
        client(gateway_http, "sk-intern").chat.completions.create(**chat)
    assert "echo" in denied.value.body["message"]
    client(gateway_http, "sk-burst").chat.completions.create(**chat)
    with pytest.raises(openai.RateLimitError) as limited:
        client(gateway_http, "sk-burst").chat.completions.create(**chat)
    assert limited.value.body["type"] == "rate_limit_error" and int(limited.value.response.headers["retry-after"]) >= 1
