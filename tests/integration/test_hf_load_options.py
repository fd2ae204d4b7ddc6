"""LoadModel's options on a real hf service over gRPC (LlamaForge's Hugging Face parameters): device, torch_dtype,
trust_remote_code (only where the operator allows it), cache_dir (only under the allowed roots), max_length."""

from __future__ import annotations

import grpc
import pytest

pytestmark = pytest.mark.hf

from forgeway.testing.rpc import rpc_failure, serve_engine, violated_fields  # noqa: E402
from forgeway.v1 import backend_pb2_grpc, capabilities_pb2, generate_pb2, models_pb2, models_pb2_grpc  # noqa: E402

HUB_ID = "forgeway-test/tiny-llama"  # found only in the hub cache the tests build


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    """(allowed root: tiny Llama, its remote-code copy, a hub cache holding it; a folder outside every root)."""
    from forgeway.testing import build_tiny_llama
    from forgeway.testing.hub import build_hub_cache, build_remote_code_llama

    root = tmp_path_factory.mktemp("hf-load-options")
    allowed = root / "allowed"
    tiny = build_tiny_llama(allowed / "tiny")
    build_remote_code_llama(allowed / "remote", tiny)
    build_hub_cache(allowed / "hub-cache", HUB_ID, tiny)
    (root / "outside").mkdir()
    return allowed, root / "outside"


async def start(dirs, allow_remote_code: bool):
    from forgeway.services.hf.engine import HFEngine
    from forgeway.services.hf.settings import HFSettings

    allowed, _ = dirs
    settings = HFSettings(host="127.0.0.1", port=0, metrics_port=-1, home=allowed.parent / f"home-{allow_remote_code}",
                          torch_threads=1, model_roots=[allowed], allow_remote_code=allow_remote_code,
                          models=[{"name": "base", "path": str(allowed / "tiny")}])
    return await serve_engine(HFEngine(settings))


@pytest.fixture(scope="module")
async def strict(dirs):
    """The service as it ships: models' own code is not run."""
    running = await start(dirs, allow_remote_code=False)
    yield running
    await running.drain(0)


@pytest.fixture(scope="module")
async def permissive(dirs):
    """A service whose operator set allow_remote_code."""
    running = await start(dirs, allow_remote_code=True)
    yield running
    await running.drain(0)


class Client:
    """ModelService and BackendService stubs on one channel, and the engine behind them (to look at its weights)."""

    def __init__(self, running, channel):
        self.engine = running.service.engine if hasattr(running.service, "engine") else running.service
        self.models = models_pb2_grpc.ModelServiceStub(channel)
        self.backend = backend_pb2_grpc.BackendServiceStub(channel)

    def load(self, name: str, source: str, **options: str):
        return self.models.LoadModel(models_pb2.LoadModelRequest(name=name, source=source, options=options),
                                     timeout=120)

    async def unload(self, *names: str) -> None:
        for name in names:
            await self.models.UnloadModel(models_pb2.UnloadModelRequest(name=name), timeout=60)

    def generate(self, model: str, prompt: str = "Once upon a time", max_tokens: int = 3):
        request = generate_pb2.GenerateRequest(model=model, prompt=prompt,
                                               sampling=generate_pb2.SamplingParams(max_tokens=max_tokens))
        return self.backend.Generate(request, timeout=60)

    def weights(self, name: str):
        """The served torch module."""
        return self.engine.served[name].runner.loaded.model


@pytest.fixture
async def strict_client(strict):
    async with grpc.aio.insecure_channel(f"127.0.0.1:{strict.port}") as channel:
        yield Client(strict, channel)


@pytest.fixture
async def permissive_client(permissive):
    async with grpc.aio.insecure_channel(f"127.0.0.1:{permissive.port}") as channel:
        yield Client(permissive, channel)


