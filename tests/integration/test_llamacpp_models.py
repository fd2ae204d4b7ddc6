"""Models at run time: LoadModel/UnloadModel with options, bad files, confinement, the queue, readiness, no torch."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc


from forgeway.services.runtime.service import serving
from forgeway.services.llamacpp.settings import LlamaCppSettings  # noqa: E402
from forgeway.services.llamacpp.engine import LlamaCppEngine  # noqa: E402
from forgeway.core.errors import from_rpc_error  # noqa: E402
from forgeway.server.server import RunningServer, start_server  # noqa: E402
from forgeway.testing import build_tiny_gguf, build_tiny_llama  # noqa: E402
from forgeway.v1 import (  # noqa: E402
    backend_pb2_grpc, capabilities_pb2, common_pb2, generate_pb2, models_pb2, models_pb2_grpc,
)

pytestmark = pytest.mark.llamacpp
SERVING = health_pb2.HealthCheckResponse.SERVING


@pytest.fixture(scope="module")
def roots(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(FORGEWAY_HOME, an allowed model root holding tiny.gguf)."""
    base = tmp_path_factory.mktemp("llamacpp-models")
    model_dir = build_tiny_llama(base / "allowed" / "tiny", seed=0)
    build_tiny_gguf(model_dir, base / "allowed" / "tiny.gguf")
    return base / "home", base / "allowed"


def serve(home: Path, allowed: Path, **fields) -> RunningServer:
    settings = LlamaCppSettings(host="127.0.0.1", port=0, metrics_port=-1, home=home, model_roots=[allowed], **fields)
    return start_server(serving(LlamaCppEngine(settings)))


@pytest.fixture(scope="module")
async def server(roots) -> AsyncIterator[RunningServer]:
    running = await serve(*roots)
    await running.startup
    assert running.service.ready, running.service.failure
    yield running
    await running.drain(0)


@pytest.fixture
async def channel(server: RunningServer) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as chan:
        yield chan


async def failure(call):
    try:
        await call
    except grpc.aio.AioRpcError as exc:
        return from_rpc_error(exc)
    raise AssertionError("expected an error")


def load(name: str, source: str = "", **options) -> models_pb2.LoadModelRequest:
    return models_pb2.LoadModelRequest(name=name, source=source, options={k: str(v) for k, v in options.items()})


async def test_load_generate_list_and_unload_at_run_time(channel, roots):
    _, allowed = roots
    models = models_pb2_grpc.ModelServiceStub(channel)
    backend = backend_pb2_grpc.BackendServiceStub(channel)
    loaded = await models.LoadModel(load("runtime", str(allowed / "tiny.gguf"), n_ctx=128, n_threads=1, instances=2,
                                         max_queue=3), timeout=60)
    assert loaded.model.context_length == 128 and loaded.model.loaded and loaded.model.chat
    listed = await models.ListModels(models_pb2.ListModelsRequest(), timeout=10)
    assert "runtime" in {m.name for m in listed.models}
    caps = await backend.Capabilities(capabilities_pb2.CapabilitiesRequest(), timeout=10)
    assert caps.load.max_concurrency == 2 and caps.load.max_queue == 3
    assert {m.quantization for m in caps.models} == {common_pb2.QUANTIZATION_GGUF}
    reply = await backend.Generate(generate_pb2.GenerateRequest(model="runtime", prompt="Hello",
                                   sampling=generate_pb2.SamplingParams(max_tokens=4)), timeout=30)
    assert reply.usage.completion_tokens == 4
    await models.UnloadModel(models_pb2.UnloadModelRequest(name="runtime"), timeout=30)
    error = await failure(backend.Generate(generate_pb2.GenerateRequest(model="runtime", prompt="Hello"), timeout=10))
    assert error.code == grpc.StatusCode.NOT_FOUND


