"""Training through a real Unsloth service: `forgeway serve unsloth` run as its own process from .venv-unsloth
(`make unsloth-env`), on this machine's CPU (Unsloth's CPU fallback) or a GPU. Skipped, saying so, without it."""

from __future__ import annotations

import json
import math
import os
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest
from trl_harness import TEXT, PREFERENCES, request, rows, tiny, trl_service

from forgeway.services.unsloth import environment
from forgeway.testing import gateway_settings, start_gateway, stop_now, wait_serving, wait_until
from forgeway.server.ports import free_port
from forgeway.v1 import backend_pb2_grpc, capabilities_pb2, common_pb2, jobs_pb2, train_pb2

PYTHON = environment.unsloth_python()
pytestmark = [
    pytest.mark.unsloth, pytest.mark.slow,
    pytest.mark.skipif(PYTHON is None, reason=".venv-unsloth is absent (`make unsloth-env` builds it): training "
                       "through a real unsloth service is not tested here; the unavailable path is"),
]
START_SECONDS = 300


@pytest.fixture(scope="module")
def service(tmp_path_factory) -> Iterator[dict]:
    """`forgeway serve unsloth` from .venv-unsloth, SERVING; its home holds the tiny base models."""
    home = tmp_path_factory.mktemp("unsloth-service")
    port = free_port("127.0.0.1")
    log = home / "unsloth.log"
    command = [str(PYTHON), "-m", "forgeway.cli", "serve", "unsloth", "--port", str(port), "--host", "127.0.0.1",
               "--home", str(home), "--metrics-port", "-1", "--grace-seconds", "5", "--log-format", "text",
               "--min-dataset-rows", "2",  # the shared requests train on six rows
               "--allowed-roots", json.dumps([str(tiny("llama").parent)])]
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   env={**os.environ, "HF_HUB_OFFLINE": "1"})
    address = f"127.0.0.1:{port}"
    try:
        wait_serving(address, START_SECONDS, process, log)
        yield {"address": address, "home": home, "log": log}
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
async def backend(service) -> AsyncIterator[backend_pb2_grpc.BackendServiceStub]:
    async with grpc.aio.insecure_channel(service["address"]) as channel:
        yield backend_pb2_grpc.BackendServiceStub(channel)


async def capabilities(backend) -> capabilities_pb2.CapabilitiesResponse:
    return await backend.Capabilities(capabilities_pb2.CapabilitiesRequest())


async def rejection(backend, req: train_pb2.TrainRequest) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for _ in backend.Train(req, timeout=120):
            pass
    return caught.value


async def test_capabilities_report_the_device_it_trains_on(backend):
    caps = await capabilities(backend)
    assert caps.backend == "unsloth" and caps.availability.available
    assert caps.library_versions["unsloth"] and caps.library_versions["trl"]
    assert list(caps.training.tasks) == [common_pb2.TASK_TEXT_GENERATION]
    if caps.hardware.device == "cpu":  # the CPU fallback is allowed, and said
        assert caps.availability.reason.startswith("CPU fallback: no CUDA device")
        assert list(caps.training.methods) == [train_pb2.TRAINING_METHOD_SFT]
    else:
        assert caps.availability.reason.startswith("ready: unsloth")
        assert train_pb2.TRAINING_METHOD_GRPO in caps.training.methods