async def test_present_devices_load_and_absent_ones_are_refused_naming_the_option(strict_client, dirs):
    import torch

    from forgeway.services.hf.load_options import present_devices

    client, tiny = strict_client, str(dirs[0] / "tiny")
    present = present_devices()
    auto = next((d for d in present if d != "cpu"), "cpu")  # the first GPU, else cpu
    for device, expected in (("cpu", "cpu"), ("auto", auto)):
        loaded = await client.load("placed", tiny, device=device)
        assert loaded.model.loaded
        assert client.weights("placed").device == torch.device(expected)
        assert (await client.generate("placed")).usage.completion_tokens == 3
        await client.unload("placed")

    absent = [d for d in ("cuda", "cuda:1", "cuda:7", "mps") if {"cuda": "cuda:0"}.get(d, d) not in present]
    assert absent, "every device asked for is present here"
    for device in absent:
        error = await rpc_failure(client.load("elsewhere", tiny, device=device))
        assert error.code == grpc.StatusCode.FAILED_PRECONDITION, (device, error.message)
        assert error.message.startswith(f"options.device: device {device} is not present"), error.message
        assert f"present: {', '.join(present)}" in error.message
        assert error.error_info.metadata["field"] == "options.device"
    for device in ("tpu", "cuda:x", ""):
        error = await rpc_failure(client.load("elsewhere", tiny, device=device))
        assert error.code == grpc.StatusCode.INVALID_ARGUMENT and violated_fields(error) == {"options.device"}
    assert "elsewhere" not in {m.name for m in (await client.models.ListModels(models_pb2.ListModelsRequest())).models}


async def test_torch_dtype_is_the_dtype_the_weights_load_in(strict_client, dirs):
    import torch

    client, tiny = strict_client, str(dirs[0] / "tiny")
    spellings = {"half": ("float16", torch.float16), "bf16": ("torch.bfloat16", torch.bfloat16),
                 "full": ("torch.float32", torch.float32), "auto": ("auto", torch.float32)}  # auto: float32 on cpu
    for name, (dtype, _) in spellings.items():
        await client.load(name, tiny, torch_dtype=dtype)
    for name, (_, expected) in spellings.items():  # loaded side by side: one set of weights per dtype
        assert {p.dtype for p in client.weights(name).parameters()} == {expected}, name
        assert (await client.generate(name)).usage.completion_tokens == 3
    await client.unload(*spellings)

    for dtype in ("float8", "int4", "torch.half16", ""):
        error = await rpc_failure(client.load("odd", tiny, torch_dtype=dtype))
        assert error.code == grpc.StatusCode.INVALID_ARGUMENT and violated_fields(error) == {"options.torch_dtype"}


async def test_remote_code_is_refused_unless_the_operator_allows_it(strict_client, dirs):
    client, allowed = strict_client, dirs[0]
    for source in ("tiny", "remote"):
        error = await rpc_failure(client.load("trusted", str(allowed / source), trust_remote_code="true"))
        assert error.code == grpc.StatusCode.PERMISSION_DENIED, error.message
        assert error.message.startswith("options.trust_remote_code:") and "allow_remote_code" in error.message
    error = await rpc_failure(client.load("trusted", str(allowed / "tiny"), trust_remote_code="maybe"))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT and violated_fields(error) == {"options.trust_remote_code"}

    error = await rpc_failure(client.load("custom", str(allowed / "remote")))  # its code is never run unasked
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT and violated_fields(error) == {"options.trust_remote_code"}
    assert "auto_map" in error.message

    loaded = await client.load("untrusting", str(allowed / "tiny"), trust_remote_code="false")
    assert loaded.model.loaded
    await client.unload("untrusting")  # it shared the weights of "base", loaded the same way: those stay
    assert (await client.generate("base")).usage.completion_tokens == 3


async def test_an_allowed_remote_code_model_runs_its_own_classes(permissive_client, dirs):
    from forgeway.testing.hub import REMOTE_CLASS

    client, allowed = permissive_client, dirs[0]
    error = await rpc_failure(client.load("custom", str(allowed / "remote")))  # allowed, but not asked for
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT and violated_fields(error) == {"options.trust_remote_code"}

    loaded = await client.load("custom", str(allowed / "remote"), trust_remote_code="true")
    assert loaded.model.loaded and loaded.model.context_length == 512
    model = client.weights("custom")
    assert type(model).__name__ == REMOTE_CLASS and type(model).__module__.startswith("transformers_modules.")
    assert (await client.generate("custom")).usage.completion_tokens == 3

    await client.load("plain", str(allowed / "tiny"), trust_remote_code="True")  # a model with no code of its own
    assert type(client.weights("plain")).__name__ == "LlamaForCausalLM"
    await client.unload("custom", "plain")


