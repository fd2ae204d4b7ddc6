"""The shim through the official `openai` client (sync and async), on uvicorn, in front of real echo processes."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import grpc
import httpx
import openai
import pytest

from forgeway.gateway.http.app import create_app
from forgeway.gateway.http.serve import BackgroundServer
from forgeway.gateway.http.settings import HttpSettings
from forgeway.testing import ServiceProcess
from forgeway.v1 import backend_pb2_grpc, capabilities_pb2

USER = [{"role": "user", "content": "one two three four five"}]


@pytest.fixture(scope="module")
def echo() -> Iterator[ServiceProcess]:
    with ServiceProcess("echo", "--grace-seconds", "1") as service:
        yield service


@pytest.fixture(scope="module")
def slow_echo() -> Iterator[ServiceProcess]:
    """50 ms per token: generations long enough to disconnect from or outlive a deadline."""
    with ServiceProcess("echo", "--token-delay", "0.05", "--grace-seconds", "1") as service:
        yield service


@pytest.fixture(scope="module")
def shim(echo) -> Iterator[str]:
    with BackgroundServer(create_app(echo.address)) as server:
        yield server.url


@pytest.fixture(scope="module")
def slow_shim(slow_echo) -> Iterator[str]:
    with BackgroundServer(create_app(slow_echo.address, HttpSettings(generation_timeout_seconds=1.0))) as server:
        yield server.url


@pytest.fixture(scope="module")
def client(shim) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{shim}/v1", api_key="sk-test", max_retries=0)


@pytest.fixture
def async_client(shim) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{shim}/v1", api_key="sk-test", max_retries=0)


def in_flight(service: ServiceProcess) -> int:
    with grpc.insecure_channel(service.address) as channel:
        reply = backend_pb2_grpc.BackendServiceStub(channel).Capabilities(capabilities_pb2.CapabilitiesRequest(),
                                                                          timeout=5)
    return reply.load.in_flight


def wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_models_list_and_get(client):
    assert [m.id for m in client.models.list()] == ["echo"]
    model = client.models.retrieve("echo")
    assert (model.id, model.owned_by, model.object) == ("echo", "echo", "model")
    with pytest.raises(openai.NotFoundError) as info:
        client.models.retrieve("nope")
    assert info.value.body["code"] == "model_not_found"


def test_chat_completion(client):
    raw = client.chat.completions.with_raw_response.create(model="echo", messages=USER,
                                                           extra_headers={"x-request-id": "req-chat-1"})
    reply = raw.parse()
    assert raw.headers["x-request-id"] == "req-chat-1"
    assert reply.object == "chat.completion" and reply.id.startswith("chatcmpl-")
    assert reply.choices[0].message.content == "one two three four five"
    assert reply.choices[0].finish_reason == "stop" and reply.choices[0].message.role == "assistant"
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens, reply.usage.total_tokens) == (5, 5, 10)
    assert reply.system_fingerprint.startswith("echo/")


async def test_async_chat_stream_with_usage(async_client):
    stream = await async_client.chat.completions.create(model="echo", messages=USER, stream=True,
                                                        stream_options={"include_usage": True})
    chunks = [chunk async for chunk in stream]
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "one two three four five"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 5
    assert all(c.usage is None for c in chunks[:-1])


async def test_async_chat_completion(async_client):
    reply = await async_client.chat.completions.create(model="echo", messages=USER, max_completion_tokens=2)
    assert reply.choices[0].message.content == "one two" and reply.choices[0].finish_reason == "length"


def test_n_choices_whole_and_streamed(client):
    reply = client.chat.completions.create(model="echo", messages=USER, n=3)
    assert [c.index for c in reply.choices] == [0, 1, 2]
    assert {c.message.content for c in reply.choices} == {"one two three four five"}
    texts: dict[int, str] = {}
    for chunk in client.chat.completions.create(model="echo", messages=USER, n=2, stream=True):
        for choice in chunk.choices:
            texts[choice.index] = texts.get(choice.index, "") + (choice.delta.content or "")
    assert texts == {0: "one two three four five", 1: "one two three four five"}


def test_stop_sequences_cut_before_the_stop(client):
    reply = client.chat.completions.create(model="echo", messages=USER, stop=[" three", "zzz"])
    assert reply.choices[0].message.content == "one two" and reply.choices[0].finish_reason == "stop"
    streamed = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(
        model="echo", messages=USER, stop=" four", stream=True) if c.choices)
    assert streamed == "one two three"


def test_seed_reproducibility(client):
    """Echo is deterministic, so this checks the seed is accepted and forwarded; rerun against hf for sampling."""
    first = client.chat.completions.create(model="echo", messages=USER, seed=1234, max_tokens=7)
    second = client.chat.completions.create(model="echo", messages=USER, seed=1234, max_tokens=7)
    assert first.choices[0].message.content == second.choices[0].message.content


def test_completions_with_prompt_list_and_stream(client):
    reply = client.completions.create(model="echo", prompt=["a b", "c d"], n=2, max_tokens=2)
    assert [(c.index, c.text) for c in reply.choices] == [(0, "a b"), (1, "a b"), (2, "c d"), (3, "c d")]
    assert reply.usage.completion_tokens == 8
    default = client.completions.create(model="echo", prompt=" ".join(["w"] * 40))
    assert default.usage.completion_tokens == 16 and default.choices[0].finish_reason == "length"
    texts: dict[int, str] = {}
    usage = None
    for chunk in client.completions.create(model="echo", prompt=["x y z", "p q r"], stream=True, max_tokens=3,
                                           stream_options={"include_usage": True}):
        for choice in chunk.choices:
            texts[choice.index] = texts.get(choice.index, "") + choice.text
        usage = chunk.usage or usage
    assert texts == {0: "x y z", 1: "p q r"} and usage.completion_tokens == 6


@pytest.mark.parametrize(("params", "param", "code"), [
    ({"temperature": 3}, "temperature", "invalid_value"),            # out of range: the shim's schema
    ({"temperature": 0.5}, "temperature", "unsupported_parameter"),  # echo's Capabilities lack it: the backend
    ({"logprobs": True}, "logprobs", "unsupported_parameter"),
    ({"response_format": {"type": "json_object"}}, "response_format", "unsupported_parameter"),
    ({"n": 20}, "n", "invalid_value"),                               # past the runtime's limit
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]}, "tools",
     "unsupported_parameter"),
    ({"extra_body": {"top_k": 5}}, "top_k", "unsupported_parameter"),
])
def test_bad_and_unsupported_parameters_are_400_naming_them(client, params, param, code):
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="echo", messages=USER, **params)
    assert info.value.status_code == 400
    assert info.value.body["param"] == param and info.value.body["code"] == code
    assert info.value.body["type"] == "invalid_request_error"


async def test_unknown_model_is_404_also_when_streaming(async_client):
    with pytest.raises(openai.NotFoundError) as info:
        await async_client.chat.completions.create(model="nope", messages=USER, stream=True)
    assert info.value.body == {"message": "model 'nope' not found (known: echo)", "type": "invalid_request_error",
                               "param": "model", "code": "model_not_found"}


def test_request_id_reaches_the_backend(client, echo):
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="echo", messages=USER, temperature=0.7,
                                       extra_headers={"x-request-id": "req-forwarded-42"})
    wait_until(lambda: "req-forwarded-42" in echo.log_text(), 10, "the backend to log the request id")
    entries = [json.loads(line) for line in echo.log_text().splitlines() if "req-forwarded-42" in line]
    assert entries[0]["request_id"] == "req-forwarded-42"


def test_error_after_the_stream_began_is_an_error_event(slow_shim):
    client = openai.OpenAI(base_url=f"{slow_shim}/v1", api_key="k", max_retries=0)
    received = []
    with pytest.raises(openai.APIError) as info:
        for chunk in client.chat.completions.create(model="echo", messages=USER, max_tokens=1000, stream=True):
            received.append(chunk)
    assert len(received) > 3  # tokens flowed, then the 1 s generation deadline passed
    assert info.value.body["type"] == "timeout_error" and info.value.body["code"] == "deadline_exceeded"


def test_disconnect_cancels_a_stream(slow_shim, slow_echo):
    wait_until(lambda: in_flight(slow_echo) == 0, 20, "earlier generations to end")
    body = {"model": "echo", "messages": USER, "max_tokens": 4000, "stream": True}
    with httpx.Client(timeout=30) as http, http.stream("POST", f"{slow_shim}/v1/chat/completions", json=body) as r:
        lines = r.iter_lines()
        assert [next(lines) for _ in range(6)]
        assert in_flight(slow_echo) == 1
    wait_until(lambda: in_flight(slow_echo) == 0, 20, "the backend to stop generating")


def test_disconnect_cancels_a_whole_completion(slow_shim, slow_echo):
    wait_until(lambda: in_flight(slow_echo) == 0, 20, "earlier generations to end")
    body = {"model": "echo", "messages": USER, "max_tokens": 4000}
    with pytest.raises(httpx.ReadTimeout), httpx.Client(timeout=httpx.Timeout(5, read=0.5)) as http:
        http.post(f"{slow_shim}/v1/chat/completions", json=body)
    wait_until(lambda: in_flight(slow_echo) == 0, 20, "the backend to stop generating")


def test_fine_tuning_file_upload_needs_a_trainer(client):
    with pytest.raises(openai.APIStatusError) as info:
        client.files.create(file=("train.jsonl", b'{"prompt": "a", "completion": "b"}\n'), purpose="fine-tune")
    assert info.value.status_code == 501 and info.value.body["type"] == "not_implemented_error"
    with pytest.raises(openai.BadRequestError) as bad:
        client.files.create(file=("train.jsonl", b'{"prompt": "a", "completion": "b"}\n{"prompt": 1}\n'),
                            purpose="fine-tune")
    assert "line 2:" in bad.value.body["message"] and bad.value.body["param"] == "file"


def test_fine_tuning_jobs_answer_501_without_a_trainer(client):
    with pytest.raises(openai.APIStatusError) as info:
        client.fine_tuning.jobs.create(model="echo", training_file="ds-1", suffix="mine",
                                       method={"type": "dpo", "dpo": {"hyperparameters": {"beta": 0.1}}})
    assert info.value.status_code == 501 and "does not train" in info.value.body["message"]
    for call in (lambda: client.fine_tuning.jobs.list(), lambda: client.fine_tuning.jobs.retrieve("job-1"),
                 lambda: client.fine_tuning.jobs.cancel("job-1"),
                 lambda: client.fine_tuning.jobs.list_events("job-1")):
        with pytest.raises(openai.APIStatusError) as info:
            call()
        assert info.value.status_code == 501


def test_fine_tuning_bad_request_names_the_parameter(client):
    with pytest.raises(openai.BadRequestError) as info:
        method = {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 0}}}
        client.fine_tuning.jobs.create(model="echo", training_file="ds-1", method=method)
    assert info.value.body["param"] == "method.supervised.hyperparameters.n_epochs"