async def test_a_prompt_longer_than_the_context_is_invalid_argument(channel, roots):
    _, allowed = roots
    models = models_pb2_grpc.ModelServiceStub(channel)
    await models.LoadModel(load("short", str(allowed / "tiny.gguf"), n_ctx=32, n_threads=1), timeout=60)
    try:
        backend = backend_pb2_grpc.BackendServiceStub(channel)
        long_prompt = "the river ran past the mill " * 20
        error = await failure(backend.Generate(generate_pb2.GenerateRequest(model="short", prompt=long_prompt),
                                               timeout=10))
        assert error.code == grpc.StatusCode.INVALID_ARGUMENT and error.field_violations[0][0] == "prompt"
        assert "32" in error.message
        # max_tokens past the context, alone or with the prompt, names max_tokens before any decoding
        for max_tokens in (500, 31):
            error = await failure(backend.Generate(generate_pb2.GenerateRequest(
                model="short", prompt="Hello", sampling=generate_pb2.SamplingParams(max_tokens=max_tokens)), timeout=10))
            assert error.code == grpc.StatusCode.INVALID_ARGUMENT, error.message
            assert error.field_violations[0][0] == "max_tokens" and "32" in error.message
        # a prompt that fits, with no max_tokens, ends at the context with LENGTH
        reply = await backend.Generate(generate_pb2.GenerateRequest(model="short", prompt="Hello"), timeout=30)
        assert reply.choices[0].finish_reason == generate_pb2.FINISH_REASON_LENGTH
        assert reply.usage.total_tokens == 32
    finally:
        await models.UnloadModel(models_pb2.UnloadModelRequest(name="short"), timeout=30)


async def test_bad_loads_are_refused_by_the_table_and_the_service_stays_up(channel, roots):
    home, allowed = roots
    corrupt = allowed / "corrupt.gguf"
    corrupt.write_bytes(b"GGUF" + b"\x03\x00\x00\x00" + b"\xff" * 64)
    outside = home.parent / "outside.gguf"
    outside.write_bytes((allowed / "tiny.gguf").read_bytes())
    models = models_pb2_grpc.ModelServiceStub(channel)
    cases = [
        (load("m1", str(allowed / "missing.gguf")), grpc.StatusCode.NOT_FOUND, str(allowed / "missing.gguf")),
        (load("m2", str(corrupt)), grpc.StatusCode.FAILED_PRECONDITION, str(corrupt)),
        (load("m3", str(outside)), grpc.StatusCode.PERMISSION_DENIED, str(outside)),
        (load("m4", "no-such-store-entry"), grpc.StatusCode.NOT_FOUND, "no-such-store-entry"),
        (load("m5", str(allowed / "tiny.gguf"), n_ctx="many"), grpc.StatusCode.INVALID_ARGUMENT, "options.n_ctx"),
        (load("m6", str(allowed / "tiny.gguf"), chat_format="nope"), grpc.StatusCode.INVALID_ARGUMENT, "nope"),
        (models_pb2.LoadModelRequest(name="m7", source=str(allowed / "tiny.gguf"), base_model="x"),
         grpc.StatusCode.INVALID_ARGUMENT, "adapters"),
    ]
    for req, code, mentioned in cases:
        error = await failure(models.LoadModel(req, timeout=60))
        assert error.code == code, (req.name, error.code, error.message)
        assert mentioned in error.message, (req.name, error.message)
    assert "corrupt GGUF" in (await failure(models.LoadModel(cases[1][0], timeout=60))).message
    health = health_pb2_grpc.HealthStub(channel)
    assert (await health.Check(health_pb2.HealthCheckRequest(), timeout=5)).status == SERVING
    listed = await models.ListModels(models_pb2.ListModelsRequest(), timeout=10)
    assert not {m.name for m in listed.models} & {"m1", "m2", "m3", "m4", "m5", "m6", "m7"}


async def test_model_store_entries_load_by_name_and_names_are_unique(channel, roots):
    home, allowed = roots
    entry = home / "models" / "stored"
    entry.mkdir(parents=True, exist_ok=True)
    (entry / "model.gguf").write_bytes((allowed / "tiny.gguf").read_bytes())
    models = models_pb2_grpc.ModelServiceStub(channel)
    loaded = await models.LoadModel(load("stored", n_ctx=64, n_threads=1), timeout=60)
    try:
        assert loaded.model.source == str(entry / "model.gguf")
        error = await failure(models.LoadModel(load("stored", n_ctx=64), timeout=60))
        assert error.code == grpc.StatusCode.FAILED_PRECONDITION and "stored" in error.message
    finally:
        await models.UnloadModel(models_pb2.UnloadModelRequest(name="stored"), timeout=30)