async def test_cache_dir_finds_hub_models_and_stays_under_the_allowed_roots(strict_client, dirs):
    client, (allowed, outside) = strict_client, dirs
    error = await rpc_failure(client.load("hub", HUB_ID))  # not in the service's own hub cache
    assert error.code == grpc.StatusCode.NOT_FOUND, error.message

    loaded = await client.load("hub", HUB_ID, cache_dir=str(allowed / "hub-cache"))
    assert loaded.model.loaded and loaded.model.source == HUB_ID
    assert (await client.generate("hub")).usage.completion_tokens == 3
    await client.unload("hub")

    for cache_dir in (str(outside), str(allowed / ".." / "outside"), "/tmp"):
        error = await rpc_failure(client.load("hub", HUB_ID, cache_dir=cache_dir))
        assert error.code == grpc.StatusCode.PERMISSION_DENIED, (cache_dir, error.message)
        assert error.message.startswith(f"options.cache_dir: {cache_dir} is outside the allowed roots")
    error = await rpc_failure(client.load("hub", HUB_ID, cache_dir=" "))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT and violated_fields(error) == {"options.cache_dir"}


async def test_max_length_caps_the_served_context(strict_client, dirs):
    client, tiny = strict_client, str(dirs[0] / "tiny")
    loaded = await client.load("short", tiny, max_length="48")
    assert loaded.model.context_length == 48
    caps = await client.backend.Capabilities(capabilities_pb2.CapabilitiesRequest(), timeout=10)
    assert {m.name: m.context_length for m in caps.models}["short"] == 48
    assert {m.name: m.context_length for m in caps.models}["base"] == 512

    long_prompt = "river boat " * 40
    prompt_tokens = (await client.generate("base", long_prompt, 1)).usage.prompt_tokens
    assert 48 < prompt_tokens < 512
    error = await rpc_failure(client.generate("short", long_prompt, 1))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT and violated_fields(error) == {"prompt"}
    assert "context length 48" in error.message
    error = await rpc_failure(client.generate("short", max_tokens=100))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT and violated_fields(error) == {"max_tokens"}
    await client.unload("short")

    same = await client.load("same", tiny, max_length="64", context_length="64")
    assert same.model.context_length == 64
    await client.unload("same")
    cases = [({"max_length": "64", "context_length": "32"}, "options.max_length"),
             ({"max_length": "1024"}, "options.max_length"),  # beyond the model's 512 positions
             ({"context_length": "1024"}, "options.context_length"),
             ({"max_length": "0"}, "options.max_length"), ({"max_length": "many"}, "options.max_length")]
    for options, field in cases:
        error = await rpc_failure(client.load("odd", tiny, **options))
        assert error.code == grpc.StatusCode.INVALID_ARGUMENT and violated_fields(error) == {field}, options


async def test_unknown_options_and_options_on_an_adapter_are_refused_by_name(strict_client, dirs):
    client, tiny = strict_client, str(dirs[0] / "tiny")
    error = await rpc_failure(client.load("odd", tiny, device="cpu", n_gpu_layers="99"))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT and violated_fields(error) == {"options.n_gpu_layers"}
    assert "torch_dtype" in error.message  # the known ones are listed

    request = models_pb2.LoadModelRequest(name="lora", source=tiny, base_model="base", options={"device": "cpu"})
    error = await rpc_failure(client.models.LoadModel(request, timeout=60))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT and violated_fields(error) == {"options.device"}


async def test_a_service_set_to_a_device_it_lacks_does_not_start(dirs):
    from forgeway.services.hf.engine import HFEngine
    from forgeway.services.hf.load_options import present_devices
    from forgeway.services.hf.settings import HFSettings

    allowed, _ = dirs
    device = next(d for d in ("mps", "cuda:7", "cuda:15") if d not in present_devices())
    settings = HFSettings(host="127.0.0.1", port=0, metrics_port=-1, home=allowed.parent / "home-elsewhere",
                          device=device, models=[{"name": "base", "path": str(allowed / "tiny")}])
    with pytest.raises(RuntimeError, match=f"device: device {device} is not present on this machine"):
        await serve_engine(HFEngine(settings))
