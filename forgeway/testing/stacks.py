"""Services and a gateway in this process, on an event loop of their own thread, so that blocking clients and CLI
subprocesses can call them from the test's thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from forgeway.server.server import start_server
from forgeway.testing.gateway import gateway_settings, start_gateway, stop_now


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


class InProcessStack:
    """Services (built by the given factories, as `forgeway serve` builds them) and, by default, a gateway in front
    of them, all on a LoopThread in this process; `target` is where clients should call, `addresses` the services
    themselves, `root` the folder their models and data live in."""

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
        self.loop = LoopThread()
        try:
            for factory in self.factories:
                self.servers.append(self.loop.serve(lambda f=factory: start_server(f())))
            if self.with_gateway:
                self.gateway = self.loop.run(start_gateway(gateway_settings(self.addresses)))
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.loop is None:
            return
        if self.gateway is not None:
            self.loop.run(stop_now(self.gateway))
        self.loop.close(*self.servers)
        self.loop = None


def trainer_stack(root: Path, gateway: bool = True, **settings: Any) -> InProcessStack:
    """The TRL trainer reading models and datasets under `root` (state in root/home), behind a gateway by default."""
    def trainer():
        from forgeway.services.trl.service import TRLService
        from forgeway.services.trl.settings import TRLSettings

        values = {"home": Path(root) / "home", "port": 0, "metrics_port": -1, "host": "127.0.0.1",
                  "grace_seconds": 5, "log_level": "WARNING", "allowed_roots": [Path(root)], "min_dataset_rows": 2}
        return TRLService(TRLSettings(**{**values, **settings}))

    return InProcessStack(trainer, gateway=gateway, root=Path(root))


def inference_stack(root: Path, gateway: bool = True) -> InProcessStack:
    """llama.cpp (no model loaded; it may load GGUFs under root/models) and an echo backend named "echo"."""
    def llamacpp():
        from forgeway.services.llamacpp.service import LlamaCppService
        from forgeway.services.llamacpp.settings import LlamaCppSettings

        return LlamaCppService(LlamaCppSettings(host="127.0.0.1", port=0, metrics_port=-1, home=Path(root) / "home",
                                                model_roots=[Path(root) / "models"]))

    def echo():
        from forgeway.services.echo.engine import EchoSettings
        from forgeway.services.echo.service import EchoService

        return EchoService(EchoSettings(host="127.0.0.1", port=0, metrics_port=-1))

    return InProcessStack(llamacpp, echo, gateway=gateway, root=Path(root))
