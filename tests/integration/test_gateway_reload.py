"""Config from forgeway.yaml: reloaded on change without a restart, a bad file kept out; dns:/// discovery."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
import yaml

from forgeway.services.runtime.service import serving
from forgeway.gateway.settings import GatewaySettings
from forgeway.services.echo.engine import EchoEngine, EchoSettings
from forgeway.server.server import start_server
from forgeway.server.settings import build_settings
from forgeway.testing import gateway_settings, start_gateway, stop_now, wait_until
from forgeway.v1 import backend_pb2_grpc, generate_pb2


@pytest.fixture(scope="module")
async def echoes() -> AsyncIterator[list[str]]:
    servers = [await start_server(serving(EchoEngine(EchoSettings(port=0, metrics_port=-1, model_name=name))))
               for name in ("first", "second")]
    yield [f"127.0.0.1:{s.port}" for s in servers]
    for server in servers:
        await stop_now(server)


def write(path: Path, config: dict | str, stamp: int) -> None:
    path.write_text(config if isinstance(config, str) else yaml.safe_dump(config))
    os.utime(path, ns=(stamp * 10**9, stamp * 10**9))  # a distinct mtime even within one clock tick


async def generate(stub, model: str) -> grpc.StatusCode:
    try:
        await stub.Generate(generate_pb2.GenerateRequest(model=model, prompt="hi"), timeout=5)
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


async def test_reload_applies_a_good_file_and_keeps_the_old_config_on_a_bad_one(echoes, tmp_path, caplog):
    config = tmp_path / "forgeway.yaml"
    write(config, {"backends": [{"name": "one", "address": echoes[0]}], "model_aliases": {"chat": "first"}}, 1)
    settings = build_settings(GatewaySettings, ["--config", str(config), "--port", "0", "--metrics-port", "-1",
                                                "--http-port", "-1", "--config-poll-seconds", "0.05"])
    gateway = await start_gateway(settings)
    state = gateway.service.state
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
        stub = backend_pb2_grpc.BackendServiceStub(channel)
        assert await generate(stub, "chat") == grpc.StatusCode.OK

        write(config, {"backends": [{"name": "one", "address": echoes[0]}, {"name": "two", "address": echoes[1]}],
                       "model_aliases": {"talk": "second"}}, 2)
        await wait_until(lambda: "talk" in state.settings.model_aliases, 5, "the reload")
        await wait_until(lambda: len(state.pool) == 2 and all(e.available for e in state.pool), 5, "endpoint two")
        assert await generate(stub, "talk") == grpc.StatusCode.OK
        assert await generate(stub, "chat") == grpc.StatusCode.NOT_FOUND
        assert state.settings.config_poll_seconds == 0.05, "a flag given at start still wins over the file"

        with caplog.at_level(logging.ERROR, logger="forgeway.gateway.config"):
            for stamp, bad in enumerate(({"breaker": {"failure_threshold": 0}}, "backends: [unclosed"), 3):
                caplog.clear()
                write(config, bad, stamp)
                await wait_until(lambda: "keeping the previous config" in caplog.text, 5, "the reload to fail")
                assert await generate(stub, "talk") == grpc.StatusCode.OK
        assert state.settings.breaker.failure_threshold == 3 and len(state.pool) == 2

        write(config, {"backends": [{"name": "two", "address": echoes[1]}]}, 9)
        await wait_until(lambda: [e.key for e in state.pool] == ["two"], 5, "endpoint one removed")
        assert await generate(stub, "first") == grpc.StatusCode.NOT_FOUND
        assert await generate(stub, "second") == grpc.StatusCode.OK
    await stop_now(gateway)


async def test_bad_reload_names_the_key(echoes, tmp_path, caplog):
    config = tmp_path / "forgeway.yaml"
    write(config, {"backends": [echoes[0]]}, 1)
    settings = build_settings(GatewaySettings, ["--config", str(config), "--port", "0", "--metrics-port", "-1",
                                                "--http-port", "-1", "--config-poll-seconds", "0.05"])
    gateway = await start_gateway(settings)
    with caplog.at_level(logging.ERROR, logger="forgeway.gateway.config"):
        write(config, {"backends": [echoes[0]], "limits": {"max_attempts": 0}}, 2)
        await wait_until(lambda: "keeping the previous config" in caplog.text, 5, "the reload to fail")
    assert "limits.max_attempts" in caplog.text
    await stop_now(gateway)


async def test_dns_backend_becomes_one_endpoint_per_address(echoes):
    port = echoes[0].rsplit(":", 1)[1]
    gateway = await start_gateway(gateway_settings([{"name": "pods", "address": f"dns:///localhost:{port}"}]))
    keys = [e.key for e in gateway.service.state.pool]
    assert f"pods/127.0.0.1:{port}" in keys
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
        assert await generate(backend_pb2_grpc.BackendServiceStub(channel), "first") == grpc.StatusCode.OK
    await stop_now(gateway)
