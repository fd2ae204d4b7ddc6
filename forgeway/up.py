"""`forgeway up`: runs each service as its own process on loopback, waits for health, restarts crashes."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, TextIO

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from forgeway.server.ports import free_port
from forgeway.v1 import backend_pb2_grpc, capabilities_pb2
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, CliApp, NoDecode, SettingsConfigDict

log = logging.getLogger("forgeway.up")

DEFAULT_PORTS: Mapping[str, int] = {
    "gateway": 50051,
    "hf": 50061,
    "llamacpp": 50062,
    "openai": 50063,
    "trl": 50064,
    "unsloth": 50065,
    "echo": 50069,
}
GATEWAY = "gateway"
# hf serves every model in the store by default; llama.cpp is told which GGUF to serve: the demo model's.
DEFAULT_SERVICE_ARGS = {"llamacpp": ["--models", '[{"name": "demo", "source": "demo"}]']}
# Settings reach the services as FORGEWAY_* env (a service without such a setting ignores it). The gateway
# also gets where the backends listen, as JSON {"name": "host:port"}, and the port of its OpenAI HTTP API.
GATEWAY_BACKENDS_ENV = "FORGEWAY_BACKENDS"
GATEWAY_HTTP_PORT_ENV = "FORGEWAY_HTTP_PORT"
LOG_TAIL_LINES = 20
# Probe channels retry quickly so a service is seen as soon as it listens (gRPC's default backoff grows to 120 s).
_PROBE_CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 500),
]


def upstream_configured() -> bool:
    """Whether the OpenAI proxy has an upstream to talk to (its settings' env)."""
    return any(os.environ.get(f"FORGEWAY_OPENAI_{key}") for key in ("BASE_URL", "API_KEY", "API_KEY_FILE"))


def default_services() -> list[str]:
    """hf, llamacpp and trl behind the gateway; the OpenAI proxy too when an upstream is configured."""
    return ["hf", "llamacpp", "trl", *(["openai"] if upstream_configured() else []), "gateway"]


class StackSettings(BaseSettings):
    """What `forgeway up` starts and how it supervises it (env FORGEWAY_UP_*, FORGEWAY_HOME)."""

    model_config = SettingsConfigDict(
        env_prefix="FORGEWAY_UP_",
        extra="ignore",
        validate_by_name=True,
        cli_prog_name="forgeway up",
        cli_kebab_case=True,
    )

    home: Path = Field(
        default_factory=lambda: Path.home() / ".forgeway",
        validation_alias="FORGEWAY_HOME",
        description="Forgeway's state directory; service logs go to HOME/logs/NAME.log.",
    )
    services: Annotated[list[str], NoDecode] = Field(
        default_factory=default_services,
        description="Services to start, comma-separated (env FORGEWAY_UP_SERVICES=echo,hf,gateway).",
    )
    service_args: dict[str, list[str]] = Field(
        default_factory=lambda: dict(DEFAULT_SERVICE_ARGS),
        description="Extra `forgeway serve NAME` flags per service, as JSON (default: llamacpp serves the demo GGUF).",
    )
    host: str = Field(default="127.0.0.1", description="Interface every service listens on.")
    ports: dict[str, int] = Field(
        default_factory=dict,
        description=(
            "gRPC ports overriding the defaults (gateway 50051, hf 50061, llamacpp 50062, openai 50063, trl 50064,"
            " unsloth 50065, echo 50069), JSON: FORGEWAY_UP_PORTS='{\"echo\": 6000}'; 0 picks a free port."
        ),
    )
    http_port: int = Field(default=8000, description="The gateway's OpenAI-compatible HTTP port; 0 picks a free port.")
    config_file: Path | None = Field(
        default=None, description="YAML settings file passed to every service as --config."
    )
    service_command: list[str] = Field(
        default_factory=lambda: [sys.executable, "-m", "forgeway.cli", "serve"],
        description="Command that starts one service; NAME --port PORT [--config FILE] are appended.",
    )
    startup_timeout_s: float = Field(
        default=180.0, gt=0, description="How long each service may take to report SERVING."
    )
    stop_grace_s: float = Field(
        default=10.0, ge=0, description="How long a service may drain after SIGTERM before SIGKILL."
    )
    restart_backoff_s: float = Field(
        default=1.0, gt=0, description="Delay before the first restart of a crashed service."
    )
    restart_backoff_max_s: float = Field(
        default=30.0, gt=0, description="Longest delay between restarts (it doubles each crash)."
    )
    stable_after_s: float = Field(
        default=60.0, gt=0, description="A service up this long gets its restart delay reset."
    )

    @field_validator("services", mode="before")
    @classmethod
    def _split_services(cls, value: object) -> object:
        names = value.split(",") if isinstance(value, str) else value
        if isinstance(names, list):
            return list(dict.fromkeys(str(name).strip() for name in names if str(name).strip()))  # each name once
        return value


@dataclass(frozen=True)
class ServiceSpec:
    """One service process: its name, where it listens, and how to start it."""

    name: str
    host: str
    port: int
    command: tuple[str, ...]
    env: Mapping[str, str]
    log_path: Path

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass
class SupervisedService:
    """A running (or crashed) service and its restart bookkeeping."""

    spec: ServiceSpec
    process: subprocess.Popen[bytes] | None = None
    log_offset: int = 0
    started_at: float = 0.0
    serving: bool = False
    crashes: int = 0
    restart_at: float | None = None
    channel: grpc.Channel | None = field(default=None, repr=False)

    def start(self) -> None:
        self.spec.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.spec.log_path.open("ab") as log_file:
            self.log_offset = log_file.tell()
            log_file.write(f"--- forgeway up: starting {' '.join(self.spec.command)} ---\n".encode())
            log_file.flush()
            # A session of its own: Ctrl-C reaches only the supervisor, which stops children in order.
            self.process = subprocess.Popen(
                self.spec.command,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env={**os.environ, **self.spec.env},
                start_new_session=True,
            )
        self.started_at = time.monotonic()
        self.serving = False
        self.restart_at = None
        log.info("started %s (pid %d) on %s", self.spec.name, self.process.pid, self.spec.address)

    def exit_code(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def check_serving(self, timeout_s: float = 1.0) -> bool:
        """One grpc.health.v1 Check of the whole server ("")."""
        if self.channel is None:
            self.channel = grpc.insecure_channel(self.spec.address, options=_PROBE_CHANNEL_OPTIONS)
        stub = health_pb2_grpc.HealthStub(self.channel)
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout_s)
        except grpc.RpcError:
            return False
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)

    def unavailable_reason(self, timeout_s: float = 1.0) -> str | None:
        """Why a running service that is not SERVING says it cannot serve (Unsloth not installed, an upstream that
        does not answer), or None while it is still starting or cannot be asked."""
        if self.channel is None:
            return None
        stub = backend_pb2_grpc.BackendServiceStub(self.channel)
        try:
            reply = stub.Capabilities(capabilities_pb2.CapabilitiesRequest(), timeout=timeout_s)
        except grpc.RpcError:
            return None
        reason = reply.availability.reason
        if reply.availability.available or not reason or reason.startswith("starting"):
            return None
        return reason

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The last lines this run of the service wrote to its log."""
        try:
            with self.spec.log_path.open("rb") as log_file:
                log_file.seek(self.log_offset)
                tail = deque(log_file, maxlen=lines)
        except OSError:
            return ""
        return b"".join(tail).decode(errors="replace").rstrip()

    def terminate(self) -> None:
        """Asks the service to drain and exit (SIGTERM); see wait_or_kill."""
        if self.channel is not None:
            self.channel.close()
            self.channel = None
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()

    def wait_or_kill(self, deadline: float) -> None:
        """Waits for the exit until deadline (time.monotonic), then SIGKILLs."""
        process = self.process
        if process is None:
            return
        try:
            process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("%s still running after SIGTERM and the grace period; killing it", self.spec.name)
            process.kill()
            process.wait()
        log.info("stopped %s (%s)", self.spec.name, describe_exit(process.returncode))


def describe_exit(code: int) -> str:
    """'exit code 3' or 'killed by SIGKILL' for a Popen return code."""
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def plan_stack(settings: StackSettings) -> list[ServiceSpec]:
    """Resolves ports and commands; the gateway, if listed, comes last and learns the backends' addresses."""
    names = [name for name in settings.services if name != GATEWAY]
    if GATEWAY in settings.services:
        names.append(GATEWAY)
    base_env = {"FORGEWAY_HOME": str(settings.home), "FORGEWAY_HOST": settings.host}
    specs: list[ServiceSpec] = []
    for name in names:
        port = settings.ports.get(name, DEFAULT_PORTS.get(name, 0)) or free_port(settings.host)
        command = [*settings.service_command, name, "--port", str(port), *settings.service_args.get(name, [])]
        if settings.config_file is not None:
            command += ["--config", str(settings.config_file)]
        env = dict(base_env)
        if name == GATEWAY:
            env[GATEWAY_BACKENDS_ENV] = json.dumps({backend.name: backend.address for backend in specs})
            env[GATEWAY_HTTP_PORT_ENV] = str(settings.http_port or free_port(settings.host))
            env["FORGEWAY_HTTP_HOST"] = settings.host
        specs.append(
            ServiceSpec(
                name=name,
                host=settings.host,
                port=port,
                command=tuple(command),
                env=env,
                log_path=settings.home / "logs" / f"{name}.log",
            )
        )
    return specs


