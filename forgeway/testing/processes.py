"""Services as processes for tests and benchmarks: `forgeway serve NAME` on a free port, waited until SERVING, and
`forgeway ARGS` as a command."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from forgeway.server.ports import free_port

__all__ = ["ServiceProcess", "echo_process", "free_port", "one_line_error", "run_cli", "start_echoes",
           "wait_serving"]

LOOPBACK = "127.0.0.1"
SERVING = health_pb2.HealthCheckResponse.SERVING


def wait_serving(address: str, timeout: float = 60.0, process: subprocess.Popen | None = None,
                 log: Path | None = None, service: str = "") -> None:
    """Block until `address` answers grpc.health.v1 SERVING for `service` (overall by default); fail at once if
    `process` exits. Errors name the last answer and end with the last lines of `log`."""
    def tail() -> str:
        return log.read_text(errors="replace")[-3000:] if log is not None and log.exists() else ""

    deadline = time.monotonic() + timeout
    last = "no answer"
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if process is not None and process.poll() is not None:
                raise RuntimeError(f"service on {address} exited with {process.returncode}: {tail()}")
            try:
                status = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=1).status
                if status == SERVING:
                    return
                last = health_pb2.HealthCheckResponse.ServingStatus.Name(status)
            except grpc.RpcError as exc:
                last = f"{exc.code().name}: {exc.details()}"
            time.sleep(0.05)
    raise TimeoutError(f"{address} not SERVING after {timeout:.0f}s (last: {last}): {tail()}")


class ServiceProcess:
    """`forgeway serve NAME --host 127.0.0.1 --port PORT --metrics-port -1 --home HOME FLAGS...` in its own process.

    `port` 0 picks a free one; a fixed port lets a killed service be started again where callers expect it. `home`
    and the log (`log_dir`/NAME-PORT.log) default to a temporary folder that `stop()` removes. As a context manager
    it starts, waits until SERVING (`timeout`) and stops; `start()` alone does not wait."""

    def __init__(self, name: str, *flags: str, port: int = 0, home: Path | None = None,
                 env: dict[str, str] | None = None, log_dir: Path | None = None, timeout: float = 60.0):
        self.name, self.flags, self.timeout = name, list(flags), timeout
        self.port = port or free_port(LOOPBACK)
        self.env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
        self._scratch = None if home is not None and log_dir is not None else Path(
            tempfile.mkdtemp(prefix=f"forgeway-{name}-"))  # holds whichever of home and log was not given
        self.home = Path(home) if home is not None else self._scratch / "home"
        self.log = Path(log_dir or self._scratch) / f"{name}-{self.port}.log"
        self.process: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    def start(self) -> ServiceProcess:
        """Launch the process (appending to its log) and return without waiting."""
        if self._scratch is not None:
            self._scratch.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "forgeway.cli", "serve", self.name, "--host", LOOPBACK, "--port",
                   str(self.port), "--metrics-port", "-1", "--home", str(self.home), *self.flags]
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            env=self.env)
        return self

    def wait_serving(self, timeout: float | None = None) -> ServiceProcess:
        wait_serving(self.address, self.timeout if timeout is None else timeout, self.process, self.log)
        return self

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def kill(self) -> None:
        """kill -9."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        """SIGTERM (a graceful drain), then SIGKILL after 15 s; the temporary folder goes too."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)

    def __enter__(self) -> ServiceProcess:
        try:
            return self.start().wait_serving()
        except BaseException:
            self.__exit__()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()


# `forgeway serve echo` arguments that add its embedding and rerank models (echo serves generation only by default).
ECHO_RETRIEVAL = ("--embedding-model", "echo-embed", "--rerank-model", "echo-rerank")


def echo_process(model_name: str = "echo", token_delay: float = 0.0, port: int = 0,
                 log_dir: Path | None = None) -> ServiceProcess:
    """`forgeway serve echo` serving `model_name`, `token_delay` seconds per token, stopping without a drain."""
    return ServiceProcess("echo", "--model-name", model_name, "--token-delay", str(token_delay),
                          "--grace-seconds", "0", port=port, log_dir=log_dir)


def start_echoes(*specs: tuple[str, float], log_dir: Path | None = None) -> list[ServiceProcess]:
    """Start several echo backends at once ((model name, token delay) each) and wait until all serve."""
    echoes = [echo_process(name, delay, log_dir=log_dir).start() for name, delay in specs]
    for echo in echoes:
        echo.wait_serving(30)
    return echoes


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
