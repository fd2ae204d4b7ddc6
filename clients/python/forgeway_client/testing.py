"""Real services for client tests: `forgeway serve NAME` processes, and in-process servers on a background loop
(so blocking clients and CLI subprocesses can call them from the test's thread)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from forgeway.up import free_port

SERVING = health_pb2.HealthCheckResponse.SERVING


def wait_serving(address: str, timeout: float = 60.0, process: subprocess.Popen | None = None,
                 log: Path | None = None) -> None:
    """Block until address answers grpc.health.v1 SERVING (overall); fail early if process exits. Errors end with
    the last lines of log."""
    def tail() -> str:
        return log.read_text(errors="replace")[-3000:] if log is not None and log.exists() else ""

    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if process is not None and process.poll() is not None:
                raise RuntimeError(f"service on {address} exited with {process.returncode}: {tail()}")
            try:
                if stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status == SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.05)
    raise TimeoutError(f"{address} not SERVING after {timeout:.0f}s: {tail()}")


class ServiceProcess:
    """`forgeway serve NAME --port PORT [flags]` in its own process, logging to log_dir/NAME-PORT.log."""

    def __init__(self, name: str, *flags: str, env: dict[str, str] | None = None, log_dir: Path | None = None):
        self.name, self.flags = name, list(flags)
        self.port = free_port("127.0.0.1")
        self.env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
        self.log = (log_dir or Path("/tmp")) / f"{name}-{self.port}.log"
        self.process: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> ServiceProcess:
        command = [sys.executable, "-m", "forgeway.cli", "serve", self.name, "--host", "127.0.0.1",
                   "--port", str(self.port), "--metrics-port", "-1", "--log-format", "text", *self.flags]
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            env=self.env)
        wait_serving(self.address, timeout, self.process, self.log)
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> ServiceProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class LoopThread:
    """An asyncio event loop on a daemon thread: start in-process grpc.aio servers there, call them from anywhere."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="forgeway-test-loop", daemon=True)
        self._thread.start()

    def run(self, coroutine: Awaitable[Any], timeout: float | None = 300) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)  # type: ignore[arg-type]

    def serve(self, start: Callable[[], Awaitable[Any]]) -> Any:
        """Run `start()` (returning a RunningServer) on the loop and wait for the service to be ready."""
        async def started():
            running = await start()
            if getattr(running, "startup", None) is not None:
                await running.startup
            if not running.service.ready:
                raise RuntimeError(f"{running.service.kind} failed to start: {running.service.failure}")
            return running

        return self.run(started())

    def close(self, *servers: Any) -> None:
        for running in servers:
            self.run(running.drain(1))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


def run_cli(*args: str, input: str | None = None, env: dict[str, str] | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess:
    """`forgeway ARGS...` as a subprocess (text mode, output captured)."""
    return subprocess.run([sys.executable, "-m", "forgeway.cli", *args], input=input, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})},
                          stdin=None if input is not None else subprocess.DEVNULL)


def one_line_error(result: subprocess.CompletedProcess) -> str:
    """The stderr of a failed command, checked to be exactly one line and no traceback."""
    assert result.returncode != 0, result
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


class InProcessStack:
    """Services (engines built by the given factories) and, by default, a gateway in front of them, all on a
    LoopThread in this process; `target` is where clients should call, `addresses` the services themselves, `root`
    the folder their models and data live in."""

    def __init__(self, *factories: Callable[[], Any], gateway: bool = True, root: Path | None = None):
        self.factories, self.with_gateway, self.root = factories, gateway, root
        self.loop: LoopThread | None = None
        self.servers: list[Any] = []
        self.gateway: Any = None

    @property
    def addresses(self) -> list[str]:
        return [f"127.0.0.1:{server.port}" for server in self.servers]

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.gateway.port}" if self.gateway is not None else self.addresses[0]

    def __enter__(self) -> InProcessStack:
        from forgeway.services.runtime.server import start_server

        self.loop = LoopThread()
        try:
            for factory in self.factories:
                self.servers.append(self.loop.serve(lambda f=factory: start_server(f())))
            if self.with_gateway:
                from forgeway.gateway.testing import gateway_settings, start_gateway

                self.gateway = self.loop.run(start_gateway(gateway_settings(self.addresses)))
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.loop is None:
            return
        if self.gateway is not None:
            from forgeway.gateway.testing import stop_now

            self.loop.run(stop_now(self.gateway))
        self.loop.close(*self.servers)
        self.loop = None


def trainer_stack(root: Path, gateway: bool = True, **settings: Any) -> InProcessStack:
    """The TRL trainer reading models and datasets under `root` (state in root/home), behind a gateway by default."""
    def trainer():
        from forgeway.services.trl.engine import TRLEngine
        from forgeway.services.trl.settings import TRLSettings

        values = {"home": Path(root) / "home", "port": 0, "metrics_port": -1, "host": "127.0.0.1",
                  "grace_seconds": 5, "log_level": "WARNING", "allowed_roots": [Path(root)], "min_dataset_rows": 2}
        return TRLEngine(TRLSettings(**{**values, **settings}))

    return InProcessStack(trainer, gateway=gateway, root=Path(root))


def inference_stack(root: Path, gateway: bool = True) -> InProcessStack:
    """llama.cpp (no model loaded; it may load GGUFs under root/models) and an echo backend named "echo"."""
    def llamacpp():
        from forgeway.services.llamacpp.config import LlamaCppSettings
        from forgeway.services.llamacpp.engine import LlamaCppEngine

        return LlamaCppEngine(LlamaCppSettings(host="127.0.0.1", port=0, metrics_port=-1, home=Path(root) / "home",
                                               model_roots=[Path(root) / "models"]))

    def echo():
        from forgeway.services.echo.engine import EchoEngine, EchoSettings

        return EchoEngine(EchoSettings(host="127.0.0.1", port=0, metrics_port=-1))

    return InProcessStack(llamacpp, echo, gateway=gateway, root=Path(root))