async def test_sft_with_lora_in_8_bit_trains_in_4_bit_with_a_notice(backend, service):
    req = request(steps=3, quantization=train_pb2.QuantizationParams(quantization=common_pb2.QUANTIZATION_8BIT),
                  output=train_pb2.TrainOutput(model_name="tiny-unsloth", formats=[
                      train_pb2.EXPORT_FORMAT_ADAPTER, train_pb2.EXPORT_FORMAT_MERGED]))
    events = [r.event async for r in backend.Train(req, timeout=600)]
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    states = [e.state for e in events if e.WhichOneof("kind") == "state"]
    assert states[-1].state == jobs_pb2.JOB_STATE_SUCCEEDED, [s.message for s in states]
    logs = [e.log for e in events if e.WhichOneof("kind") == "log"]
    assert any(l.level == "warning" and "quantization int8 was asked" in l.text and "nf4" in l.text for l in logs)
    assert any("with unsloth FastLanguageModel" in l.text and "4-bit nf4, LoRA" in l.text for l in logs)
    progress = [e.progress for e in events if e.WhichOneof("kind") == "progress" and e.progress.HasField("loss")]
    assert [p.step for p in progress] == [1, 2, 3] and all(math.isfinite(p.loss) for p in progress)
    artifacts = {e.artifact.format: Path(e.artifact.path) for e in events if e.WhichOneof("kind") == "artifact"}
    assert set(artifacts) == {"adapter", "merged"}
    metadata = json.loads((artifacts["adapter"] / "forgeway.json").read_text())
    assert metadata["provider"] == metadata["backend"] == "unsloth" and metadata["training"]["quantization"] == "nf4"
    assert (artifacts["adapter"] / "adapter_model.safetensors").is_file()
    from transformers import AutoModelForCausalLM  # the merged model loads in the main environment, for serving

    merged = AutoModelForCausalLM.from_pretrained(artifacts["merged"])
    assert merged.config.model_type == "llama"


async def test_other_tasks_are_invalid(backend):
    error = await rejection(backend, request(task=common_pb2.TASK_SUMMARIZATION))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "text generation only" in error.details()


async def test_an_unsupported_architecture_is_invalid_and_named(backend):
    error = await rejection(backend, request(base_model=str(tiny("seq2seq"))))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "does not train the t5 (T5ForConditionalGeneration) architecture" in error.details()


async def test_methods_beyond_sft_need_a_gpu(backend):
    if (await capabilities(backend)).hardware.device != "cpu":
        pytest.skip("on a GPU unsloth trains DPO and GRPO too")
    error = await rejection(backend, request(method=train_pb2.TRAINING_METHOD_DPO, dataset=rows(PREFERENCES)))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "CPU fallback unsloth trains sft" in error.details()


@pytest.mark.trl
async def test_through_the_gateway_auto_uses_unsloth_and_falls_back_only_for_what_it_cannot_train(service, tmp_path):
    async with trl_service(tmp_path / "trl") as trl:
        backends = [{"name": "unsloth", "address": service["address"]}, {"name": "trl", "address": trl.address}]
        gateway = await start_gateway(gateway_settings(backends))
        await wait_until(lambda: all(e.capabilities for e in gateway.service.state.pool), 15, "capabilities")
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
                stub = backend_pb2_grpc.BackendServiceStub(channel)
                sft = [r.event async for r in stub.Train(request(steps=2, dataset=rows(TEXT)), timeout=600)]
                assert not [e for e in sft if e.WhichOneof("kind") == "fallback"]
                assert any("with unsloth FastLanguageModel" in e.log.text for e in sft if e.WhichOneof("kind") == "log")
                async with grpc.aio.insecure_channel(service["address"]) as direct:
                    on_cpu = (await capabilities(backend_pb2_grpc.BackendServiceStub(direct))).hardware.device == "cpu"
                if on_cpu:
                    dpo = [r.event async for r in stub.Train(
                        request(method=train_pb2.TRAINING_METHOD_DPO, dataset=rows(PREFERENCES), steps=2), timeout=600)]
                    notice = [e.fallback for e in dpo if e.WhichOneof("kind") == "fallback"]
                    assert notice and notice[0].used == "trl" and "does not train TRAINING_METHOD_DPO" in notice[0].reason
                    assert dpo[-1].state.state == jobs_pb2.JOB_STATE_SUCCEEDED
                # An architecture unsloth declines (before any job exists) is retried on trl with the notice.
                t5 = [r.event async for r in stub.Train(request(base_model=str(tiny("seq2seq")), steps=1), timeout=600)]
                notice = [e.fallback for e in t5 if e.WhichOneof("kind") == "fallback"]
                assert notice and notice[0].used == "trl" and "unsloth declined" in notice[0].reason
                assert "T5ForConditionalGeneration" in notice[0].reason
                assert t5[-1].WhichOneof("kind") == "state" and t5[-1].state.state in (
                    jobs_pb2.JOB_STATE_SUCCEEDED, jobs_pb2.JOB_STATE_FAILED)  # trl's own verdict on a T5 as a causal LM
        finally:
            await stop_now(gateway)
