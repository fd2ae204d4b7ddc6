"""Batching in the hf service: concurrent requests share steps yet give what they give alone; slots and queue."""

from __future__ import annotations

import asyncio

import grpc
import pytest

pytestmark = pytest.mark.hf

from forgeway.services.runtime.service import serving
from forgeway.core.errors import from_rpc_error  # noqa: E402
from forgeway.server.server import start_server  # noqa: E402
from forgeway.v1 import backend_pb2_grpc, capabilities_pb2, generate_pb2, models_pb2, models_pb2_grpc  # noqa: E402

PROMPTS = [f"Story {i}: the {w} by the river" + " and the boat" * i
           for i, w in enumerate(["mill", "bridge", "harbour", "gull", "net", "stone", "market", "lantern"])]


def build_adapter(base_dir, out_dir, seed: int):
    """A random (non-zero) LoRA adapter on the tiny Llama, so it visibly changes the output."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base_dir)
    config = LoraConfig(r=4, lora_alpha=16, target_modules=["q_proj", "v_proj", "down_proj"], init_lora_weights=False)
    get_peft_model(model, config).save_pretrained(out_dir)
    return out_dir


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    from forgeway.testing import build_tiny_llama

    root = tmp_path_factory.mktemp("hf-batch")
    tiny = build_tiny_llama(root / "tiny")
    return root, tiny, build_adapter(tiny, root / "lora-a", 1), build_adapter(tiny, root / "lora-b", 2)


async def serve(home, models, **settings):
    from forgeway.services.hf.engine import HFEngine
    from forgeway.services.hf.settings import HFSettings

    running = await start_server(serving(HFEngine(HFSettings(host="127.0.0.1", port=0, metrics_port=-1, home=home,
                                                     torch_threads=1, models=models, **settings))))
    await running.startup
    assert running.service.ready, running.service.failure
    return running


@pytest.fixture(scope="module")
async def channel(model_dirs):
    root, tiny, lora_a, lora_b = model_dirs
    models = [{"name": "tiny", "path": str(tiny), "adapters": [{"name": "a", "path": str(lora_a)},
                                                               {"name": "b", "path": str(lora_b)}]}]
    running = await serve(root / "home", models, model_roots=[root])  # LoadModel reads the adapters from root
    async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as chan:
        yield chan
    await running.drain(0)


@pytest.fixture
def stub(channel):
    return backend_pb2_grpc.BackendServiceStub(channel)


def request(prompt: str, max_tokens: int = 24, **fields) -> generate_pb2.GenerateRequest:
    sampling = generate_pb2.SamplingParams(max_tokens=max_tokens, **fields.pop("sampling", {}))
    return generate_pb2.GenerateRequest(model=fields.pop("model", "tiny"), prompt=prompt, sampling=sampling, **fields)


async def streamed(stub, r) -> tuple[str, generate_pb2.GenerateResponse]:
    messages = [m async for m in stub.GenerateStream(r, timeout=60)]
    return "".join(m.delta.text for m in messages[:-1]), messages[-1].final


async def test_eight_concurrent_streams_match_their_runs_alone(stub):
    alone = [(await stub.Generate(request(p, 32), timeout=60)).choices[0].text for p in PROMPTS]
    together = await asyncio.gather(*(streamed(stub, request(p, 32)) for p in PROMPTS))
    for prompt, expected, (text, final) in zip(PROMPTS, alone, together):
        assert text == expected == final.choices[0].text, prompt


async def test_a_seed_gives_the_same_sample_beside_any_batch_mates(stub):
    sampled = request(PROMPTS[0], 24, sampling={"temperature": 1.2, "top_k": 40, "seed": 99})
    alone = (await stub.Generate(sampled, timeout=60)).choices[0].text
    mates = [request(p, 40, sampling={"temperature": 0.9, "seed": i}) for i, p in enumerate(PROMPTS[1:5])]
    results = await asyncio.gather(stub.Generate(sampled, timeout=60), *(stub.Generate(m, timeout=60) for m in mates))
    assert results[0].choices[0].text == alone


async def test_adapters_in_one_mixed_batch_match_their_runs_alone(stub):
    names = ["", "a", "b", "", "a"]
    alone = [(await stub.Generate(request(PROMPTS[2], adapter=n), timeout=60)).choices[0].text for n in names]
    together = await asyncio.gather(*(stub.Generate(request(PROMPTS[2], adapter=n), timeout=60) for n in names))
    assert [r.choices[0].text for r in together] == alone
    assert len({alone[0], alone[1], alone[2]}) == 3, "each adapter changes the output"


async def test_a_short_request_does_not_wait_for_a_long_one(stub):
    alone = (await stub.Generate(request(PROMPTS[0], 400), timeout=60)).choices[0].text
    short_alone = (await stub.Generate(request(PROMPTS[1], 4), timeout=60)).choices[0].text
    long_call = stub.GenerateStream(request(PROMPTS[0], 400), timeout=60)
    first = await long_call.read()
    assert first.WhichOneof("event") == "delta"
    short = await stub.Generate(request(PROMPTS[1], 4), timeout=60)
    assert short.usage.completion_tokens == 4 and short.choices[0].text == short_alone
    rest = []
    while (message := await long_call.read()) is not grpc.aio.EOF:
        rest.append(message)
    assert rest[-1].WhichOneof("event") == "final", "the long stream was still running when the short one ended"
    assert len(rest) > 1
    # the short request joined the running batch and left it: the long one's text is what it is alone
    assert first.delta.text + "".join(m.delta.text for m in rest[:-1]) == rest[-1].final.choices[0].text == alone


async def test_adapters_load_and_unload_at_run_time(channel, stub, model_dirs):
    models = models_pb2_grpc.ModelServiceStub(channel)
    _, _, _, lora_b = model_dirs
    loaded = await models.LoadModel(models_pb2.LoadModelRequest(name="c", source=str(lora_b), base_model="tiny"),
                                    timeout=60)
    assert loaded.model.name == "c"
    caps = await stub.Capabilities(capabilities_pb2.CapabilitiesRequest(), timeout=10)
    assert "c" in next(m for m in caps.models if m.name == "tiny").adapters
    via_adapter = await stub.Generate(request(PROMPTS[3], adapter="c"), timeout=60)
    via_name = await stub.Generate(request(PROMPTS[3], model="c"), timeout=60)
    same_weights = await stub.Generate(request(PROMPTS[3], adapter="b"), timeout=60)
    assert via_adapter.choices[0].text == via_name.choices[0].text == same_weights.choices[0].text
    await models.UnloadModel(models_pb2.UnloadModelRequest(name="c"), timeout=60)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Generate(request(PROMPTS[3], adapter="c"), timeout=60)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


async def test_unloading_every_adapter_brings_back_the_plain_model(model_dirs):
    root, tiny, lora_a, _ = model_dirs
    running = await serve(root / "home-unload", [{"name": "tiny", "path": str(tiny),
                                                  "adapters": [{"name": "a", "path": str(lora_a)}]}],
                          model_roots=[root])
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as chan:
            stub, models = backend_pb2_grpc.BackendServiceStub(chan), models_pb2_grpc.ModelServiceStub(chan)
            base = (await stub.Generate(request(PROMPTS[4]), timeout=60)).choices[0].text
            adapted = (await stub.Generate(request(PROMPTS[4], adapter="a"), timeout=60)).choices[0].text
            await models.UnloadModel(models_pb2.UnloadModelRequest(name="a"), timeout=60)
            assert (await stub.Generate(request(PROMPTS[4]), timeout=60)).choices[0].text == base
            await models.LoadModel(models_pb2.LoadModelRequest(name="a", source=str(lora_a), base_model="tiny"),
                                   timeout=60)
            assert (await stub.Generate(request(PROMPTS[4], adapter="a"), timeout=60)).choices[0].text == adapted
    finally:
        await running.drain(0)


@pytest.fixture(scope="module")
async def one_slot(model_dirs):
    """A service with one batch slot and room for two waiting requests."""
    root, tiny, _, _ = model_dirs
    running = await serve(root / "home-one", [{"name": "tiny", "path": str(tiny)}], max_concurrency=1, max_queue=2)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as chan:
        yield backend_pb2_grpc.BackendServiceStub(chan)
    await running.drain(0)


async def until(predicate, stub, tries: int = 500) -> capabilities_pb2.Load:
    for _ in range(tries):
        load = (await stub.Capabilities(capabilities_pb2.CapabilitiesRequest(), timeout=10)).load
        if predicate(load):
            return load
        await asyncio.sleep(0.01)
    raise AssertionError(f"load never reached the expected state: {load}")


async def occupy(stub) -> grpc.aio.UnaryStreamCall:
    """A long stream holding the only slot, once it is decoding."""
    call = stub.GenerateStream(request(PROMPTS[0], 450), timeout=60)
    assert (await call.read()).WhichOneof("event") == "delta"
    return call


async def test_past_the_queue_limit_requests_are_refused_with_retry_info(one_slot):
    running = await occupy(one_slot)
    waiting = [asyncio.ensure_future(one_slot.Generate(request(p, 4), timeout=60)) for p in PROMPTS[1:3]]
    await until(lambda load: load.queue_depth == 2, one_slot)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await one_slot.Generate(request(PROMPTS[3], 4), timeout=60)
    error = from_rpc_error(info.value)
    assert error.code == grpc.StatusCode.RESOURCE_EXHAUSTED and error.retry_after and error.retry_after > 0
    running.cancel()
    for reply in await asyncio.gather(*waiting):
        assert reply.usage.completion_tokens == 4, "the cancelled stream freed its slot for the waiting ones"
    load = await until(lambda load: load.in_flight == 0 and load.queue_depth == 0, one_slot)
    assert load.max_concurrency == 1 and load.max_queue == 2


async def test_the_higher_priority_request_is_served_first(one_slot):
    running = await occupy(one_slot)
    finished: list[str] = []

    async def call(name: str, priority: int) -> None:
        await one_slot.Generate(request(PROMPTS[1], 4, priority=priority), timeout=60)
        finished.append(name)

    low = asyncio.ensure_future(call("low", 0))
    await until(lambda load: load.queue_depth == 1, one_slot)
    high = asyncio.ensure_future(call("high", 5))
    await until(lambda load: load.queue_depth == 2, one_slot)
    running.cancel()
    await asyncio.gather(low, high)
    assert finished == ["high", "low"]
