"""GET /v1/models from Capabilities (models and their aliases); POST and DELETE /v1/models/{id} load and unload
(LlamaForge's server loads with POST; a key allowed to manage models is needed when keys are configured); and
/healthz, /readyz, /metrics."""

from __future__ import annotations

import time

import grpc
from fastapi import APIRouter, Body, Depends, Request
from fastapi.responses import JSONResponse, Response
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from forgeway.core.enums import QUANTIZATION, TASK
from forgeway.core.errors import InvalidArgument
from forgeway.core.generation import Task
from forgeway.v1 import capabilities_pb2, models_pb2

from .errors import OpenAIHTTPError, checked_text
from .responses import Health, Model, ModelList, documented
from .schemas import Strict
from .upstream import Upstream, answer, call_metadata, upstream

router = APIRouter()
STARTED = int(time.time())


def known_models(capabilities: capabilities_pb2.CapabilitiesResponse) -> list[models_pb2.ModelInfo]:
    """The endpoint's models, or (from a gateway that lists only endpoints) its endpoints' models; first name wins."""
    seen: dict[str, models_pb2.ModelInfo] = {}
    sources = [capabilities.models, *(e.capabilities.models for e in capabilities.endpoints)]
    for models in sources:
        for model in models:
            seen.setdefault(model.name, model)
    return list(seen.values())


def model_entries(model: models_pb2.ModelInfo) -> list[dict]:
    """A model's entry, then one per alias (alias_of names the model). `task` says its kind (text-generation,
    embedding, rerank, ...); an embedding model also gives its vector length and Matryoshka lengths."""
    task = Task.from_proto(model.task) or Task.TEXT_GENERATION
    embedding = task is Task.EMBEDDING
    created = model.created.seconds if model.HasField("created") else STARTED  # a trained model: when it was written
    base = {"object": "model", "created": created, "owned_by": model.backend or "forgeway", "backend": model.backend,
            "description": model.description or None, "base_model": model.base_model or None,
            "provider": model.provider or None,
            "task": task.value, "context_length": model.context_length, "loaded": model.loaded, "chat": model.chat,
            "adapters": list(model.adapters), "dimensions": (model.dimensions or None) if embedding else None,
            "matryoshka_dimensions": sorted(model.matryoshka_dimensions) if embedding else None}
    return [{"id": model.name, **base, "alias_of": None},
            *({"id": alias, **base, "alias_of": model.name} for alias in model.aliases)]


async def capabilities(request: Request, target: Upstream) -> capabilities_pb2.CapabilitiesResponse:
    call = target.backend.Capabilities(capabilities_pb2.CapabilitiesRequest(), metadata=call_metadata(request),
                                       timeout=target.settings.request_timeout_seconds)
    return await answer(request, call)


@router.get("/v1/models", tags=["models"], response_model=None, responses=documented(ModelList, statuses=(
    401, 403, 429, 500, 503, 504)))
async def list_models(request: Request, target: Upstream = Depends(upstream)) -> JSONResponse:
    """Every model the target serves, and each alias as its own entry."""
    models = known_models(await capabilities(request, target))
    return JSONResponse({"object": "list", "data": [e for m in models for e in model_entries(m)]})


@router.get("/v1/models/{model:path}", tags=["models"], response_model=None, responses=documented(Model, statuses=(
    401, 403, 404, 429, 500, 503, 504)))
async def get_model(model: str, request: Request, target: Upstream = Depends(upstream)) -> JSONResponse:
    """One model by name or alias."""
    for info in known_models(await capabilities(request, target)):
        for entry in model_entries(info):
            if entry["id"] == model:
                return JSONResponse(entry)
    raise OpenAIHTTPError(404, f"The model {model!r} does not exist", param="model", code="model_not_found")


class LoadModel(Strict):
    """What to load under the path's name; every field is optional (the model-store entry of that name)."""

    source: str = ""
    backend: str = ""
    task: str | None = None
    quantization: str | None = None
    base_model: str = ""
    options: dict[str, str | int | float | bool] = {}


