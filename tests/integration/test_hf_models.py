"""The hf service's models: summarization and QA tasks, the model store, Capabilities, failures, the CLI."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

pytestmark = pytest.mark.hf

from forgeway.services.runtime.service import serving
from forgeway.testing import wait_serving  # noqa: E402
from forgeway.server.server import start_server  # noqa: E402
from forgeway.v1 import backend_pb2_grpc, capabilities_pb2, common_pb2, generate_pb2  # noqa: E402

FINISH = generate_pb2.FinishReason
CONTEXT = "The old mill stands by the river. Anna repairs the boats every spring, and the gulls watch her work."
SERVING = health_pb2.HealthCheckResponse.SERVING


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    from forgeway.testing import build_tiny_llama, build_tiny_qa, build_tiny_seq2seq

    root = tmp_path_factory.mktemp("hf-models")
    build_tiny_seq2seq(root / "t5")
    build_tiny_qa(root / "qa")
    stored = build_tiny_llama(root / "home" / "models" / "stored")
    (stored / "forgeway.json").write_text(json.dumps({"base_model": "tiny", "method": "sft"}))  # legacy: no provider
    return root


def settings(root, **values):
    from forgeway.services.hf.settings import HFSettings

    return HFSettings(host="127.0.0.1", port=0, metrics_port=-1, home=root / "home", torch_threads=1, **values)


@pytest.fixture(scope="module")
async def stub(root):
    from forgeway.services.hf.engine import HFEngine

    models = [{"name": "summarizer", "path": str(root / "t5")}, {"name": "reader", "path": str(root / "qa")}]
    running = await start_server(serving(HFEngine(settings(root, models=models))))
    await running.startup
    assert running.service.ready, running.service.failure
    async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
        yield backend_pb2_grpc.BackendServiceStub(channel)
    await running.drain(0)


async def capabilities(stub) -> capabilities_pb2.CapabilitiesResponse:
    return await stub.Capabilities(capabilities_pb2.CapabilitiesRequest(), timeout=10)


async def test_capabilities_name_each_model_task_and_the_machine(stub):
    caps = await capabilities(stub)
    models = {m.name: m for m in caps.models}
    assert models["summarizer"].task == common_pb2.TASK_SUMMARIZATION
    assert models["reader"].task == common_pb2.TASK_EXTRACTIVE_QUESTION_ANSWERING
    assert models["summarizer"].context_length == 512 and models["summarizer"].loaded
    assert models["stored"].loaded is False and models["stored"].task == common_pb2.TASK_TEXT_GENERATION
    assert caps.backend == "hf" and caps.availability.available
    assert caps.hardware.device == "cpu" and caps.hardware.cpu_cores > 0 and caps.hardware.ram_total > 0
    assert caps.load.max_concurrency > 0 and caps.load.in_flight == 0
    assert caps.generation.json_schema and caps.generation.adapters and not caps.generation.grammar
    assert caps.library_versions["transformers"] and caps.library_versions["torch"]
    # What a model's task cannot do is declared with it, so the gateway refuses it before routing (check_servable).
    assert "best span" in models["reader"].unsupported_features["logprobs"]
    assert set(models["summarizer"].unsupported_features) == {"tools", "reasoning"}  # LoRA adapters are served
    assert "adapters" not in models["reader"].unsupported_features
    assert not models["stored"].unsupported_features


async def test_summarization_streams_and_ends(stub):
    r = generate_pb2.GenerateRequest(model="summarizer", summarize=generate_pb2.SummarizeInput(document=CONTEXT),
                                     sampling=generate_pb2.SamplingParams(max_tokens=12))
    unary = await stub.Generate(r, timeout=30)
    messages = [m async for m in stub.GenerateStream(r, timeout=30)]
    assert "".join(m.delta.text for m in messages[:-1]) == messages[-1].final.choices[0].text == unary.choices[0].text
    assert unary.usage.prompt_tokens > 10 and 1 <= unary.usage.completion_tokens <= 12
    assert unary.choices[0].finish_reason in (FINISH.FINISH_REASON_STOP, FINISH.FINISH_REASON_LENGTH)


async def test_summarization_with_n_and_a_seed(stub):
    sampling = generate_pb2.SamplingParams(max_tokens=8, temperature=1.0, seed=4)
    r = generate_pb2.GenerateRequest(model="summarizer", summarize=generate_pb2.SummarizeInput(document=CONTEXT),
                                     n=2, sampling=sampling)
    first, second = await stub.Generate(r, timeout=30), await stub.Generate(r, timeout=30)
    assert [c.text for c in first.choices] == [c.text for c in second.choices]
    assert len(first.choices) == 2


async def test_extractive_qa_returns_a_span_of_the_context(stub):
    r = generate_pb2.GenerateRequest(model="reader", question_answer=generate_pb2.QuestionAnswerInput(
        context=CONTEXT, question="Who repairs the boats?"))
    reply = await stub.Generate(r, timeout=30)
    choice = reply.choices[0]
    span = choice.answer_span
    assert 0 <= span.start < span.end <= len(CONTEXT)
    assert choice.text == CONTEXT[span.start:span.end] and choice.text.strip() == choice.text
    assert 0.0 < span.score <= 1.0
    assert choice.finish_reason == FINISH.FINISH_REASON_STOP and reply.usage.completion_tokens >= 1


@pytest.mark.parametrize("field, value, feature", [
    ("temperature", 0.5, "temperature"), ("stop", None, "stop")])
async def test_qa_rejects_what_it_cannot_honour(stub, field, value, feature):
    r = generate_pb2.GenerateRequest(model="reader", question_answer=generate_pb2.QuestionAnswerInput(
        context=CONTEXT, question="Who?"))
    if field == "stop":
        r.sampling.stop.append(".")
    else:
        setattr(r.sampling, field, value)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Generate(r, timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and feature in info.value.details()


async def test_a_prompt_to_a_summarization_model_names_the_task(stub):
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Generate(generate_pb2.GenerateRequest(model="summarizer", prompt="hi"), timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "summarization" in info.value.details()


async def test_a_store_model_loads_by_name_on_first_use(stub):
    r = generate_pb2.GenerateRequest(model="stored", prompt="Once upon a time",
                                     sampling=generate_pb2.SamplingParams(max_tokens=5))
    reply = await stub.Generate(r, timeout=120)
    assert reply.usage.completion_tokens == 5 and reply.model == "stored"
    stored = next(m for m in (await capabilities(stub)).models if m.name == "stored")
    assert stored.loaded and stored.context_length == 512


async def test_with_no_models_configured_the_store_is_served(root):
    from forgeway.services.hf.engine import HFEngine

    running = await start_server(serving(HFEngine(settings(root))))
    try:
        await running.startup
        assert running.service.ready, running.service.failure
        assert [(m.name, m.loaded) for m in running.service.models()] == [("stored", True)]
    finally:
        await running.drain(0)


async def health(port: int) -> int:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
        return reply.status


@pytest.mark.parametrize("model, reason", [
    ({"name": "gone", "path": "/no/such/model"}, "gone"),
    ({"name": "broken", "path": "models/broken"}, "broken"),
])
async def test_a_model_that_cannot_load_leaves_the_service_not_serving_with_the_reason(root, model, reason):
    from forgeway.services.hf.engine import HFEngine

    if model["name"] == "broken":  # a config without weights
        broken = root / "broken"
        broken.mkdir(exist_ok=True)
        shutil.copy(root / "t5" / "config.json", broken / "config.json")
        model = {**model, "path": str(broken)}
    running = await start_server(serving(HFEngine(settings(root, models=[model]))))
    try:
        await running.startup
        assert await health(running.port) != SERVING
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            caps = await backend_pb2_grpc.BackendServiceStub(channel).Capabilities(
                capabilities_pb2.CapabilitiesRequest(), timeout=10)
        assert not caps.availability.available and reason in caps.availability.reason
        assert [m.name for m in caps.models if not m.loaded][:1] == [model["name"]]
    finally:
        await running.drain(0)


@pytest.mark.parametrize("quantization, proto", [
    ("int8", common_pb2.QUANTIZATION_8BIT), ("nf4", common_pb2.QUANTIZATION_4BIT_NF4)])
async def test_bitsandbytes_quantized_models_serve(root, quantization, proto):
    from forgeway.services.hf.engine import HFEngine

    model = {"name": "q", "path": str(root / "home" / "models" / "stored"), "quantization": quantization}
    running = await start_server(serving(HFEngine(settings(root, models=[model]))))
    try:
        await running.startup
        assert running.service.ready, running.service.failure
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            stub = backend_pb2_grpc.BackendServiceStub(channel)
            reply = await stub.Generate(generate_pb2.GenerateRequest(
                model="q", prompt="Once upon a time", sampling=generate_pb2.SamplingParams(max_tokens=4)), timeout=120)
            caps = await capabilities(stub)
        assert reply.usage.completion_tokens == 4
        assert next(m for m in caps.models if m.name == "q").quantization == proto
    finally:
        await running.drain(0)


async def test_health_is_serving_only_after_load_and_warm_up(root):
    from forgeway.services.hf.engine import HFEngine

    running = await start_server(serving(HFEngine(settings(root, models=[{"name": "s", "path": str(root / "t5")}]))))
    try:
        assert await health(running.port) != SERVING, "health before the model loaded"
        await running.startup
        assert await health(running.port) == SERVING
    finally:
        await running.drain(0)


def test_forgeway_serve_hf_runs_as_a_process(root, tmp_path, free_port):
    model = shutil.copytree(root / "home" / "models" / "stored", tmp_path / "cli-model")
    command = [sys.executable, "-m", "forgeway.cli", "serve", "hf", "--port", str(free_port), "--metrics-port", "-1",
               "--home", str(tmp_path), "--model", str(model), "--model-name", "cli", "--torch-threads", "1"]
    log = tmp_path / "serve.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT)
    try:
        wait_serving(f"127.0.0.1:{free_port}", 180, process, log)
        channel = grpc.insecure_channel(f"127.0.0.1:{free_port}")
        reply = backend_pb2_grpc.BackendServiceStub(channel).Generate(generate_pb2.GenerateRequest(
            model="cli", prompt="Hello", sampling=generate_pb2.SamplingParams(max_tokens=3)), timeout=60)
        assert reply.usage.completion_tokens == 3
        channel.close()
    finally:
        process.terminate()
        assert process.wait(timeout=30) == 0
