"""The hf service's model catalogue over real gRPC: store entries appear when published, requests do not re-read the
store, LoadModel reads only under the allowed roots, and max_tokens must fit the context."""

from __future__ import annotations

import os
import shutil
import time

import grpc
import pytest

pytestmark = pytest.mark.hf

from forgeway.core.errors import from_rpc_error  # noqa: E402
from forgeway.core.modelstore import ModelStore  # noqa: E402
from forgeway.server.server import start_server  # noqa: E402
from forgeway.services.runtime.service import serving  # noqa: E402
from forgeway.v1 import backend_pb2_grpc, capabilities_pb2, generate_pb2, models_pb2, models_pb2_grpc  # noqa: E402

FINISH = generate_pb2.FinishReason


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    """(root, the tiny Llama outside any allowed root, an allowed root holding a copy of it)."""
    from forgeway.testing import build_tiny_llama

    root = tmp_path_factory.mktemp("hf-catalog")
    tiny = build_tiny_llama(root / "tiny")
    allowed = root / "allowed"
    shutil.copytree(tiny, allowed / "tiny")
    return root, tiny, allowed


@pytest.fixture(scope="module")
async def running(dirs):
    from forgeway.services.hf.engine import HFEngine
    from forgeway.services.hf.settings import HFSettings

    root, tiny, allowed = dirs
    settings = HFSettings(host="127.0.0.1", port=0, metrics_port=-1, home=root / "home", torch_threads=1,
                          model_roots=[allowed], models=[{"name": "base", "path": str(tiny)}])
    running = await start_server(serving(HFEngine(settings)))
    await running.startup
    assert running.service.ready, running.service.failure
    yield running
    await running.drain(0)


@pytest.fixture
async def channel(running):
    async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as chan:
        yield chan


def engine_of(running):
    return getattr(running.service, "engine", running.service)


def still(store_root):
    """Leave the store as if nothing had touched it for an hour."""
    when = time.time_ns() - 3600 * 10**9
    for path in [store_root, *store_root.iterdir(), *store_root.glob("*/forgeway.json")]:
        os.utime(path, ns=(when, when))


def ask(model: str, max_tokens: int | None = None, prompt: str = "Once upon a time") -> generate_pb2.GenerateRequest:
    sampling = generate_pb2.SamplingParams(**({} if max_tokens is None else {"max_tokens": max_tokens}))
    return generate_pb2.GenerateRequest(model=model, prompt=prompt, sampling=sampling)


async def listed(stub) -> dict:
    caps = await stub.Capabilities(capabilities_pb2.CapabilitiesRequest(), timeout=10)
    return {m.name: m for m in caps.models}


async def failure(call):
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    return from_rpc_error(info.value)


async def test_a_published_model_is_served_and_requests_do_not_reread_the_store(running, channel, dirs):
    _, tiny, _ = dirs
    stub = backend_pb2_grpc.BackendServiceStub(channel)
    store = ModelStore(engine_of(running).settings.home / "models")
    assert "fresh" not in await listed(stub)
    with store.writing("fresh") as folder:  # how a trainer publishes an artifact: one rename into models/
        shutil.copytree(tiny, folder, dirs_exist_ok=True)
        ModelStore.write_metadata(folder, provider="trl", base_model="base", method="sft")
    fresh = (await listed(stub))["fresh"]
    assert not fresh.loaded and fresh.context_length == 512
    reply = await stub.Generate(ask("fresh", 4), timeout=120)
    assert reply.model == "fresh" and reply.usage.completion_tokens == 4

    still(store.root)
    catalog = engine_of(running).catalog
    await listed(stub)
    scans = catalog.scans
    for _ in range(3):
        assert (await stub.Generate(ask("fresh", 2), timeout=60)).usage.completion_tokens == 2
    assert "fresh" in await listed(stub)
    assert catalog.scans == scans, "a request on an unchanged store read it again"


async def test_load_model_reads_only_under_the_allowed_roots(channel, dirs):
    root, tiny, allowed = dirs
    models = models_pb2_grpc.ModelServiceStub(channel)
    (allowed / "escape").symlink_to(tiny)
    (allowed / "empty").mkdir()
    (allowed / "bare").mkdir()
    (allowed / "bare" / "config.json").write_text("{}")
    cases = [
        ("/etc", grpc.StatusCode.PERMISSION_DENIED, None),
        (str(tiny), grpc.StatusCode.PERMISSION_DENIED, None),
        (str(allowed / "escape"), grpc.StatusCode.PERMISSION_DENIED, None),  # a link out of the root
        (str(allowed / ".." / "tiny"), grpc.StatusCode.PERMISSION_DENIED, None),
        (str(allowed / "empty"), grpc.StatusCode.INVALID_ARGUMENT, "source"),
        (str(allowed / "bare"), grpc.StatusCode.INVALID_ARGUMENT, "source"),  # a config transformers can't read
        (str(allowed / "missing"), grpc.StatusCode.NOT_FOUND, None),
    ]
    for source, code, field in cases:
        error = await failure(models.LoadModel(models_pb2.LoadModelRequest(name="m", source=source), timeout=60))
        assert error.code == code, (source, error.code, error.message)
        assert source in error.message, error.message
        if field:
            assert [f for f, _ in error.field_violations] == [field]
    loaded = await models.LoadModel(models_pb2.LoadModelRequest(name="allowed", source=str(allowed / "tiny")),
                                    timeout=120)
    assert loaded.model.name == "allowed" and loaded.model.loaded
    reply = await backend_pb2_grpc.BackendServiceStub(channel).Generate(ask("allowed", 3), timeout=60)
    assert reply.usage.completion_tokens == 3
    await models.UnloadModel(models_pb2.UnloadModelRequest(name="allowed"), timeout=60)


async def test_max_tokens_must_fit_the_context_with_the_prompt(channel):
    stub = backend_pb2_grpc.BackendServiceStub(channel)
    long_prompt = "river boat " * 150
    prompt_tokens = (await stub.Generate(ask("base", 1, long_prompt), timeout=60)).usage.prompt_tokens
    assert 256 < prompt_tokens < 500, "the prompt must leave less room than the default completion length"

    error = await failure(stub.Generate(ask("base", 1_000_000_000), timeout=30))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT and [f for f, _ in error.field_violations] == ["max_tokens"]
    assert "512" in error.message

    room = 512 - prompt_tokens
    error = await failure(stub.Generate(ask("base", room + 1, long_prompt), timeout=30))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT and [f for f, _ in error.field_violations] == ["max_tokens"]
    assert f"{prompt_tokens} + {room + 1} > 512" in error.message

    exact = await stub.Generate(ask("base", room, long_prompt), timeout=60)
    assert exact.usage.prompt_tokens == prompt_tokens and exact.usage.completion_tokens <= room
    unset = await stub.Generate(ask("base", None, long_prompt), timeout=60)  # no max_tokens: what the context leaves
    assert unset.usage.total_tokens == 512 and unset.choices[0].finish_reason == FINISH.FINISH_REASON_LENGTH