def load_request(name: str, body: LoadModel) -> models_pb2.LoadModelRequest:
    options = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in body.options.items()}
    if body.backend:
        options["backend"] = body.backend
    request = models_pb2.LoadModelRequest(name=name, source=body.source, base_model=body.base_model, options=options)
    try:
        if body.task:
            request.task = TASK.value(body.task)
        if body.quantization:
            request.quantization = QUANTIZATION.value(body.quantization)
    except InvalidArgument as error:
        field = error.violations[0][0] if error.violations else None
        raise OpenAIHTTPError(400, str(error), param=field, code="invalid_value") from None
    return request


@router.post("/v1/models/{model:path}", tags=["models"], response_model=None, responses=documented(Model, statuses=(
    400, 401, 403, 404, 409, 429, 500, 501, 503, 504)))
async def load_model(model: str, request: Request, body: LoadModel | None = Body(None),
                     target: Upstream = Depends(upstream)) -> JSONResponse:
    """Load a model (LlamaForge's POST /v1/models/{id}): the body may name a source, backend, task and options."""
    call = target.models.LoadModel(load_request(checked_text(model, "model"), body or LoadModel()),
                                   metadata=call_metadata(request), timeout=target.settings.load_timeout_seconds)
    loaded = await answer(request, call)
    return JSONResponse({**model_entries(loaded.model)[0], "status": "loaded"})


@router.delete("/v1/models/{model:path}", tags=["models"], response_model=None, responses=documented(Model, statuses=(
    400, 401, 403, 404, 409, 429, 500, 501, 503, 504)))
async def unload_model(model: str, request: Request, target: Upstream = Depends(upstream)) -> JSONResponse:
    """Unload a model or adapter; answers OpenAI's deleted-model shape."""
    call = target.models.UnloadModel(models_pb2.UnloadModelRequest(name=checked_text(model, "model")),
                                     metadata=call_metadata(request), timeout=target.settings.request_timeout_seconds)
    await answer(request, call)
    return JSONResponse({"id": model, "object": "model", "deleted": True})


@router.get("/healthz", tags=["health"], response_model=None, responses=documented(Health, statuses=()))
async def healthz() -> JSONResponse:
    """Liveness: the shim process answers."""
    return JSONResponse({"status": "ok"})


@router.get("/readyz", tags=["health"], response_model=None, responses=documented(Health, statuses=(503,)))
async def readyz(request: Request, target: Upstream = Depends(upstream)) -> JSONResponse:
    """Readiness: the target answers Capabilities and it, or at least one endpoint behind it, is available."""
    try:
        reply = await target.backend.Capabilities(
            capabilities_pb2.CapabilitiesRequest(), metadata=call_metadata(request),
            timeout=target.settings.readiness_timeout_seconds)
    except grpc.RpcError as error:
        if error.code() in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
            return await _health_check(target)  # Capabilities needs a key here: ask grpc.health.v1 instead
        return JSONResponse({"status": "unavailable", "reason": f"{error.code().name}: {error.details()}"}, 503)
    serving = [e.address for e in reply.endpoints if e.capabilities.availability.available]
    if reply.availability.available or serving:
        return JSONResponse({"status": "ready", "reason": reply.availability.reason or None,
                             "details": {"backend": reply.backend, "endpoints_available": serving}})
    return JSONResponse({"status": "unavailable", "reason": reply.availability.reason or "not available"}, 503)


async def _health_check(target: Upstream) -> JSONResponse:
    try:
        reply = await health_pb2_grpc.HealthStub(target.channel).Check(
            health_pb2.HealthCheckRequest(), timeout=target.settings.readiness_timeout_seconds)
    except grpc.RpcError as error:
        return JSONResponse({"status": "unavailable", "reason": f"health: {error.code().name}"}, 503)
    if reply.status == health_pb2.HealthCheckResponse.SERVING:
        return JSONResponse({"status": "ready", "reason": "grpc.health.v1 SERVING (Capabilities needs a key)"})
    return JSONResponse({"status": "unavailable", "reason": "grpc.health.v1 not SERVING"}, 503)


@router.get("/metrics", tags=["health"], response_class=Response,
            responses={200: {"content": {CONTENT_TYPE_LATEST.split(";")[0]: {"schema": {"type": "string"}}}}})
async def metrics() -> Response:
    """Prometheus metrics of this process (the shim's forgeway_http_* and, in the gateway, the gateway's)."""
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
