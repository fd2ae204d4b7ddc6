"""The shim's edge, before any backend answers: bad input, errors in OpenAI's shape, health, metrics, OpenAPI."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from forgeway.gateway.http.app import create_app
from forgeway.gateway.http.settings import HttpSettings
from forgeway.testing import free_port

CHAT = {"model": "echo", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    """The app in front of a loopback port where nothing listens: every gRPC call finds the target down."""
    settings = HttpSettings(max_body_bytes=4096, max_upload_bytes=8192, readiness_timeout_seconds=0.5,
                            request_timeout_seconds=2, generation_timeout_seconds=2)
    with TestClient(create_app(f"127.0.0.1:{free_port('127.0.0.1')}", settings)) as test_client:
        yield test_client


def error_of(response) -> dict:
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]


def test_wrong_content_type_is_415(client):
    response = client.post("/v1/chat/completions", content=b"model=echo", headers={"content-type": "text/plain"})
    assert response.status_code == 415 and "application/json" in error_of(response)["message"]
    upload = client.post("/v1/files", json={"purpose": "fine-tune"})
    assert upload.status_code == 415 and "multipart/form-data" in error_of(upload)["message"]


def test_oversized_bodies_are_413_declared_or_streamed(client):
    big = {**CHAT, "messages": [{"role": "user", "content": "x" * 5000}]}
    assert client.post("/v1/chat/completions", json=big).status_code == 413
    chunks = (b"x" * 1024 for _ in range(8))  # no Content-Length: counted as it arrives
    response = client.post("/v1/chat/completions", content=chunks, headers={"content-type": "application/json"})
    assert response.status_code == 413 and error_of(response)["code"] == "request_too_large"


def test_malformed_json_names_the_position(client):
    response = client.post("/v1/chat/completions", content=b'{"model": "echo",\n  "messages": [}',
                           headers={"content-type": "application/json"})
    error = error_of(response)
    assert response.status_code == 400 and error["code"] == "invalid_json"
    assert "line 2 column 16" in error["message"] and "char 33" in error["message"]


@pytest.mark.parametrize(("body", "param", "code"), [
    ({**CHAT, "temperature": 5}, "temperature", "invalid_value"),
    ({**CHAT, "frobnicate": 1}, "frobnicate", "unknown_parameter"),
    ({**CHAT, "tools": [{"type": "custom", "custom": {"name": "f"}}]}, "tools[0].type", "invalid_value"),
    ({**CHAT, "functions": [{"name": "f"}]}, "functions", "unsupported_parameter"),
    ({**CHAT, "logit_bias": {"50256": -100}}, "logit_bias", "unsupported_parameter"),
    ({**CHAT, "messages": [{"role": "user", "content": "x", "name": "bob"}]}, "messages[0].name",
     "unsupported_parameter"),
    ({**CHAT, "messages": [{"role": "user"}, {"role": "robot", "content": "x"}]}, "messages[1].role", "invalid_value"),
    ({**CHAT, "stream_options": {"include_usage": True}}, "stream_options", "invalid_value"),
    ({"messages": CHAT["messages"]}, "model", "missing_required_parameter"),
    ([1, 2], None, "invalid_request_body"),
])
def test_bad_parameters_are_400_naming_them(client, body, param, code):
    response = client.post("/v1/chat/completions", json=body)
    error = error_of(response)
    assert response.status_code == 400 and error["type"] == "invalid_request_error"
    assert (error["param"], error["code"]) == (param, code)


def test_completion_specific_rejections(client):
    response = client.post("/v1/completions", json={"model": "echo", "prompt": "p", "echo": True})
    assert response.status_code == 400 and error_of(response)["param"] == "echo"


def test_target_down_is_503_in_openai_shape(client):
    response = client.post("/v1/chat/completions", json=CHAT)
    error = error_of(response)
    assert response.status_code == 503 and error["type"] == "service_unavailable_error"


def test_request_ids_are_kept_or_made(client):
    assert client.get("/healthz", headers={"x-request-id": "abc-123"}).headers["x-request-id"] == "abc-123"
    assert len(client.get("/healthz").headers["x-request-id"]) == 32


def test_health_readiness_and_metrics(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.json()["status"] == "unavailable"
    metrics = client.get("/metrics")
    assert metrics.status_code == 200 and 'forgeway_http_requests_total{method="GET",route="/healthz"' in metrics.text


def test_unknown_routes_answer_in_openai_shape(client):
    response = client.get("/v1/nothing")
    assert response.status_code == 404 and error_of(response)["type"] == "invalid_request_error"


def test_upload_checks_purpose_and_lines_before_any_rpc(client):
    bad_purpose = client.post("/v1/files", data={"purpose": "assistants"},
                              files={"file": ("t.jsonl", b'{"text": "x"}\n', "application/jsonl")})
    assert bad_purpose.status_code == 400 and error_of(bad_purpose)["param"] == "purpose"
    bad_line = client.post("/v1/files", data={"purpose": "fine-tune"},
                           files={"file": ("t.jsonl", b'{"text": "x"}\n{"text": \n', "application/jsonl")})
    assert bad_line.status_code == 400 and "line 2:" in error_of(bad_line)["message"]
    missing = client.post("/v1/files", data={"purpose": "fine-tune"}, files={"other": ("t", b"x")})
    assert missing.status_code == 400 and error_of(missing)["param"] == "file"
    too_big = client.post("/v1/files", data={"purpose": "fine-tune"},
                          files={"file": ("t.jsonl", b'{"text": "x"}\n' * 1000, "application/jsonl")})
    assert too_big.status_code == 413


def test_openapi_documents_what_is_served(client):
    schema = client.get("/openapi.json").json()
    paths = schema["paths"]
    for route in ("/v1/chat/completions", "/v1/completions", "/v1/models", "/v1/files", "/v1/fine_tuning/jobs",
                  "/v1/fine_tuning/jobs/{fine_tuning_job_id}/events", "/healthz", "/readyz", "/metrics"):
        assert route in paths
    chat = paths["/v1/chat/completions"]["post"]
    assert "422" not in chat["responses"] and "400" in chat["responses"]
    assert "text/event-stream" in chat["responses"]["200"]["content"]
    assert schema["components"]["schemas"]["ChatCompletionRequest"]["additionalProperties"] is False
