"""`forgeway serve echo` as a real process: health, reflection, the error table, SIGTERM drain, and bad settings."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from forgeway.core.errors import from_rpc_error
from forgeway.testing import wait_serving
from forgeway.v1 import backend_pb2_grpc, generate_pb2

SERVE = [sys.executable, "-m", "forgeway.cli", "serve"]
GRACE_SECONDS = 20


@dataclass
class ServeProcess:
    process: subprocess.Popen
    address: str
    log: Path

    def log_entries(self) -> list[dict]:
        return [json.loads(line) for line in self.log.read_text().splitlines() if line.startswith("{")]


@pytest.fixture
async def echo_process(free_port: int, tmp_path: Path) -> AsyncIterator[ServeProcess]:
    log = tmp_path / "echo.log"
    argv = [*SERVE, "echo", "--port", str(free_port), "--metrics-port=-1", "--token-delay", "0.05",
            "--grace-seconds", str(GRACE_SECONDS), "--home", str(tmp_path / "home")]  # fmt: skip
    with log.open("w") as sink:
        process = subprocess.Popen(argv, stdout=sink, stderr=subprocess.STDOUT)
    proc = ServeProcess(process, f"127.0.0.1:{free_port}", log)
    try:
        await asyncio.to_thread(wait_serving, proc.address, 60.0, process, log)
        yield proc
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


async def test_serves_health_reflection_and_the_error_table(echo_process):
    async with grpc.aio.insecure_channel(echo_process.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        reply = await health.Check(health_pb2.HealthCheckRequest(service="forgeway.v1.BackendService"), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING

        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        listing = reflection.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
        names = {s.name async for reply in listing for s in reply.list_services_response.service}
        assert "forgeway.v1.BackendService" in names and "grpc.health.v1.Health" in names

        backend = backend_pb2_grpc.BackendServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await backend.Generate(generate_pb2.GenerateRequest(model="echo"), timeout=5,
                                   metadata=(("x-request-id", "subprocess-bad-1"),))  # fmt: skip
        error = from_rpc_error(caught.value)
        assert error.code == grpc.StatusCode.INVALID_ARGUMENT
        assert [field for field, _ in error.field_violations] == ["prompt"]
    assert echo_process.process.poll() is None, "a bad request must not take the server down"
    logged = [e for e in echo_process.log_entries() if e.get("request_id") == "subprocess-bad-1"]
    assert logged and "INVALID_ARGUMENT" in logged[0]["message"]


async def test_sigterm_lets_the_in_flight_stream_finish_and_exits_zero(echo_process):
    request = generate_pb2.GenerateRequest(model="echo", prompt="one two three four",
                                           sampling=generate_pb2.SamplingParams(max_tokens=20))  # fmt: skip
    async with grpc.aio.insecure_channel(echo_process.address) as channel:
        stream = backend_pb2_grpc.BackendServiceStub(channel).GenerateStream(request, timeout=30)
        assert (await stream.read()).delta.text == "one"
        echo_process.process.send_signal(signal.SIGTERM)
        rest = []
        while (message := await stream.read()) is not grpc.aio.EOF:
            rest.append(message)
    assert rest[-1].final.usage.completion_tokens == 20
    assert rest[-1].final.choices[0].finish_reason == generate_pb2.FINISH_REASON_LENGTH
    code = await asyncio.to_thread(echo_process.process.wait, GRACE_SECONDS)
    assert code == 0, echo_process.log.read_text()
    assert any("draining" in e["message"] for e in echo_process.log_entries())


def run_serve(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*SERVE, *args], capture_output=True, text=True, timeout=60)


def one_line(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 2, (done.returncode, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


def test_bad_flag_exits_2_naming_the_setting(free_port):
    assert "port" in one_line(run_serve("echo", "--port", "notanumber"))
    assert "--nope" in one_line(run_serve("echo", "--port", str(free_port), "--nope", "1"))


def test_bad_yaml_key_exits_2_naming_it(tmp_path, free_port):
    config = tmp_path / "echo.yaml"
    config.write_text(f"port: {free_port}\ntoken_dealy: 0.1\n")
    assert "token_dealy" in one_line(run_serve("echo", "--config", str(config)))


def test_unknown_service_exits_2_listing_known_ones():
    assert "echo" in one_line(run_serve("no-such-service"))


def test_a_missing_tls_key_exits_2_naming_the_setting(tmp_path):
    cert = tmp_path / "server.pem"
    cert.write_text("not read: the key is missing\n")
    result = subprocess.run(
        [sys.executable, "-m", "forgeway.cli", "serve", "echo", "--port", "0", "--metrics-port", "-1",
         "--tls-cert-file", str(cert)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "tls_cert_file" in result.stderr and "Traceback" not in result.stderr
