"""Upstream models loaded into the OpenAI proxy at run time (LlamaForge's add_model with backend openai): through a
real gateway (gRPC and its HTTP shim) to real llama-cpp-python servers, one of which wants an API key; the key
reaches that upstream and nothing else, and never shows in listings, errors or logs."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import grpc
import httpx
import openai
import pytest

from forgeway.core.enums import TASK
from forgeway.gateway.http.app import create_app
from forgeway.gateway.http.serve import BackgroundServer
from forgeway.services.openai_proxy.engine import OpenAIProxyEngine
from forgeway.services.openai_proxy.settings import OpenAIProxySettings
from forgeway.testing import (
    LLAMA_CPP_SETTINGS,
    LocalUpstream,
    free_port,
    rpc_failure,
    serve_engine,
    start_llama_server,
    tiny_model,
)
from forgeway.testing.gateway import gateway_settings, start_gateway, stop_now
from forgeway.v1 import backend_pb2_grpc, capabilities_pb2, generate_pb2, models_pb2, models_pb2_grpc

pytestmark = pytest.mark.llamacpp

KEY = "sk-runtime-0123456789abcdef"
WRONG_KEY = "sk-wrong-fedcba9876543210"
SECRETS = (KEY, WRONG_KEY, KEY[3:15], WRONG_KEY[3:15])


@pytest.fixture(scope="module")
def open_upstream() -> LocalUpstream:
    """The proxy's configured upstream: no key."""
    with start_llama_server(tiny_model()[0], model="tiny", n_ctx=512) as server:
        yield server


