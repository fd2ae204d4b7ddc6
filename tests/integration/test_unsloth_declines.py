"""An Unsloth trainer that can train but declines a base model's architecture, behind a real gateway beside a real
TRL trainer: a backend-auto job (Train or CreateJob) is retried on trl, with the reason in the job's history; an
explicit unsloth request gets the decline itself.

Unsloth is not installed here, so its start-up probe cannot pass: the engine below is the production UnslothEngine
and service with only the probe's verdict given instead of found. Everything a job meets (validation, where the
architecture is declined with ErrorInfo fallback=trl; the runner, servicers, interceptor; the gateway) is the
production code path."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from trl_harness import assert_succeeded, request, tiny, trl_service

from forgeway.server.server import start_server
from forgeway.services.training.service import TrainerService
from forgeway.services.unsloth.availability import CPU_FALLBACK, Verdict
from forgeway.services.unsloth.engine import UnslothEngine
from forgeway.services.unsloth.settings import UnslothSettings
from forgeway.testing import gateway_settings, start_gateway, stop_now
from forgeway.v1 import backend_pb2_grpc, capabilities_pb2, jobs_pb2, train_pb2

pytestmark = [pytest.mark.trl, pytest.mark.slow]


class UnslothWithoutProbe(UnslothEngine):
    """UnslothEngine whose start-up verdict is given: Unsloth's CPU fallback (it trains SFT)."""

    async def prepare(self) -> None:
        self.verdict = Verdict(True, CPU_FALLBACK, "CPU fallback: no CUDA device; unsloth trains on CPU (SFT only)",
                               device="cpu")


class UnslothWithoutProbeService(TrainerService):
    Engine = UnslothWithoutProbe


@pytest.fixture(scope="module")
async def stack(tmp_path_factory) -> AsyncIterator[dict]:
    """Unsloth (training qwen3 only, so it declines the tiny llama) and TRL behind a gateway."""
    settings = UnslothSettings(home=tmp_path_factory.mktemp("unsloth-home"), port=0, metrics_port=-1,
                               host="127.0.0.1", grace_seconds=0, architectures=["qwen3"],
                               allowed_roots=[tiny("llama").parent])
    unsloth = await start_server(UnslothWithoutProbeService(settings))
    await unsloth.startup
    assert unsloth.service.ready, unsloth.service.failure
    async with trl_service(tmp_path_factory.mktemp("trl-home")) as trl:
        backends = [{"name": "unsloth", "address": unsloth.address}, {"name": "trl", "address": trl.address}]
        gateway = await start_gateway(gateway_settings(backends))
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}")
        yield {"backend": backend_pb2_grpc.BackendServiceStub(channel), "trl": trl, "unsloth": unsloth}
        await channel.close()
        await stop_now(gateway)
    await stop_now(unsloth)


async def test_unsloth_is_available_and_the_gateway_routes_auto_to_it(stack):
    async with grpc.aio.insecure_channel(stack["unsloth"].address) as channel:
        caps = await backend_pb2_grpc.BackendServiceStub(channel).Capabilities(capabilities_pb2.CapabilitiesRequest())
    assert caps.backend == "unsloth" and caps.availability.available
    assert "forgeway.v1.BackendService/CreateJob" in caps.rpcs


def declined(notice: jobs_pb2.Fallback) -> bool:
    return ((notice.requested, notice.used) == ("unsloth", "trl") and notice.reason.startswith("unsloth declined")
            and "does not train the llama (LlamaForCausalLM) architecture" in notice.reason)


async def test_train_with_backend_auto_is_retried_on_trl_when_unsloth_declines_the_architecture(stack):
    events = [r.event async for r in stack["backend"].Train(request(steps=1), timeout=240)]
    notices = [e.fallback for e in events if e.WhichOneof("kind") == "fallback"]
    assert len(notices) == 1 and declined(notices[0]), notices
    assert_succeeded(events)
    job = (await stack["trl"].jobs.GetJob(jobs_pb2.GetJobRequest(job_id=events[0].job_id))).job
    assert job.backend == "trl"


async def test_create_job_with_backend_auto_is_retried_on_trl_when_unsloth_declines_the_architecture(stack):
    job = (await stack["backend"].CreateJob(train_pb2.CreateJobRequest(train=request(steps=1)), timeout=60)).job
    assert job.backend == "trl"  # the fallback is recorded before the trainer answers
    history = await stack["trl"].wait(job.id)
    notices = [e.fallback for e in history if e.WhichOneof("kind") == "fallback"]
    assert len(notices) == 1 and declined(notices[0]), notices
    assert_succeeded(history)


async def test_an_explicit_unsloth_request_gets_the_decline(stack):
    explicit = request(steps=1, backend=train_pb2.TRAINING_BACKEND_UNSLOTH)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stack["backend"].CreateJob(train_pb2.CreateJobRequest(train=explicit), timeout=60)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "does not train the llama" in caught.value.details() and "use backend trl" in caught.value.details()
