"""Running the shim on uvicorn: standalone (`python -m forgeway.gateway.http`) or in a background thread."""

from __future__ import annotations

import argparse
import threading
import time

import uvicorn
from fastapi import FastAPI

from .app import create_app
from .settings import HttpSettings


def uvicorn_server(app: FastAPI, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning") -> uvicorn.Server:
    """A uvicorn server for the app (port 0 picks a free one: read it with bound_port once started)."""
    # loop="asyncio": grpc.aio runs on asyncio's own loop, not uvloop.
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, lifespan="on", loop="asyncio",
                            access_log=False, timeout_graceful_shutdown=5)
    return uvicorn.Server(config)


def bound_port(server: uvicorn.Server) -> int:
    return server.servers[0].sockets[0].getsockname()[1]


class BackgroundServer:
    """Serves an app on a free loopback port in a thread with its own event loop (tests, benchmarks)."""

    def __init__(self, app: FastAPI, host: str = "127.0.0.1"):
        self.server = uvicorn_server(app, host)
        self.host = host
        self.thread = threading.Thread(target=self.server.run, name="forgeway-http", daemon=True)

    def __enter__(self) -> BackgroundServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the HTTP shim did not start")
            time.sleep(0.02)
        return self

    @property
    def url(self) -> str:
        return f"http://{self.host}:{bound_port(self.server)}"

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m forgeway.gateway.http",
                                     description="Serve the OpenAI-compatible HTTP API in front of a gRPC target.")
    parser.add_argument("--target", required=True, help="gRPC address of the gateway or a backend (host:port)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8000, help="HTTP port (0 picks a free one)")
    parser.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"])
    parser.add_argument("--settings-json", default="{}",
                        help="HttpSettings as JSON, e.g. '{\"max_body_bytes\": 1048576}'")
    args = parser.parse_args(argv)
    settings = HttpSettings.model_validate_json(args.settings_json)
    server = uvicorn_server(create_app(args.target, settings), args.host, args.port, args.log_level)
    server.run()
    return 0