@pytest.fixture(scope="module")
def locked_upstream() -> LocalUpstream:
    """An upstream that answers only requests carrying KEY (llama-cpp-python's --api_key), under its own model id."""
    with start_llama_server(tiny_model()[0], model="tiny-locked", n_ctx=512, api_key=KEY) as server:
        yield server


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Every record of every logger (openai, httpx, the gateway and the services) at DEBUG."""
    caplog.set_level(logging.DEBUG)
    for name in ("openai", "httpx", "httpx2", "httpcore", "httpcore2", "forgeway", "uvicorn"):
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


@asynccontextmanager
async def proxy(base_url: str, **overrides) -> AsyncIterator[tuple[OpenAIProxyEngine, str]]:
    """The proxy in this process, serving `tiny` from base_url; yields the engine and its address."""
    values = {**LLAMA_CPP_SETTINGS, "models": [{"name": "tiny"}], "max_retries": 0, **overrides}
    engine = OpenAIProxyEngine(OpenAIProxySettings(host="127.0.0.1", port=0, metrics_port=-1, base_url=base_url,
                                                   **values))
    running = await serve_engine(engine)
    try:
        yield engine, f"127.0.0.1:{running.port}"
    finally:
        await running.drain(0)


def served_lines(upstream: LocalUpstream, path: str) -> int:
    """How many calls of `path` the upstream answered with 200 (uvicorn's access log)."""
    return sum(f'"POST {path} HTTP/1.1" 200' in line for line in upstream.log_path.read_text().splitlines())


def generate(model: str) -> generate_pb2.GenerateRequest:
    return generate_pb2.GenerateRequest(model=model, prompt="The old mill",
                                        sampling=generate_pb2.SamplingParams(max_tokens=3))


async def test_loaded_through_the_gateway_it_serves_with_its_key_and_unloads(open_upstream, locked_upstream,
                                                                             debug_logs):
    async with proxy(open_upstream.base_url, runtime_base_urls=[locked_upstream.base_url]) as (engine, address):
        gateway = await start_gateway(gateway_settings([address]))
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
                models = models_pb2_grpc.ModelServiceStub(channel)
                backend = backend_pb2_grpc.BackendServiceStub(channel)
                loaded = await models.LoadModel(models_pb2.LoadModelRequest(
                    name="remote", source="tiny-locked",
                    options={"backend": "openai", "api_key": KEY, "api_base": locked_upstream.base_url + "/"}),
                    timeout=60)
                assert loaded.model.name == "remote" and loaded.model.backend == "openai" and loaded.model.loaded
                assert loaded.model.source == locked_upstream.base_url

                before = served_lines(locked_upstream, "/v1/completions")
                reply = await backend.Generate(generate("remote"), timeout=60)
                assert reply.choices[0].text and reply.model == "remote"
                assert served_lines(locked_upstream, "/v1/completions") == before + 1, "the keyed upstream served it"
                chunks = [c async for c in backend.GenerateStream(generate("remote"), timeout=60)]
                assert chunks[-1].final.choices and served_lines(locked_upstream, "/v1/completions") == before + 2

                listed = await models.ListModels(models_pb2.ListModelsRequest(), timeout=30)
                caps = await backend.Capabilities(capabilities_pb2.CapabilitiesRequest(), timeout=30)
                assert {"remote", "tiny"} <= {m.name for m in listed.models}

                await models.UnloadModel(models_pb2.UnloadModelRequest(name="remote"), timeout=30)
                gone = await rpc_failure(backend.Generate(generate("remote"), timeout=30))
                assert gone.code == grpc.StatusCode.NOT_FOUND, gone.message
                assert "remote" not in {m.name for m in (await models.ListModels(
                    models_pb2.ListModelsRequest(), timeout=30)).models}
                again = await rpc_failure(models.UnloadModel(models_pb2.UnloadModelRequest(name="remote"), timeout=30))
                assert again.code == grpc.StatusCode.NOT_FOUND, again.message
                static = await rpc_failure(models.UnloadModel(models_pb2.UnloadModelRequest(name="tiny"), timeout=30))
                assert static.code == grpc.StatusCode.FAILED_PRECONDITION and "settings" in static.message
        finally:
            await stop_now(gateway)
    seen = debug_logs.text + str(listed) + str(caps) + gone.message + repr(engine.settings) + repr(list(engine._runtime))
    assert any(r.name.startswith("openai") and r.levelno == logging.DEBUG for r in debug_logs.records), "captured"
    assert not [s for s in SECRETS if s in seen]


async def test_the_http_shim_loads_calls_and_deletes_it(open_upstream, locked_upstream, debug_logs):
    async with proxy(open_upstream.base_url, runtime_base_urls=[locked_upstream.base_url]) as (_, address):
        gateway = await start_gateway(gateway_settings([address]))
        try:
            with BackgroundServer(create_app(f"127.0.0.1:{gateway.port}")) as server:
                async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
                    body = {"source": "tiny-locked", "backend": "openai",
                            "options": {"api_key": KEY, "api_base": locked_upstream.base_url}}
                    loaded = await http.post("/v1/models/remote", json=body)
                    assert loaded.status_code == 200, loaded.text
                    assert loaded.json()["id"] == "remote" and loaded.json()["backend"] == "openai"
                    sdk = openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
                    entries = await sdk.models.list()
                    assert "remote" in [m.id for m in entries.data]
                    chat = await sdk.chat.completions.create(
                        model="remote", messages=[{"role": "user", "content": "hello"}], max_tokens=3)
                    assert chat.model == "remote" and chat.choices[0].finish_reason == "length"
                    wrong = await http.post("/v1/models/other", json={**body, "options": {
                        "api_key": WRONG_KEY, "api_base": locked_upstream.base_url}})
                    assert wrong.status_code == 400 and wrong.json()["error"]["param"] == "options.api_key"
                    deleted = await http.delete("/v1/models/remote")
                    assert deleted.status_code == 200 and deleted.json()["deleted"] is True
                    with pytest.raises(openai.NotFoundError):
                        await sdk.chat.completions.create(model="remote", messages=[{"role": "user", "content": "x"}])
                    await sdk.close()
        finally:
            await stop_now(gateway)
    seen = debug_logs.text + loaded.text + wrong.text + str(entries)
    assert not [s for s in SECRETS if s in seen]


async def test_the_proxys_own_key_serves_its_base_url_and_goes_nowhere_else(locked_upstream, debug_logs):
    """base_url names the keyed upstream as localhost; 127.0.0.1 is the same server under another base URL, where the
    proxy's key must not be sent."""
    own = f"http://localhost:{locked_upstream.port}/v1"
    elsewhere = locked_upstream.base_url
    async with proxy(own, models=[{"name": "tiny", "upstream": "tiny-locked"}], api_key=KEY,
                     runtime_base_urls=[elsewhere]) as (engine, address):
        async with grpc.aio.insecure_channel(address) as channel:
            models = models_pb2_grpc.ModelServiceStub(channel)
            backend = backend_pb2_grpc.BackendServiceStub(channel)
            loaded = await models.LoadModel(models_pb2.LoadModelRequest(name="mine", source="tiny-locked"), timeout=60)
            assert loaded.model.source == own
            assert (await backend.Generate(generate("mine"), timeout=60)).choices[0].text

            keyless = await rpc_failure(models.LoadModel(models_pb2.LoadModelRequest(
                name="theirs", source="tiny-locked", options={"api_base": elsewhere}), timeout=60))
            assert keyless.code == grpc.StatusCode.INVALID_ARGUMENT, keyless.message
            assert {f for f, _ in keyless.field_violations} == {"options.api_key"}
            assert "requires an API key" in keyless.message

            wrong = await rpc_failure(models.LoadModel(models_pb2.LoadModelRequest(
                name="theirs", source="tiny-locked", options={"api_base": elsewhere, "api_key": WRONG_KEY}),
                timeout=60))
            assert wrong.code == grpc.StatusCode.INVALID_ARGUMENT and "rejected this key" in wrong.message
            assert {f for f, _ in wrong.field_violations} == {"options.api_key"}
            listed = await models.ListModels(models_pb2.ListModelsRequest(), timeout=30)
            assert {m.name for m in listed.models} == {"tiny", "mine"}
    seen = debug_logs.text + keyless.message + wrong.message + str(listed)
    assert not [s for s in SECRETS if s in seen]


async def test_what_a_load_may_not_do_is_refused_naming_the_field(open_upstream, locked_upstream):
    async with proxy(open_upstream.base_url, runtime_base_urls=[locked_upstream.base_url]) as (_, address):
        async with grpc.aio.insecure_channel(address) as channel:
            models = models_pb2_grpc.ModelServiceStub(channel)

            async def refused(name: str = "x", source: str = "tiny", **options: str):
                return await rpc_failure(models.LoadModel(models_pb2.LoadModelRequest(
                    name=name, source=source, options=options), timeout=60))

            outside = await refused(api_base=f"http://127.0.0.1:{locked_upstream.port + 1}/v1", api_key=KEY)
            assert outside.code == grpc.StatusCode.PERMISSION_DENIED and "options.api_base" in outside.message
            climbing = await refused(api_base=f"{locked_upstream.base_url}/%2e%2e/admin", api_key=KEY)
            assert climbing.code == grpc.StatusCode.PERMISSION_DENIED
            assert f"127.0.0.1:{locked_upstream.port}/admin is not" in climbing.message, "checked once normalised"
            for bad in ("ftp://example.com/v1", "http://user:hunter2@127.0.0.1/v1", "http://127.0.0.1/v1?x=1"):
                malformed = await refused(api_base=bad)
                assert malformed.code == grpc.StatusCode.INVALID_ARGUMENT, malformed.message
                assert {f for f, _ in malformed.field_violations} == {"options.api_base"}
                assert "hunter2" not in malformed.message
            unknown = await refused(temperature="0.5", tokenizer="/etc/passwd")
            assert {f for f, _ in unknown.field_violations} == {"options.tokenizer"}
            assert {f for f, _ in (await refused(temperature="0.5")).field_violations} == {"options.temperature"}
            assert {f for f, _ in (await refused(context_length="-3")).field_violations} == {"options.context_length"}
            assert (await refused(api_key="")).code == grpc.StatusCode.INVALID_ARGUMENT
            taken = await refused(name="tiny")
            assert taken.code == grpc.StatusCode.FAILED_PRECONDITION and "taken" in taken.message
            missing = await refused(source="no-such-model")
            assert missing.code == grpc.StatusCode.NOT_FOUND and "tiny" in missing.message, missing.message
            embedding = await rpc_failure(models.LoadModel(models_pb2.LoadModelRequest(
                name="vectors", source="tiny", task=TASK.value("embedding")), timeout=60))
            assert embedding.code == grpc.StatusCode.INVALID_ARGUMENT and "serves Embed only" in embedding.message


async def test_a_key_revoked_after_the_load_is_the_loaders_to_fix_and_the_proxy_stays_ready(open_upstream):
    port = free_port("127.0.0.1")
    first = await asyncio.to_thread(start_llama_server, tiny_model()[0], model="tiny", n_ctx=512, port=port,
                                    api_key=KEY)
    async with proxy(open_upstream.base_url, runtime_base_urls=[first.base_url]) as (_, address):
        async with grpc.aio.insecure_channel(address) as channel:
            models = models_pb2_grpc.ModelServiceStub(channel)
            backend = backend_pb2_grpc.BackendServiceStub(channel)
            try:
                await models.LoadModel(models_pb2.LoadModelRequest(
                    name="remote", source="tiny", options={"api_key": KEY, "api_base": first.base_url}), timeout=60)
            finally:
                first.stop()
            second = await asyncio.to_thread(start_llama_server, tiny_model()[0], model="tiny", n_ctx=512, port=port,
                                             api_key=WRONG_KEY)
            try:
                revoked = await rpc_failure(backend.Generate(generate("remote"), timeout=60))
            finally:
                second.stop()
            caps = await backend.Capabilities(capabilities_pb2.CapabilitiesRequest(), timeout=30)
            assert (await backend.Generate(generate("tiny"), timeout=60)).choices[0].text
    assert revoked.code == grpc.StatusCode.FAILED_PRECONDITION, f"{revoked.code.name}: {revoked.message}"
    assert revoked.reason == "UPSTREAM_UNAUTHENTICATED" and "options.api_key" in revoked.message
    assert caps.availability.available, caps.availability.reason


async def test_an_operator_may_turn_run_time_upstreams_off(open_upstream):
    async with proxy(open_upstream.base_url, allow_runtime_upstreams=False) as (_, address):
        async with grpc.aio.insecure_channel(address) as channel:
            models = models_pb2_grpc.ModelServiceStub(channel)
            denied = await rpc_failure(models.LoadModel(models_pb2.LoadModelRequest(name="x", source="tiny"),
                                                        timeout=30))
    assert denied.code == grpc.StatusCode.PERMISSION_DENIED and "allow_runtime_upstreams" in denied.message
