"""For tests and benchmarks of the shim: a real `forgeway serve NAME` process on a free port, waited until SERVING."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class ServiceProcess:
    """A running `forgeway serve` process."""

    process: subprocess.Popen
    address: str
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def wait_serving(service: ServiceProcess, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(service.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if service.process.poll() is not None:
                raise RuntimeError(f"exited {service.process.returncode}:\n{service.log_text()}")
            try:
                reply = health.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.1)
    raise RuntimeError(f"not SERVING after {timeout:.0f} s:\n{service.log_text()}")


@contextmanager
def serve_process(name: str, *flags: str, timeout: float = 60.0, home: Path | None = None,
                  env: dict[str, str] | None = None) -> Iterator[ServiceProcess]:
    """`python -m forgeway.cli serve NAME --port P FLAGS...`, SERVING on yield, stopped after.

    home defaults to a fresh temporary folder; env adds to this process's environment."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix=f"forgeway-{name}-") as tmp:
        log = Path(tmp) / "service.log"
        argv = [sys.executable, "-m", "forgeway.cli", "serve", name, "--port", str(port), "--metrics-port=-1",
                "--home", str(home or Path(tmp) / "home"), *flags]
        env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
        with log.open("w") as sink:
            process = subprocess.Popen(argv, stdout=sink, stderr=subprocess.STDOUT, env=env)
        service = ServiceProcess(process, f"127.0.0.1:{port}", log)
        try:
            wait_serving(service, timeout)
            yield service
        finally:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=10)
