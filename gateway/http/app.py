"""create_app(): the OpenAI-compatible HTTP API over a gRPC target serving the forgeway.v1 contract."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from forgeway import __version__

from . import routes_chat, routes_embeddings, routes_files, routes_jobs, routes_models
from .errors import install_error_handlers
from .middleware import RequestGuard
from .responses import STREAM_EVENTS
from .settings import HttpSettings
from .upstream import Upstream

DESCRIPTION = (
    "OpenAI's HTTP API over Forgeway's gRPC contract. Errors are "
    '{"error": {"message", "type", "param", "code"}} with statuses from the one error table; parameters a '
    "backend cannot honour are rejected with 400 naming them, never ignored."
)


def http_settings(settings: object | None) -> HttpSettings:
    """HttpSettings as given; or from an owner's settings: its `http` field, else its fields of the same names."""
    if settings is None or isinstance(settings, HttpSettings):
        return settings or HttpSettings()
    nested = getattr(settings, "http", None)
    if isinstance(nested, HttpSettings):
        return nested
    return HttpSettings(**{n: getattr(settings, n) for n in HttpSettings.model_fields if hasattr(settings, n)})


def create_app(target: str, settings: HttpSettings | None = None) -> FastAPI:
    """The shim as an ASGI app; it opens a grpc.aio channel to `target` on startup and closes it on shutdown.

    Args:
        target: gRPC address ("127.0.0.1:50051", "dns:///gateway:50051") of the gateway or of one backend.
        settings: limits and timeouts; the defaults when None. Another settings object (the gateway's) is read
            through http_settings().
    """
    settings = http_settings(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.upstream = Upstream(target, settings)
        try:
            yield
        finally:
            await app.state.upstream.close()

    app = FastAPI(title=settings.title, version=__version__, description=DESCRIPTION, lifespan=lifespan)
    app.state.settings = settings
    for module in (routes_chat, routes_embeddings, routes_models, routes_files, routes_jobs):
        app.include_router(module.router)
    install_error_handlers(app)
    app.add_middleware(RequestGuard, settings=settings)
    app.openapi = lambda: _openapi(app)
    return app


def _openapi(app: FastAPI) -> dict:
    """FastAPI's document without its 422 responses: validation errors are answered 400 in OpenAI's shape."""
    if app.openapi_schema is None:
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        for path in schema.get("paths", {}).values():
            for operation in path.values():
                operation.get("responses", {}).pop("422", None)
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for model in STREAM_EVENTS:  # the event schemas that text/event-stream responses point at
            event = model.model_json_schema(ref_template="#/components/schemas/{model}")
            components.update(event.pop("$defs", {}))
            components.setdefault(model.__name__, event)
        for name in ("HTTPValidationError", "ValidationError"):
            components.pop(name, None)
        app.openapi_schema = schema
    return app.openapi_schema