def format_table(specs: Sequence[ServiceSpec]) -> str:
    """The addresses table printed once everything is SERVING."""
    rows = [("service", "address", "log")]
    for spec in specs:
        rows.append((spec.name, f"grpc://{spec.address}", str(spec.log_path)))
        if spec.name == GATEWAY:
            rows.append((f"{spec.name} (http)", f"http://{spec.host}:{spec.env[GATEWAY_HTTP_PORT_ENV]}/v1", ""))
    widths = [max(len(row[i]) for row in rows) for i in range(2)]
    return "\n".join(f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]}".rstrip() for row in rows)


def gateway_address(specs: Sequence[ServiceSpec]) -> str:
    """Where clients call: the gateway, or the only service when the stack has no gateway."""
    addresses = {spec.name: spec.address for spec in specs}
    return addresses.get(GATEWAY) or next(iter(addresses.values()))


class Supervisor:
    """Starts services, waits until they serve, restarts the ones that crash, and stops them all."""

    def __init__(self, settings: StackSettings, specs: Sequence[ServiceSpec], stop: threading.Event) -> None:
        self._settings = settings
        self._children = [SupervisedService(spec) for spec in specs]
        self._stop = stop

    @property
    def specs(self) -> list[ServiceSpec]:
        return [child.spec for child in self._children]

    def _group(self, gateway: bool) -> list[SupervisedService]:
        return [child for child in self._children if (child.spec.name == GATEWAY) == gateway]

    def start(self) -> bool:
        """Starts the backends together, then the gateway; True once every one reports SERVING."""
        return all(self._start_group(group) for group in (self._group(gateway=False), self._group(gateway=True)))

    def _start_group(self, group: Sequence[SupervisedService]) -> bool:
        if self._stop.is_set():
            return False
        for child in group:
            child.start()
        deadline = time.monotonic() + self._settings.startup_timeout_s
        pending = list(group)
        while pending:
            if self._stop.is_set():
                return False
            for child in list(pending):
                code = child.exit_code()
                if code is not None:
                    log.error(
                        "%s failed to start (%s); last lines of %s:\n%s",
                        child.spec.name,
                        describe_exit(code),
                        child.spec.log_path,
                        child.log_tail(),
                    )
                    return False
                if child.check_serving(timeout_s=0.5):
                    child.serving = True
                    pending.remove(child)
                    log.info("%s is SERVING on %s", child.spec.name, child.spec.address)
                elif (reason := child.unavailable_reason(timeout_s=0.5)) is not None:
                    pending.remove(child)  # up, and honest about it: the gateway routes around it until it serves
                    log.warning("%s is running but unavailable: %s", child.spec.name, reason)
            if pending and time.monotonic() > deadline:
                for child in pending:
                    log.error(
                        "%s not SERVING after %.0f s; last lines of %s:\n%s",
                        child.spec.name,
                        self._settings.startup_timeout_s,
                        child.spec.log_path,
                        child.log_tail(),
                    )
                return False
            if pending:
                self._stop.wait(0.2)
        return True

    def supervise(self, poll_s: float = 0.2) -> None:
        """Until stop is set: restarts crashed services with backoff and notes when they serve again."""
        while not self._stop.wait(poll_s):
            now = time.monotonic()
            for child in self._children:
                self._tend(child, now)

    def _tend(self, child: SupervisedService, now: float) -> None:
        if child.restart_at is not None:
            if now >= child.restart_at:
                child.start()
            return
        code = child.exit_code()
        if code is None:
            if not child.serving and child.check_serving(timeout_s=0.2):
                child.serving = True
                log.info("%s is SERVING again on %s", child.spec.name, child.spec.address)
            return
        if now - child.started_at >= self._settings.stable_after_s:
            child.crashes = 0
        delay = min(self._settings.restart_backoff_s * 2**child.crashes, self._settings.restart_backoff_max_s)
        child.crashes += 1
        child.serving = False
        child.restart_at = now + delay
        log.error(
            "%s crashed (%s) after %.1f s; restarting in %.1f s; last lines of %s:\n%s",
            child.spec.name,
            describe_exit(code),
            now - child.started_at,
            delay,
            child.spec.log_path,
            child.log_tail(),
        )

    def stop_all(self) -> None:
        """Stops the gateway, then all backends together: SIGTERM, then SIGKILL after the grace period."""
        for group in (self._group(gateway=True), self._group(gateway=False)):
            for child in group:
                child.terminate()
            deadline = time.monotonic() + self._settings.stop_grace_s
            for child in group:
                child.wait_or_kill(deadline)


