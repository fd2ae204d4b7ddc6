"""The synchronous SDK against real services: echo and a gateway as processes, typed results and typed errors."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest

from forgeway.client import (
    Client, DeadlineExceededError, InvalidArgumentError, NotFoundError, Retry, UnauthenticatedError,
    UnavailableError, UnimplementedError, UnsupportedError,
)
from forgeway.testing import ServiceProcess, free_port
from forgeway.v1 import backend_pb2_grpc

KEY = "sk-test-client"


@pytest.fixture(scope="module")
def echo():
    with ServiceProcess("echo", "--model-name", "echo") as process:
        yield process


@pytest.fixture(scope="module")
def slow_echo():
    with ServiceProcess("echo", "--model-name", "slow", "--token-delay", "0.2") as process:
        yield process


@pytest.fixture(scope="module")
def gateway(echo, slow_echo):
    """A gateway with API keys in front of both echo backends."""
    env = {"FORGEWAY_BACKENDS": json.dumps({"echo": echo.address, "slow": slow_echo.address}),
           "FORGEWAY_API_KEYS": json.dumps([{"name": "ci", "sha256": hashlib.sha256(KEY.encode()).hexdigest()}])}
    with ServiceProcess("gateway", "--http-port", "-1", env=env) as process:
        yield process


@pytest.fixture
def client(echo):
    with Client(echo.address, timeout=20) as sdk:
        yield sdk


def test_generate_returns_a_typed_generation(client):
    result = client.generate("echo", "one two three", max_tokens=2)
    assert result.text == "one two" and result.finish_reason == "length"
    assert (result.usage.prompt_tokens, result.usage.completion_tokens, result.usage.total_tokens) == (3, 2, 5)
    assert result.model == "echo" and result.served_by.startswith("echo/")
    several = client.generate("echo", "a b", n=2, stop=[" b"])
    assert [(c.index, c.text, c.finish_reason) for c in several.choices] == [(0, "a", "stop_sequence"),
                                                                             (1, "a", "stop_sequence")]


def test_timings_are_what_the_server_measured(slow_echo):
    with Client(slow_echo.address) as sdk:
        timings = sdk.generate("slow", "one two", max_tokens=2).timings  # the slow echo waits 0.2 s before each token
    assert 199 <= timings.time_to_first_token_ms < timings.total_ms and timings.total_ms >= 399


def test_chat_answers_the_last_message(client):
    reply = client.chat("echo", [{"role": "system", "content": "be brief"}, ("user", "hello there")])
    assert reply.text == "hello there" and reply.finish_reason == "stop"


def test_stream_yields_deltas_then_the_final_generation(client):
    stream = client.stream("echo", "alpha beta gamma")
    pieces = [delta.text for delta in stream]
    assert pieces == ["alpha", " beta", " gamma"] and stream.text == "alpha beta gamma"
    assert stream.final is not None and stream.final.text == "alpha beta gamma"
    assert stream.final.usage.completion_tokens == 3


def test_leaving_a_stream_early_cancels_it(slow_echo):
    with Client(slow_echo.address) as sdk:
        with sdk.stream("slow", "w " * 200) as stream:
            first = next(stream)
            assert sdk.capabilities().load.in_flight == 1
        assert first.text == "w" and stream.final is None
        assert wait_idle(sdk), "the backend kept generating after the stream was left"  # 200 tokens take 40 s


def wait_idle(sdk: Client) -> bool:
    """Whether the backend has no call in flight within 10 s (well short of any generation these tests start)."""
    for _ in range(200):
        if sdk.capabilities().load.in_flight == 0:
            return True
        time.sleep(0.05)
    return False


def test_capabilities_status_and_models_of_a_backend(client, echo):
    caps = client.capabilities()
    assert caps.backend == "echo" and caps.available and caps.generation.streaming and caps.generation.stop
    assert [m.name for m in caps.models] == ["echo"] and caps.models[0].task == "text-generation"
    assert caps.hardware.cpu_cores >= 1 and caps.hardware.profile
    (row,) = client.status()
    assert (row.address, row.backend, row.health, row.models) == (echo.address, "echo", "SERVING", ("echo",))
    assert [m.name for m in client.models.list()] == ["echo"]


def test_errors_are_typed_with_their_details(client):
    with pytest.raises(NotFoundError) as unknown:
        client.generate("nope", "x")
    assert unknown.value.reason == "MODEL_NOT_FOUND" and unknown.value.metadata == {"model": "nope"}
    assert "known: echo" in str(unknown.value) and unknown.value.http_status == 404
    with pytest.raises(InvalidArgumentError) as out_of_range:
        client.generate("echo", "x", temperature=5)
    assert dict(out_of_range.value.field_violations) == {"sampling.temperature": "must be in [0, 2]"}
    with pytest.raises(UnsupportedError) as unsupported:
        client.generate("echo", "x", logprobs=True)
    assert unsupported.value.reason == "UNSUPPORTED" and unsupported.value.metadata["feature"] == "logprobs"
    with pytest.raises(UnimplementedError):
        client.models.load("other", "/nowhere")
    with pytest.raises(UnimplementedError):
        client.jobs.list()  # echo is no trainer


def test_a_deadline_is_a_typed_error(slow_echo):
    with Client(slow_echo.address, timeout=0.5) as sdk, pytest.raises(DeadlineExceededError):
        sdk.generate("slow", "a b c d e f g h")


class AlwaysUnavailable(backend_pb2_grpc.BackendServiceServicer):
    """A BackendService whose Generate answers UNAVAILABLE every time, counting the tries."""

    def __init__(self) -> None:
        self.tries = 0

    def Generate(self, request, context):
        self.tries += 1
        context.abort(grpc.StatusCode.UNAVAILABLE, "busy, try again")


@pytest.fixture
def unavailable():
    backend = AlwaysUnavailable()
    server = grpc.server(ThreadPoolExecutor(max_workers=1))
    backend_pb2_grpc.add_BackendServiceServicer_to_server(backend, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}", backend
    server.stop(0)


def test_unavailable_is_tried_once_without_retries_and_as_often_as_the_policy_allows_with_them(unavailable):
    address, backend = unavailable
    with Client(address, retry=0) as sdk, pytest.raises(UnavailableError) as once:
        sdk.generate("echo", "x")
    assert backend.tries == 1 and once.value.http_status == 503 and "busy, try again" in str(once.value)
    with Client(address, retry=2) as sdk, pytest.raises(UnavailableError):
        sdk.generate("echo", "x")
    assert backend.tries == 1 + 3
    with Client(address, retry=Retry(attempts=4, initial_backoff=0.01, max_backoff=0.01)) as sdk, \
            pytest.raises(UnavailableError):
        sdk.generate("echo", "x")
    assert backend.tries == 1 + 3 + 4


def test_unreachable_is_unavailable_and_a_late_server_is_waited_for_with_retries():
    port = free_port("127.0.0.1")
    with Client(f"127.0.0.1:{port}", retry=0) as sdk, pytest.raises(UnavailableError) as down:
        sdk.generate("echo", "x")
    assert down.value.http_status == 503
    late = ServiceProcess("echo", port=port)
    starter = threading.Timer(0.5, late.start)
    patient = Retry(attempts=60, initial_backoff=0.1, max_backoff=0.5)
    try:
        starter.start()
        with Client(f"127.0.0.1:{port}", retry=patient, timeout=60) as sdk:
            assert sdk.generate("echo", "came up late").text == "came up late"
    finally:
        starter.join()
        late.stop()


def test_through_the_gateway_with_an_api_key(gateway, echo, slow_echo):
    with Client(gateway.address, api_key=KEY) as sdk:
        assert sdk.generate("slow", "via the gateway").text == "via the gateway"
        rows = {r.backend + ":" + ",".join(r.models): r for r in sdk.status()}
        assert set(rows) == {"echo:echo", "echo:slow"}
        assert {r.address for r in rows.values()} == {echo.address, slow_echo.address}
        assert all(r.health == "SERVING" and r.breaker == "closed" and r.available for r in rows.values())
        assert sorted(m.name for m in sdk.models.list()) == ["echo", "slow"]
    with Client(gateway.address, api_key="wrong") as sdk, pytest.raises(UnauthenticatedError):
        sdk.generate("echo", "x")
    with Client(gateway.address) as anonymous:
        assert anonymous.capabilities().backend == "gateway"  # capabilities stay public
        with pytest.raises(UnauthenticatedError) as missing:
            anonymous.generate("echo", "x")
        assert missing.value.http_status == 401
