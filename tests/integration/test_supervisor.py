"""`forgeway up`'s supervisor as a real process: health, crash restart with logs, graceful and forced stop."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import psutil
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from forgeway.up import (
    DEFAULT_PORTS,
    GATEWAY_BACKENDS_ENV,
    GATEWAY_HTTP_PORT_ENV,
    StackSettings,
    format_table,
    free_port,
    plan_stack,
    run_stack,
)

# The smallest real service: a grpc.aio server with grpc.health.v1, started as `SCRIPT NAME --port PORT`.
HEALTH_ONLY_SERVICE = """
import argparse, asyncio, signal
import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("name")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ignore-sigterm", action="store_true")
    args = parser.parse_args()
    server = grpc.aio.server()
    servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    server.add_insecure_port(f"127.0.0.1:{args.port}")
    await server.start()
    await servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    print(f"serving {args.name}", flush=True)
    stop = asyncio.Event()
    if args.ignore_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    else:
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    print(f"stopping {args.name}", flush=True)
    await server.stop(1)

asyncio.run(main())
"""


def wait_for(condition: Callable[[], object], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.1)


def is_serving(address: str) -> bool:
    with grpc.insecure_channel(address) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1)
        except grpc.RpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


@dataclass
class Stack:
    """A `python -m forgeway.up` process running one service."""

    process: subprocess.Popen[bytes]
    service: str
    address: str
    home: Path
    stdout: Path
    stderr: Path

    def service_pid(self) -> int | None:
        for child in psutil.Process(self.process.pid).children():
            try:
                if self.service in child.cmdline() and child.status() != psutil.STATUS_ZOMBIE:
                    return int(child.pid)
            except psutil.NoSuchProcess:
                continue
        return None

    def supervisor_log(self) -> str:
        return self.stderr.read_text(errors="replace")

    def service_log(self) -> str:
        return (self.home / "logs" / f"{self.service}.log").read_text(errors="replace")


@pytest.fixture
def health_only_service(tmp_path: Path) -> Path:
    script = tmp_path / "health_only_service.py"
    script.write_text(HEALTH_ONLY_SERVICE)
    return script


@pytest.fixture
def start_stack(tmp_path: Path) -> Iterator[Callable[..., Stack]]:
    started: list[Stack] = []

    def start(service: str, service_command: list[str] | None = None, **settings: object) -> Stack:
        port = free_port("127.0.0.1")
        env = {
            **os.environ,
            "FORGEWAY_HOME": str(tmp_path / "home"),
            "FORGEWAY_UP_SERVICES": service,
            "FORGEWAY_UP_PORTS": json.dumps({service: port}),
            "FORGEWAY_UP_RESTART_BACKOFF_S": "0.2",
            "HF_HUB_OFFLINE": "1",
        }
        if service_command is not None:
            env["FORGEWAY_UP_SERVICE_COMMAND"] = json.dumps(service_command)
        env.update({f"FORGEWAY_UP_{key.upper()}": str(value) for key, value in settings.items()})
        stdout, stderr = tmp_path / "up.stdout", tmp_path / "up.stderr"
        with stdout.open("wb") as out, stderr.open("wb") as err:
            process = subprocess.Popen([sys.executable, "-m", "forgeway.up"], stdout=out, stderr=err, env=env)
        stack = Stack(process, service, f"127.0.0.1:{port}", tmp_path / "home", stdout, stderr)
        started.append(stack)
        return stack

    yield start
    for stack in started:
        if stack.process.poll() is None:
            stack.process.send_signal(signal.SIGTERM)
            try:
                stack.process.wait(30)
            except subprocess.TimeoutExpired:
                for child in psutil.Process(stack.process.pid).children():
                    child.kill()
                stack.process.kill()
                stack.process.wait()


def check_restart_and_stop(stack: Stack) -> None:
    """SERVING → kill -9 → crash logged, restarted, SERVING again → SIGTERM stops everything."""
    wait_for(lambda: is_serving(stack.address), 120, f"{stack.service} SERVING on {stack.address}")
    wait_for(lambda: stack.service in stack.stdout.read_text(), 10, "the addresses table")
    assert stack.address in stack.stdout.read_text()

    first_pid = stack.service_pid()
    assert first_pid is not None, f"no {stack.service} child of the supervisor"
    os.kill(first_pid, signal.SIGKILL)
    wait_for(lambda: f"{stack.service} crashed (killed by SIGKILL)" in stack.supervisor_log(), 10, "the crash log")
    wait_for(lambda: f"{stack.service} is SERVING again" in stack.supervisor_log(), 120, "the restart")
    assert is_serving(stack.address)
    second_pid = stack.service_pid()
    assert second_pid not in (None, first_pid)

    stack.process.send_signal(signal.SIGTERM)
    assert stack.process.wait(30) == 0, stack.supervisor_log()
    assert not psutil.pid_exists(second_pid)
    assert not is_serving(stack.address)


def test_health_only_service_is_restarted_after_kill_and_stopped_by_sigterm(
    start_stack: Callable[..., Stack], health_only_service: Path
) -> None:
    stack = start_stack("alpha", service_command=[sys.executable, str(health_only_service)])
    check_restart_and_stop(stack)
    log = stack.service_log()
    assert log.count("serving alpha") == 2
    assert "stopping alpha" in log  # the second run was stopped with SIGTERM, not killed


def test_service_ignoring_sigterm_is_killed_after_the_grace_period(
    start_stack: Callable[..., Stack], health_only_service: Path
) -> None:
    stack = start_stack("stubborn", [sys.executable, str(health_only_service), "--ignore-sigterm"], stop_grace_s=0.5)
    wait_for(lambda: is_serving(stack.address), 60, "SERVING")
    pid = stack.service_pid()
    assert pid is not None
    stack.process.send_signal(signal.SIGTERM)
    assert stack.process.wait(30) == 0
    assert "stubborn still running after SIGTERM and the grace period; killing it" in stack.supervisor_log()
    assert not psutil.pid_exists(pid)


def test_a_service_that_exits_at_startup_fails_the_stack_with_its_output(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = StackSettings(
        home=tmp_path,
        services=["broken"],
        ports={"broken": free_port("127.0.0.1")},
        service_command=[sys.executable, "-c", "import sys; print('no model here', file=sys.stderr); sys.exit(3)"],
        startup_timeout_s=60,
    )
    with caplog.at_level(logging.INFO, logger="forgeway.up"):
        assert run_stack(settings, stop=threading.Event()) == 1
    assert "broken failed to start (exit code 3)" in caplog.text
    assert "no model here" in caplog.text


def test_echo_service_is_restarted_after_kill_and_stopped_by_sigterm(start_stack: Callable[..., Stack]) -> None:
    check_restart_and_stop(start_stack("echo"))


def test_plan_starts_the_gateway_last_and_tells_it_where_the_backends_are(tmp_path: Path) -> None:
    settings = StackSettings(home=tmp_path, services=["gateway", "echo", "hf"], ports={"hf": 6001}, http_port=0)
    specs = plan_stack(settings)
    assert [spec.name for spec in specs] == ["echo", "hf", "gateway"]
    assert specs[0].port == DEFAULT_PORTS["echo"] and specs[1].port == 6001
    gateway = specs[-1]
    assert json.loads(gateway.env[GATEWAY_BACKENDS_ENV]) == {
        "echo": f"127.0.0.1:{DEFAULT_PORTS['echo']}",
        "hf": "127.0.0.1:6001",
    }
    assert int(gateway.env[GATEWAY_HTTP_PORT_ENV]) > 0
    assert gateway.command[-3:] == ("gateway", "--port", str(DEFAULT_PORTS["gateway"]))
    assert all(spec.env["FORGEWAY_HOME"] == str(tmp_path) for spec in specs)
    assert f"http://127.0.0.1:{gateway.env[GATEWAY_HTTP_PORT_ENV]}/v1" in format_table(specs)


def test_a_running_but_unavailable_service_does_not_hold_up_the_stack(start_stack: Callable[..., Stack]) -> None:
    """Unsloth not installed in this environment: the service runs, says why it cannot train, and the stack starts
    (the gateway routes around it) instead of waiting for a SERVING that will not come."""
    stack = start_stack("unsloth")
    wait_for(lambda: "unsloth is running but unavailable" in stack.supervisor_log(), 120, "the unavailable notice")
    assert "not installed" in stack.supervisor_log()
    wait_for(lambda: stack.address in stack.stdout.read_text(), 10, "the addresses table")
    assert not is_serving(stack.address)
    stack.process.send_signal(signal.SIGTERM)
    assert stack.process.wait(30) == 0, stack.supervisor_log()


def test_the_openai_proxy_joins_the_default_stack_only_with_an_upstream(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("BASE_URL", "API_KEY", "API_KEY_FILE"):
        monkeypatch.delenv(f"FORGEWAY_OPENAI_{key}", raising=False)
    assert StackSettings().services == ["hf", "llamacpp", "trl", "gateway"]
    monkeypatch.setenv("FORGEWAY_OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    assert StackSettings().services == ["hf", "llamacpp", "trl", "openai", "gateway"]
