"""GatewayService: `forgeway serve gateway` — the whole contract, forwarded; config reload; the HTTP shim beside it."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from forgeway.v1 import backend_pb2_grpc, datasets_pb2_grpc, jobs_pb2_grpc, models_pb2_grpc, plugins_pb2_grpc

from .config import ConfigWatcher
from .management import GatewayDatasets, GatewayJobs, GatewayModels
from .plugin_service import GatewayPlugins
from .servicers import GatewayBackend
from .settings import GatewaySettings
from .state import GatewayState

log = logging.getLogger("forgeway.gateway")


class GatewayService:
    """A service for serve(): routes every Forgeway RPC to the backends in its settings."""

    kind = "gateway"
    Settings = GatewaySettings

    def __init__(self, settings: GatewaySettings):
        self.settings = settings
        self.ready = False
        self.failure = ""
        self.state = GatewayState(settings)
        self.bound_port = 0  # set by the runtime when it knows the port it bound (settings.port may be 0)
        self.http_port = -1
        self._http = None
        self._tasks: list[asyncio.Task] = []

    def servicers(self) -> list[tuple[object, object, str]]:
        state = self.state
        return [
            (backend_pb2_grpc.add_BackendServiceServicer_to_server, GatewayBackend(state),
             "forgeway.v1.BackendService"),
            (jobs_pb2_grpc.add_JobServiceServicer_to_server, GatewayJobs(state), "forgeway.v1.JobService"),
            (datasets_pb2_grpc.add_DatasetServiceServicer_to_server, GatewayDatasets(state),
             "forgeway.v1.DatasetService"),
            (models_pb2_grpc.add_ModelServiceServicer_to_server, GatewayModels(state), "forgeway.v1.ModelService"),
            (plugins_pb2_grpc.add_PluginServiceServicer_to_server, GatewayPlugins(state), "forgeway.v1.PluginService"),
        ]

    async def start(self) -> None:
        await self.state.start()
        await self.state.pool.settle(self.settings.connect_timeout_seconds)  # start with a known view of the backends
        watcher = ConfigWatcher(self.settings, self.state.apply)
        if watcher.path is not None:
            self._tasks.append(asyncio.create_task(watcher.run()))
        self.watcher = watcher
        if self.settings.http_port >= 0:
            await self._start_http()

    async def stop(self) -> None:
        if self._http is not None:
            self._http.should_exit = True
        for task in self._tasks:
            if task.get_name() != "http":
                task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.state.stop()

    async def _start_http(self) -> None:
        """The OpenAI-compatible API on uvicorn, in this event loop, calling this gateway over loopback gRPC."""
        try:
            from .http import create_app
        except ImportError as exc:
            log.warning("OpenAI HTTP API not started: %s", exc)
            return
        import uvicorn

        port = self.bound_port or self.settings.port
        if not port:
            log.warning("OpenAI HTTP API not started: the gRPC port is chosen at random (port 0) and not known here")
            return
        host = self.settings.host if self.settings.host not in ("0.0.0.0", "::", "") else "127.0.0.1"
        app = create_app(f"{host}:{port}", self.settings)
        console = self.settings.console and self._mount_console(app, f"{host}:{port}")
        config = uvicorn.Config(app, host=self.settings.http_host, port=self.settings.http_port, log_config=None,
                                access_log=False, loop="asyncio")  # requests are counted in /metrics instead
        self._http = _EmbeddedServer(config)
        task = asyncio.create_task(self._http.serve_or_fail(), name="http")
        self._tasks.append(task)
        while not self._http.started and not task.done():
            await asyncio.sleep(0.01)
        if task.done():
            task.result()  # raises why it could not start
            raise RuntimeError("the HTTP server stopped during startup")
        self.http_port = self._http.servers[0].sockets[0].getsockname()[1]
        log.info("OpenAI HTTP API on http://%s:%d/v1", self.settings.http_host, self.http_port)
        if console:
            log.info("console on http://%s:%d/", self.settings.http_host, self.http_port)

    def _mount_console(self, app, target: str) -> bool:
        """The web console at / of the HTTP app; False (logged) when Gradio is not installed."""
        try:
            from .console import mount_console
        except ImportError as exc:
            log.warning("console not started (install forgeway[console]): %s", exc)
            return False
        mount_console(app, target, self.settings)
        return True


class _EmbeddedServer:
    """uvicorn.Server sharing the gateway's event loop; signals stay with serve(), which stops it through stop()."""

    def __new__(cls, config):
        import uvicorn

        class Server(uvicorn.Server):
            def capture_signals(self):
                return contextlib.nullcontext()

            async def serve_or_fail(self) -> None:
                try:
                    await self.serve()
                except SystemExit as exc:  # uvicorn exits the process when it cannot bind
                    raise RuntimeError(f"the HTTP server could not start on port {config.port}") from exc

        return Server(config)