def run_stack(settings: StackSettings, stop: threading.Event | None = None, out: TextIO = sys.stdout,
              on_ready: Callable[[str], bool] | None = None) -> int:
    """Runs the stack until stop is set (by default: until SIGINT or SIGTERM). Returns 0, or 1 if startup failed.

    Args:
        settings: what to start and how.
        stop: set it to stop the stack; when None, SIGINT and SIGTERM set it (main thread only).
        out: where the addresses table is printed.
        on_ready: called with the gateway's address once every service is SERVING; False stops the stack (1).
    """
    restore: dict[signal.Signals, Any] = {}  # the handlers to put back
    if stop is None:
        stop = threading.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            restore[signum] = signal.signal(signum, lambda _signum, _frame: stop.set())
    if "openai" not in settings.services:
        log.info("openai proxy not started: no upstream configured (set FORGEWAY_OPENAI_BASE_URL and/or "
                 "FORGEWAY_OPENAI_API_KEY, or list it in --services)")
    supervisor = Supervisor(settings, plan_stack(settings), stop)
    try:
        if not supervisor.start():
            return 0 if stop.is_set() else 1
        print(format_table(supervisor.specs), file=out, flush=True)
        if on_ready is not None and not on_ready(gateway_address(supervisor.specs)):
            return 1
        supervisor.supervise()
        return 0
    finally:
        supervisor.stop_all()
        for signum, handler in restore.items():
            signal.signal(signum, handler)


def main(argv: list[str] | None = None) -> int:
    """`python -m forgeway.up [--services echo,hf ...]`: flags, then FORGEWAY_UP_* / FORGEWAY_HOME, then defaults."""
    settings = CliApp.run(StackSettings, cli_args=sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run_stack(settings)


if __name__ == "__main__":
    raise SystemExit(main())
