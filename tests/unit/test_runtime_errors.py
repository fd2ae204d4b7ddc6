"""The error table through a real server: rich details round-trip, surprises stay generic, request ids reach logs."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import AsyncIterator, Callable

import grpc
import pytest
from google.rpc import error_details_pb2

from forgeway.services.echo.engine import EchoEngine, EchoSettings
from forgeway.core.errors import (
    DOMAIN,
    HTTP_STATUS,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    RemoteError,
    ResourceExhausted,
    Unavailable,
    from_rpc_error,
)
from forgeway.core.generation import Delta, GenerationRequest
from forgeway.server.logs import JsonFormatter
from forgeway.v1 import backend_pb2_grpc, capabilities_pb2, generate_pb2

SECRET = "password=hunter2 at /srv/secret/weights.bin"

# What the engine raises for each prompt.
RAISES: dict[str, Callable[[], Exception]] = {
    "invalid": lambda: InvalidArgument("sampling.top_p", "must be in (0, 1]", more=[("n", "must be at most 16")]),
    "exhausted": lambda: ResourceExhausted("queue full", retry_after=2.5, quota="requests per minute"),
    "unavailable": lambda: Unavailable("warming up", retry_after=0.25),
    "not_found": lambda: NotFound("model", "nope", ["echo"]),
    "precondition": lambda: FailedPrecondition("model not loaded", reason="MODEL_NOT_LOADED", metadata={"model": "m"}),
    "crash": lambda: RuntimeError(SECRET),
}


class RaisingEngine(EchoEngine):
    """The echo engine, except that it streams two words and then raises what the prompt names."""

    async def generate(self, request: GenerationRequest, model) -> AsyncIterator:
        if request.prompt in RAISES:
            yield Delta(0, "two")
            yield Delta(0, " words")
            raise RAISES[request.prompt]()
        async for event in super().generate(request, model):
            yield event


@pytest.fixture
async def backend(serve_in_process) -> AsyncIterator[backend_pb2_grpc.BackendServiceStub]:
    running = await serve_in_process(RaisingEngine(EchoSettings(port=0, metrics_port=-1)))
    async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
        yield backend_pb2_grpc.BackendServiceStub(channel)


def ask(prompt: str) -> generate_pb2.GenerateRequest:
    return generate_pb2.GenerateRequest(model="echo", prompt=prompt)


async def fail(backend, prompt: str, metadata=()) -> RemoteError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await backend.Generate(ask(prompt), timeout=10, metadata=metadata)
    return from_rpc_error(caught.value)


async def test_bad_request_field_violations_round_trip(backend):
    error = await fail(backend, "invalid")
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT and error.http_status == 400
    assert error.field_violations == [("sampling.top_p", "must be in (0, 1]"), ("n", "must be at most 16")]
    assert error.error_info.reason == "INVALID_ARGUMENT" and error.error_info.domain == DOMAIN
    assert error.error_info.metadata["field"] == "sampling.top_p"
    assert "sampling.top_p" in error.message


async def test_retry_info_and_quota_failure_round_trip(backend):
    error = await fail(backend, "exhausted")
    assert error.code == grpc.StatusCode.RESOURCE_EXHAUSTED and error.http_status == 429
    assert error.retry_after == pytest.approx(2.5)
    quotas = [d for d in error.details() if isinstance(d, error_details_pb2.QuotaFailure)]
    assert [(v.subject, v.description) for q in quotas for v in q.violations] == [("requests per minute", "queue full")]
    assert error.reason == "RESOURCE_EXHAUSTED"


async def test_error_info_round_trips_reason_and_metadata(backend):
    not_found = await fail(backend, "not_found")
    assert not_found.code == grpc.StatusCode.NOT_FOUND and not_found.http_status == 404
    assert not_found.reason == "MODEL_NOT_FOUND" and dict(not_found.error_info.metadata) == {"model": "nope"}
    assert "echo" in not_found.message  # the known names
    precondition = await fail(backend, "precondition")
    assert precondition.code == grpc.StatusCode.FAILED_PRECONDITION and precondition.http_status == 409
    assert precondition.reason == "MODEL_NOT_LOADED" and dict(precondition.error_info.metadata) == {"model": "m"}


async def test_error_after_streamed_deltas_keeps_its_details(backend):
    received = []
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for message in backend.GenerateStream(ask("unavailable"), timeout=10):
            received.append(message.delta.text)
    error = from_rpc_error(caught.value)
    assert received == ["two", " words"]
    assert error.code == grpc.StatusCode.UNAVAILABLE and error.http_status == 503
    assert error.retry_after == pytest.approx(0.25)


@pytest.mark.parametrize("rpc", ["Generate", "GenerateStream"])
async def test_unexpected_exception_is_internal_generic_and_logged(backend, caplog, rpc):
    caplog.set_level(logging.ERROR, logger="forgeway.rpc")
    metadata = (("x-request-id", "req-crash-1"),)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        if rpc == "Generate":
            await backend.Generate(ask("crash"), timeout=10, metadata=metadata)
        else:
            async for _ in backend.GenerateStream(ask("crash"), timeout=10, metadata=metadata):
                pass
    error = from_rpc_error(caught.value)
    assert error.code == grpc.StatusCode.INTERNAL and error.http_status == 500
    assert "hunter2" not in error.message and "RuntimeError" not in error.message and "secret" not in error.message
    assert "req-crash-1" in error.message  # so the caller can find the log line
    logged = [r for r in caplog.records if r.name == "forgeway.rpc" and r.levelno == logging.ERROR]
    assert logged and logged[-1].exc_info and SECRET in str(logged[-1].exc_info[1])
    # Nothing crashes the server: it keeps answering.
    caps = await backend.Capabilities(capabilities_pb2.CapabilitiesRequest(), timeout=10)
    assert caps.availability.available


@pytest.fixture
def json_log() -> io.StringIO:
    """JSON log lines of the forgeway loggers, as a service writes them."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("forgeway")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield stream
    logger.removeHandler(handler)
    logger.setLevel(old_level)


async def test_request_id_from_metadata_appears_in_json_logs(backend, json_log):
    await fail(backend, "not_found", metadata=(("x-request-id", "req-7f3a"),))
    await fail(backend, "not_found")  # no id sent: one is made up
    entries = [json.loads(line) for line in json_log.getvalue().splitlines()]
    failures = [e for e in entries if e["logger"] == "forgeway.rpc" and "NOT_FOUND" in e["message"]]
    assert [e.get("request_id") for e in failures][0] == "req-7f3a"
    assert len(failures) == 2 and failures[1].get("request_id") not in (None, "", "req-7f3a")
    assert all(e["level"] == "info" and "time" in e for e in failures)


def test_http_statuses_follow_the_design_table():
    table = {"INVALID_ARGUMENT": 400, "UNIMPLEMENTED": 501, "NOT_FOUND": 404, "FAILED_PRECONDITION": 409,
             "UNAUTHENTICATED": 401, "PERMISSION_DENIED": 403, "RESOURCE_EXHAUSTED": 429, "UNAVAILABLE": 503,
             "DEADLINE_EXCEEDED": 504, "INTERNAL": 500}  # fmt: skip
    assert {code.name: HTTP_STATUS[code] for code in HTTP_STATUS if code.name in table} == table
