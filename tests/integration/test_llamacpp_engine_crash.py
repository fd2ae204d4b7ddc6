"""kill -9 of llama-server under streams: calls that had no token yet are retried by the gateway on the other replica,
those that had one end with a typed UNAVAILABLE, and the service restarts its engine and serves again."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import REGISTRY

from forgeway.core.generation import Delta
from forgeway.server.server import RunningServer, start_server
from forgeway.services.llamacpp.service import LlamaCppService
from forgeway.services.llamacpp.settings import LlamaCppSettings
from forgeway.demo.llama import LlamaShape, init_llama, save_model
from forgeway.demo.tokenizer import train_tokenizer
from forgeway.testing import build_tiny_gguf, gateway_settings, start_gateway, stop_now, wait_until
from forgeway.v1 import backend_pb2_grpc, generate_pb2

pytestmark = [pytest.mark.llamacpp, pytest.mark.slow]

STREAMS = 8
MAX_TOKENS = 480  # long enough that the kill lands mid-stream on a loaded machine too
# Eight layers of 512: slow enough on one thread (about 2 ms a token) that calls wait for the victim's only slot.
SHAPE = LlamaShape(hidden_size=512, intermediate_size=1024, num_hidden_layers=8, num_attention_heads=8,
                   num_key_value_heads=4, max_position_embeddings=512)


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("crash") / "model"
    tokenizer = train_tokenizer()
    save_model(init_llama(tokenizer, SHAPE, seed=0), tokenizer, out)
    return build_tiny_gguf(out, out / "model.gguf", dtype="f16")


async def replica(gguf: Path, home: Path) -> RunningServer:
    """One llamacpp service with one slot: of the streams sent to it, one decodes and the rest wait in llama-server."""
    settings = LlamaCppSettings(host="127.0.0.1", port=0, metrics_port=-1, home=home, models=[
        {"name": "tiny", "source": str(gguf), "n_ctx": 512, "n_threads": 1, "instances": 1}])
    running = await start_server(LlamaCppService(settings))
    await running.startup
    assert running.service.ready, running.service.failure
    return running


@pytest.fixture
async def stack(tiny_gguf: Path, tmp_path: Path) -> AsyncIterator[tuple]:
    victim = await replica(tiny_gguf, tmp_path / "victim")
    spare = await replica(tiny_gguf, tmp_path / "spare")
    gateway = await start_gateway(gateway_settings(
        [{"name": "victim", "address": f"127.0.0.1:{victim.port}"}, {"name": "spare", "address": f"127.0.0.1:{spare.port}"}],
        breaker={"failure_threshold": 100}))
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}")
    yield backend_pb2_grpc.BackendServiceStub(channel), victim, spare
    await channel.close()
    await stop_now(gateway)
    for running in (victim, spare):
        await running.drain(0)


def retries() -> float:
    return REGISTRY.get_sample_value("forgeway_gateway_retries_total", {"code": "UNAVAILABLE"}) or 0.0


async def test_kill_9_of_the_engine_retries_waiting_calls_and_the_service_comes_back(stack):
    stub, victim, spare = stack
    served = victim.service.engine.loaded["tiny"]
    first_pid = served.server.pid
    before = retries()
    received = [0] * STREAMS

    async def one(i: int):
        request = generate_pb2.GenerateRequest(model="tiny", prompt=f"Stream {i} begins",
                                               sampling=generate_pb2.SamplingParams(max_tokens=MAX_TOKENS))
        try:
            async for message in stub.GenerateStream(request, timeout=120):
                if message.HasField("delta"):
                    received[i] += 1
                else:
                    return message.final
        except grpc.aio.AioRpcError as error:
            return error

    # Count the tokens the victim itself streamed: a token on the spare says nothing about the victim's stream.
    engine, streamed = victim.service.engine, [0]
    generate = engine.generate

    async def counted(request, info):
        async for event in generate(request, info):
            streamed[0] += isinstance(event, Delta)
            yield event

    engine.generate = counted
    calls = [asyncio.create_task(one(i)) for i in range(STREAMS)]
    # The victim has streamed a token of one call and holds at least one more waiting for its only slot.
    await wait_until(lambda: served.requests >= 2 and streamed[0] > 0, 60, "the victim decoding with calls waiting")
    os.kill(first_pid, signal.SIGKILL)
    outcomes = await asyncio.wait_for(asyncio.gather(*calls), 120)

    failed = [(i, o) for i, o in enumerate(outcomes) if isinstance(o, grpc.aio.AioRpcError)]
    finished = [o for o in outcomes if isinstance(o, generate_pb2.GenerateResponse)]
    for i, error in failed:  # only a call that had streamed fails, typed; none failed before its first token
        assert error.code() == grpc.StatusCode.UNAVAILABLE and received[i] > 0, (i, error.details())
        assert "failed after the stream started" in error.details()
    assert failed, "the stream decoding on the victim should have been cut"
    assert len(failed) + len(finished) == STREAMS
    assert all(f.choices[0].finish_reason == generate_pb2.FINISH_REASON_LENGTH for f in finished)
    assert all(f.usage.completion_tokens == MAX_TOKENS for f in finished)
    assert retries() - before >= 1, "the calls waiting on the victim should have been retried on the spare"

    # The service restarts its engine and serves again; health said NOT_SERVING meanwhile (the gateway skipped it).
    await wait_until(lambda: served.server.available and served.server.pid != first_pid, 60, "the engine restarted")
    assert served.server.restarts == 1
    async with grpc.aio.insecure_channel(f"127.0.0.1:{victim.port}") as channel:
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(), timeout=30)
        async for status in watch:
            if status.status == health_pb2.HealthCheckResponse.SERVING:
                break
        watch.cancel()
        reply = await backend_pb2_grpc.BackendServiceStub(channel).Generate(generate_pb2.GenerateRequest(
            model="tiny", prompt="after the crash", sampling=generate_pb2.SamplingParams(max_tokens=4)), timeout=30)
    assert reply.usage.completion_tokens == 4