async def test_past_the_queue_limit_requests_are_resource_exhausted_with_retry_info(channel, roots):
    _, allowed = roots
    models = models_pb2_grpc.ModelServiceStub(channel)
    # 2 slots and 1 place in the queue: of 8 calls at once, those past the third are refused before any work. The
    # tiny model decodes ~10k tokens/s, so on a loaded machine an admitted call may finish before the last ones
    # arrive and let one more in (once under the full suite): at least 3 answered, the rest refused naming the limit.
    await models.LoadModel(load("queued", str(allowed / "tiny.gguf"), n_ctx=512, n_threads=1, instances=2,
                                max_queue=1), timeout=60)
    try:
        backend = backend_pb2_grpc.BackendServiceStub(channel)
        req = generate_pb2.GenerateRequest(model="queued", prompt="Hello",
                                           sampling=generate_pb2.SamplingParams(max_tokens=480))
        outcomes = await asyncio.gather(*(backend.Generate(req, timeout=60) for _ in range(8)), return_exceptions=True)
        errors = [from_rpc_error(o) for o in outcomes if isinstance(o, grpc.aio.AioRpcError)]
        done = [o for o in outcomes if isinstance(o, generate_pb2.GenerateResponse)]
        assert len(errors) + len(done) == 8 and len(done) >= 3 and len(errors) >= 3, outcomes
        for error in errors:
            assert error.code == grpc.StatusCode.RESOURCE_EXHAUSTED, error.message
            assert "(limit 3)" in error.message, error.message
            assert error.retry_after is not None and error.retry_after > 0
        assert all(o.usage.completion_tokens == done[0].usage.completion_tokens for o in done)
    finally:
        await models.UnloadModel(models_pb2.UnloadModelRequest(name="queued"), timeout=60)


async def test_a_configured_model_that_cannot_load_keeps_health_not_serving(roots):
    home, allowed = roots
    missing = allowed / "not-there.gguf"
    running = await serve(home, allowed, models=[{"name": "broken", "source": str(missing)}])
    try:
        await running.startup
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            reply = await health.Check(health_pb2.HealthCheckRequest(), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.NOT_SERVING
            caps = await backend_pb2_grpc.BackendServiceStub(channel).Capabilities(
                capabilities_pb2.CapabilitiesRequest(), timeout=10)
            assert not caps.availability.available and str(missing) in caps.availability.reason
    finally:
        await running.drain(0)


def test_the_service_never_imports_torch(roots):
    _, allowed = roots
    script = f"""
import asyncio, sys
from forgeway.services.llamacpp.engine import LlamaCppEngine
from forgeway.services.llamacpp.settings import LlamaCppSettings
from forgeway.services.llamacpp import export
from forgeway.server import registry
from forgeway.v1 import generate_pb2
from forgeway.core.generation import GenerationRequest
service = registry.load("llamacpp")(LlamaCppSettings(models=[{{"name": "t", "source": {str(allowed / "tiny.gguf")!r}}}]))
engine = service.engine
async def main():
    await engine.start()
    engine.ready = True
    req = GenerationRequest.from_proto(generate_pb2.GenerateRequest(model="t", prompt="Hi",
                                       sampling=generate_pb2.SamplingParams(max_tokens=3)))
    events = [e async for e in engine.generate(req, engine.admit(req))]
    await engine.stop()
    return events[-1].completion_tokens
print(asyncio.run(main()), "torch" in sys.modules, "transformers" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["3", "False", "False"]


async def test_forgeway_serve_llamacpp_runs_without_torch_and_drains_on_sigterm(roots, tmp_path, free_port):
    import json
    import signal

    import psutil

    from forgeway.testing import wait_serving

    if not Path("/proc/self/maps").exists():
        pytest.skip("reads /proc/PID/maps")
    home, allowed = roots
    port = free_port
    models = [{"name": "tiny", "source": str(allowed / "tiny.gguf"), "n_ctx": 128, "n_threads": 1}]
    log = (tmp_path / "serve.log").open("wb")
    process = subprocess.Popen([sys.executable, "-m", "forgeway.cli", "serve", "llamacpp", "--port", str(port),
                                "--metrics-port", "-1", "--home", str(home), "--models", json.dumps(models)],
                               stdout=log, stderr=subprocess.STDOUT)
    try:
        await asyncio.to_thread(wait_serving, f"127.0.0.1:{port}", 60, process, tmp_path / "serve.log")
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            reply = await backend_pb2_grpc.BackendServiceStub(channel).Generate(generate_pb2.GenerateRequest(
                model="tiny", prompt="Hello", sampling=generate_pb2.SamplingParams(max_tokens=4)), timeout=30)
            assert reply.usage.completion_tokens == 4
        mapped = Path(f"/proc/{process.pid}/maps").read_text()
        engines = [c for c in psutil.Process(process.pid).children() if c.name() == "llama-server"]
        assert "torch" not in mapped and len(engines) == 1  # llama.cpp runs in the child, llama.cpp's own server
        assert all(c.laddr.ip == "127.0.0.1" for c in engines[0].net_connections("inet") if c.status == "LISTEN")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0, (tmp_path / "serve.log").read_text()[-2000:]
    finally:
        if process.poll() is None:
            process.kill()
        log.close()
