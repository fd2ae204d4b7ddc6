"""The Unsloth trainer where it cannot train (here: unsloth is not installed in .venv): Capabilities says why, health
is NOT_SERVING, Train is UNAVAILABLE naming the reason, and through the gateway backend auto falls back to the real
TRL trainer with a fallback event in the stream and in the job's history."""

from __future__ import annotations

import importlib.util
from collections.abc import AsyncIterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from trl_harness import assert_succeeded, request, trl_service

from forgeway.server.server import start_server
from forgeway.services.unsloth.service import UnslothService
from forgeway.services.unsloth.settings import UnslothSettings
from forgeway.testing import gateway_settings, start_gateway, stop_now, wait_until
from forgeway.v1 import backend_pb2_grpc, capabilities_pb2, jobs_pb2, train_pb2

pytestmark = [
    pytest.mark.skipif(importlib.util.find_spec("unsloth") is not None,
                       reason="unsloth is installed in this interpreter; this suite is about where it is not"),
]
NOT_INSTALLED = "unsloth is not installed"


@pytest.fixture(scope="module")
async def unsloth(tmp_path_factory) -> AsyncIterator:
    settings = UnslothSettings(home=tmp_path_factory.mktemp("unsloth-home"), port=0, metrics_port=-1,
                               host="127.0.0.1", grace_seconds=0)
    running = await start_server(UnslothService(settings))
    await running.startup
    yield running
    await stop_now(running)


async def test_capabilities_say_unavailable_with_the_reason(unsloth):
    async with grpc.aio.insecure_channel(unsloth.address) as channel:
        caps = await backend_pb2_grpc.BackendServiceStub(channel).Capabilities(capabilities_pb2.CapabilitiesRequest())
    assert caps.backend == "unsloth" and not caps.availability.available
    assert caps.availability.reason.startswith(NOT_INSTALLED) and "make unsloth-env" in caps.availability.reason
    assert list(caps.training.methods) == [train_pb2.TRAINING_METHOD_SFT, train_pb2.TRAINING_METHOD_DPO,
                                           train_pb2.TRAINING_METHOD_GRPO]
    assert "forgeway.v1.BackendService/Train" in caps.rpcs


async def test_health_is_not_serving(unsloth):
    async with grpc.aio.insecure_channel(unsloth.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "forgeway.v1.BackendService", "forgeway.v1.JobService"):
            reply = await health.Check(health_pb2.HealthCheckRequest(service=service))
            assert reply.status == health_pb2.HealthCheckResponse.NOT_SERVING, service


async def test_train_on_the_trainer_itself_is_unavailable_naming_the_reason(unsloth):
    req = train_pb2.TrainRequest(base_model="tiny", method=train_pb2.TRAINING_METHOD_SFT,
                                 dataset=train_pb2.DatasetSource(path="/nowhere.jsonl"),
                                 backend=train_pb2.TRAINING_BACKEND_UNSLOTH, allow_fallback=False)
    async with grpc.aio.insecure_channel(unsloth.address) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            async for _ in backend_pb2_grpc.BackendServiceStub(channel).Train(req, timeout=30):
                pass
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "unsloth cannot train here" in caught.value.details() and NOT_INSTALLED in caught.value.details()


@pytest.fixture(scope="module")
async def stack(unsloth, tmp_path_factory) -> AsyncIterator[dict]:
    """The real unsloth (unavailable) and TRL trainers behind a real gateway."""
    async with trl_service(tmp_path_factory.mktemp("trl-home")) as trl:
        backends = [{"name": "unsloth", "address": unsloth.address}, {"name": "trl", "address": trl.address}]
        gateway = await start_gateway(gateway_settings(backends), endpoints=1)
        pool = gateway.service.state.pool
        await wait_until(lambda: all(e.capabilities is not None for e in pool), 15, "both trainers' capabilities")
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}")
        yield {"backend": backend_pb2_grpc.BackendServiceStub(channel), "trl": trl}
        await channel.close()
        await stop_now(gateway)


@pytest.mark.trl
async def test_auto_falls_back_to_trl_with_the_reason_in_the_stream_and_the_job(stack):
    events = [r.event async for r in stack["backend"].Train(request(steps=2), timeout=240)]
    notices = [e.fallback for e in events if e.WhichOneof("kind") == "fallback"]
    assert len(notices) == 1 and (notices[0].requested, notices[0].used) == ("unsloth", "trl")
    assert notices[0].reason.startswith("unsloth unavailable") and NOT_INSTALLED in notices[0].reason
    assert_succeeded([e for e in events if e.sequence])  # the trainer's own numbering, without the gateway's notice
    job_id = events[0].job_id
    history = await stack["trl"].wait(job_id)  # recorded durably by the TRL trainer, replayed on watch
    durable = [e.fallback for e in history if e.WhichOneof("kind") == "fallback"]
    assert len(durable) == 1 and NOT_INSTALLED in durable[0].reason
    job = (await stack["trl"].jobs.GetJob(jobs_pb2.GetJobRequest(job_id=job_id))).job
    assert job.backend == "trl"


async def test_unsloth_without_fallback_is_unavailable_through_the_gateway(stack):
    req = request(steps=2, backend=train_pb2.TRAINING_BACKEND_UNSLOTH, allow_fallback=False)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for _ in stack["backend"].Train(req, timeout=60):
            pass
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    details = caught.value.details()
    assert "unsloth unavailable" in details and NOT_INSTALLED in details and "fallback to trl is disabled" in details

