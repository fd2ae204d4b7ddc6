"""API keys and rate limits at the gateway, over gRPC: the codes and rich details a client gets."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

import grpc
import pytest
from google.rpc import error_details_pb2

from forgeway.services.runtime.service import serving
from forgeway.services.echo.engine import EchoEngine, EchoSettings
from forgeway.core.errors import from_rpc_error
from forgeway.server.server import start_server
from forgeway.testing import gateway_settings, start_gateway, stop_now
from forgeway.v1 import backend_pb2_grpc, capabilities_pb2, generate_pb2, jobs_pb2, jobs_pb2_grpc, train_pb2


def key(name: str, secret: str, **extra) -> dict:
    return {"name": name, "sha256": hashlib.sha256(secret.encode()).hexdigest(), **extra}


def bearer(secret: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {secret}"),)


@pytest.fixture(scope="module")
async def stub() -> AsyncIterator[backend_pb2_grpc.BackendServiceStub]:
    echo = await start_server(serving(EchoEngine(EchoSettings(port=0, metrics_port=-1, model_name="echo"))))
    settings = gateway_settings(
        [f"127.0.0.1:{echo.port}"],
        api_keys=[key("ops", "sk-ops"), key("intern", "sk-intern", models=["other"], train=False),
                  key("burst", "sk-burst", rate_limit={"requests_per_minute": 2}),
                  key("frugal", "sk-frugal", rate_limit={"tokens_per_minute": 5})],
        public_capabilities=False,
    )
    gateway = await start_gateway(settings)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
        stub = backend_pb2_grpc.BackendServiceStub(channel)
        stub.jobs = jobs_pb2_grpc.JobServiceStub(channel)
        yield stub
    await stop_now(gateway)
    await stop_now(echo)


REQUEST = generate_pb2.GenerateRequest(model="echo", prompt="one two three four five six")


async def error_of(call) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value


async def test_missing_and_wrong_keys_are_unauthenticated(stub):
    for metadata in ((), bearer("sk-wrong"), (("authorization", "sk-ops"),)):
        error = await error_of(stub.Generate(REQUEST, timeout=10, metadata=metadata))
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED, metadata
    error = await error_of(stub.Capabilities(capabilities_pb2.CapabilitiesRequest(), timeout=10))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    reply = await stub.Generate(REQUEST, timeout=10, metadata=bearer("sk-ops"))
    assert reply.choices[0].text == REQUEST.prompt


async def test_a_key_is_limited_to_its_models_and_rights(stub):
    error = await error_of(stub.Generate(REQUEST, timeout=10, metadata=bearer("sk-intern")))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED and "may not use model 'echo'" in error.details()
    train = stub.Train(train_pb2.TrainRequest(base_model="echo", method=train_pb2.TRAINING_METHOD_SFT), timeout=10,
                       metadata=bearer("sk-intern"))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for _ in train:
            pass
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    error = await error_of(stub.jobs.GetJob(jobs_pb2.GetJobRequest(job_id="job-x"), timeout=10,
                                            metadata=bearer("sk-intern")))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_request_rate_limit_is_resource_exhausted_with_retry_info_and_quota(stub):
    for _ in range(2):
        await stub.Generate(REQUEST, timeout=10, metadata=bearer("sk-burst"))
    error = from_rpc_error(await error_of(stub.Generate(REQUEST, timeout=10, metadata=bearer("sk-burst"))))
    assert error.code == grpc.StatusCode.RESOURCE_EXHAUSTED and error.reason == "RATE_LIMITED"
    assert 0 < error.retry_after <= 30
    quota = [d for d in error.details() if isinstance(d, error_details_pb2.QuotaFailure)]
    assert quota and quota[0].violations[0].subject == "burst:requests_per_minute"
    await stub.Generate(REQUEST, timeout=10, metadata=bearer("sk-ops"))  # other keys are not affected


async def test_token_rate_limit_counts_the_tokens_used(stub):
    await stub.Generate(REQUEST, timeout=10, metadata=bearer("sk-frugal"))  # 6 + 6 tokens of a 5 per minute budget
    error = from_rpc_error(await error_of(stub.Generate(REQUEST, timeout=10, metadata=bearer("sk-frugal"))))
    assert error.code == grpc.StatusCode.RESOURCE_EXHAUSTED and "tokens per minute" in error.message
    assert error.retry_after > 60, "12 tokens at 5 per minute take over a minute to repay"
