"""JobService, DatasetService and ModelService at the gateway: each call reaches the endpoint that owns its subject."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from pathlib import PurePath

import grpc

from forgeway.core import pages
from forgeway.core.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable
from forgeway.core.models import ModelInfo
from forgeway.core.modelstore import entry_name
from forgeway.v1 import (
    datasets_pb2,
    datasets_pb2_grpc,
    jobs_pb2,
    jobs_pb2_grpc,
    models_pb2,
    models_pb2_grpc,
)

from .endpoint import Endpoint
from .forward import call_metadata, cancel_with, remaining, translate
from .owners import OwnerCache, ask_owner, stream_from_owner
from .router import Route
from .state import GatewayState
from .status import merged_models

log = logging.getLogger("forgeway.gateway.management")


def _rpc(service: str, method: str) -> str:
    return f"forgeway.v1.{service}/{method}"


def _uses_entry(model: ModelInfo, name: str) -> bool:
    """Whether a loaded model is store entry `name`: by its name, an alias or adapter, or a source naming the entry
    ("name", "store:name", or a path .../models/name/...)."""
    if name in model.names or name in model.adapters or model.source in (name, f"store:{name}"):
        return True
    parts = PurePath(model.source).parts
    return any(a == "models" and b == name for a, b in zip(parts, parts[1:], strict=False))


def serving_entry(name: str, endpoints: Iterable[Endpoint]) -> list[str]:
    """"MODEL on KIND (ADDRESS)" for each model some endpoint holds loaded from store entry `name`."""
    found = []
    for endpoint in endpoints:
        for model in {id(m): m for m in endpoint.model_index.values()}.values():
            if model.loaded and _uses_entry(model, name):
                found.append(f"{model.name} on {endpoint.kind} ({endpoint.key})")
    return found


def _newest_first(item) -> tuple[int, int]:
    return (-item.created.seconds, -item.created.nanos)


class _Owned:
    """Shared plumbing: which endpoints to ask, and fan-out to all of them."""

    def __init__(self, state: GatewayState):
        self.state = state

    def _auth(self, context, what: str | None = None) -> None:
        principal = self.state.keys.authenticate(context.invocation_metadata())
        if what:
            principal.check_train(what)

    def _candidates(self, rpc: str, cache: OwnerCache, item: str) -> tuple[list[Endpoint], list[str]]:
        """Reachable endpoints serving rpc (the cached owner first) and the ones that cannot be reached now."""
        up, down = self.state.router.reachable(rpc)
        if not up:
            raise Unavailable(f"no endpoint serving {rpc} can be reached ({', '.join(down)})", retry_after=1.0)
        return cache.ordered(item, up), down

    async def _fan_out(self, rpc: str, context, call: Callable[[Endpoint, float | None, tuple], Awaitable]) -> list:
        endpoints, down = self.state.router.reachable(rpc)
        if not endpoints:
            raise Unavailable(f"no endpoint serving {rpc} can be reached ({', '.join(down)})", retry_after=1.0)
        timeout = remaining(context)
        answers = await asyncio.gather(*(call(e, timeout, call_metadata()) for e in endpoints), return_exceptions=True)
        good = [a for a in answers if not isinstance(a, BaseException)]
        for endpoint, answer in zip(endpoints, answers, strict=True):
            if isinstance(answer, grpc.aio.AioRpcError):
                if not good:
                    raise translate(answer, endpoint) from None
                log.warning("%s on %s failed: %s", rpc, endpoint.key, answer.code().name)
            elif isinstance(answer, BaseException):
                raise answer
        if down:
            log.warning("%s answered without %s (unreachable)", rpc, ", ".join(down))
        return good


class GatewayJobs(_Owned, jobs_pb2_grpc.JobServiceServicer):
    async def GetJob(self, request, context):
        self._auth(context, "read jobs")
        endpoints, down = self._candidates(_rpc("JobService", "GetJob"), self.state.owners.jobs, request.job_id)
        response, owner = await ask_owner(endpoints, down, "job", request.job_id, context,
                                          lambda e, t, m: e.jobs.GetJob(request, timeout=t, metadata=m))
        self.state.owners.jobs.remember(request.job_id, owner.key)
        return response

    async def ListJobEvents(self, request, context):
        self._auth(context, "read jobs")
        rpc = _rpc("JobService", "ListJobEvents")
        endpoints, down = self._candidates(rpc, self.state.owners.jobs, request.job_id)
        response, owner = await ask_owner(endpoints, down, "job", request.job_id, context,
                                          lambda e, t, m: e.jobs.ListJobEvents(request, timeout=t, metadata=m))
        self.state.owners.jobs.remember(request.job_id, owner.key)
        return response

    async def CancelJob(self, request, context):
        self._auth(context, "cancel jobs")
        endpoints, down = self._candidates(_rpc("JobService", "CancelJob"), self.state.owners.jobs, request.job_id)
        response, _ = await ask_owner(endpoints, down, "job", request.job_id, context,
                                      lambda e, t, m: e.jobs.CancelJob(request, timeout=t, metadata=m))
        return response

    async def WatchJob(self, request, context):
        self._auth(context, "read jobs")
        endpoints, down = self._candidates(_rpc("JobService", "WatchJob"), self.state.owners.jobs, request.job_id)
        async for message, _ in stream_from_owner(endpoints, down, "job", request.job_id, context,
                                                  lambda e, t, m: e.jobs.WatchJob(request, timeout=t, metadata=m)):
            if message.event.HasField("artifact"):
                await self.state.router.refresh()  # the new model is routable before the watcher hears of it
            yield message

    async def ListJobs(self, request, context):
        """Every trainer's page below the same cursor, merged newest first: the first page_size of them are this
        page, and its last job is the next page's cursor."""
        self._auth(context, "read jobs")
        size = pages.page_size(request.page_size)
        pages.job_cursor(request.page_token)  # a malformed token is the caller's error, not each trainer's
        answers = await self._fan_out(_rpc("JobService", "ListJobs"), context,
                                      lambda e, t, m: e.jobs.ListJobs(request, timeout=t, metadata=m))
        jobs = sorted((job for answer in answers for job in answer.jobs), key=pages.JobCursor.of, reverse=True)
        more = len(jobs) > size or any(answer.next_page_token for answer in answers)
        return jobs_pb2.ListJobsResponse(jobs=jobs[:size], next_page_token=pages.next_jobs_token(jobs[:size], more))


class GatewayDatasets(_Owned, datasets_pb2_grpc.DatasetServiceServicer):
    async def UploadDataset(self, request_iterator, context):
        self._auth(context, "upload datasets")
        endpoints = self.state.router.serving_or_raise(_rpc("DatasetService", "UploadDataset"))
        # The upload stream cannot be replayed, so it goes to one endpoint: the least loaded.
        response, route, _ = await self.state.forwarder.unary(
            [Route(endpoints[0], "-")],
            lambda r, t, m: r.endpoint.datasets.UploadDataset(request_iterator, timeout=t, metadata=m),
            context, "UploadDataset",
        )
        self.state.owners.datasets.remember(response.dataset.id, route.endpoint.key)
        return response

    async def GetDataset(self, request, context):
        self._auth(context, "read datasets")
        rpc = _rpc("DatasetService", "GetDataset")
        endpoints, down = self._candidates(rpc, self.state.owners.datasets, request.dataset_id)
        response, owner = await ask_owner(endpoints, down, "dataset", request.dataset_id, context,
                                          lambda e, t, m: e.datasets.GetDataset(request, timeout=t, metadata=m))
        self.state.owners.datasets.remember(request.dataset_id, owner.key)
        return response

    async def ListDatasets(self, request, context):
        self._auth(context, "read datasets")
        answers = await self._fan_out(_rpc("DatasetService", "ListDatasets"), context,
                                      lambda e, t, m: e.datasets.ListDatasets(request, timeout=t, metadata=m))
        unique = {d.id: d for answer in answers for d in answer.datasets}
        return datasets_pb2.ListDatasetsResponse(datasets=sorted(unique.values(), key=_newest_first))


class GatewayModels(_Owned, models_pb2_grpc.ModelServiceServicer):
    async def ListModels(self, request, context):
        self._auth(context)
        answers = await self._fan_out(_rpc("ModelService", "ListModels"), context,
                                      lambda e, t, m: e.models.ListModels(request, timeout=t, metadata=m))
        return models_pb2.ListModelsResponse(models=merged_models((a.models for a in answers), self.state.settings))

    async def LoadModel(self, request, context):
        """To the least loaded endpoint of options["backend"] (if given) that has the base model (for adapters)."""
        self._auth(context, "load models")
        if not request.name:
            raise InvalidArgument("name", "required")
        endpoints = self.state.router.serving_or_raise(_rpc("ModelService", "LoadModel"))
        forwarded = models_pb2.LoadModelRequest()
        forwarded.CopyFrom(request)
        kind = forwarded.options.pop("backend", "")
        if kind:
            endpoints = [e for e in endpoints if e.kind == kind]
            if not endpoints:
                raise InvalidArgument("options.backend", f"no usable {kind!r} endpoint loads models")
        if request.base_model:
            endpoints = [e for e in endpoints if request.base_model in e.model_index]
            if not endpoints:
                raise NotFound("model", request.base_model)
        response, route, _ = await self.state.forwarder.unary(
            [Route(e, request.name) for e in endpoints],
            lambda r, t, m: r.endpoint.models.LoadModel(forwarded, timeout=t, metadata=m), context, "LoadModel",
        )
        await route.endpoint.refresh()
        return response

    async def UnloadModel(self, request, context):
        """On every endpoint that has the model."""
        self._auth(context, "unload models")
        rpc = _rpc("ModelService", "UnloadModel")
        holders = [e for e in self.state.router.serving(rpc) if request.name in e.model_index]
        if not holders:
            raise NotFound("model", request.name, sorted({n for e in self.state.pool for n in e.model_index}))
        for endpoint in holders:
            try:
                await endpoint.models.UnloadModel(request, timeout=remaining(context), metadata=call_metadata())
            except grpc.aio.AioRpcError as error:
                raise translate(error, endpoint) from None
            finally:
                await endpoint.refresh()
        return models_pb2.UnloadModelResponse()

    async def DeleteModel(self, request, context):
        """To the trainer holding the entry, once no endpoint serves it loaded (Capabilities read afresh)."""
        self._auth(context, "delete models")
        name = entry_name(request.name)
        await self.state.router.refresh(_rpc("ModelService", "ListModels"))
        users = serving_entry(name, self.state.pool)
        if users:
            raise FailedPrecondition(f"model {name!r} is loaded ({'; '.join(users)}); unload it first",
                                     metadata={"model": name})
        rpc = _rpc("ModelService", "DeleteModel")
        endpoints, down = self._candidates(rpc, self.state.owners.models, name)
        response, _ = await ask_owner(endpoints, down, "model", name, context,
                                      lambda e, t, m: e.models.DeleteModel(request, timeout=t, metadata=m))
        await self.state.router.refresh(_rpc("ModelService", "ListModels"))  # the catalogs drop it before we answer
        return response

    async def ExportModel(self, request, context):
        """To the trainer holding the entry; the new entry is routable once this answers."""
        self._auth(context, "export models")
        name = entry_name(request.name)
        if request.output_name:
            entry_name(request.output_name, "output_name")
        rpc = _rpc("ModelService", "ExportModel")
        endpoints, down = self._candidates(rpc, self.state.owners.models, name)
        response, owner = await ask_owner(endpoints, down, "model", name, context,
                                          lambda e, t, m: e.models.ExportModel(request, timeout=t, metadata=m))
        self.state.owners.models.remember(response.model.name, owner.key)
        await self.state.router.refresh(_rpc("ModelService", "ListModels"))
        return response

    async def DownloadModel(self, request, context):
        """A stream from the trainer holding the entry (or the job whose checkpoint is asked for)."""
        self._auth(context)
        rpc = _rpc("ModelService", "DownloadModel")
        if not request.HasField("checkpoint"):
            name = entry_name(request.name)
            endpoints, down = self._candidates(rpc, self.state.owners.models, name)
            async for chunk, owner in stream_from_owner(
                    endpoints, down, "model", name, context,
                    lambda e, t, m: e.models.DownloadModel(request, timeout=t, metadata=m)):
                self.state.owners.models.remember(name, owner.key)
                yield chunk
            return
        job_id = request.checkpoint.job_id
        if not job_id:
            raise InvalidArgument("checkpoint.job_id", "required")
        # the job's trainer, found by its job; its answer (an unknown checkpoint listing the known ones) is final
        endpoints, down = self._candidates(rpc, self.state.owners.jobs, job_id)
        _, owner = await ask_owner(endpoints, down, "job", job_id, context,
                                   lambda e, t, m: e.jobs.GetJob(jobs_pb2.GetJobRequest(job_id=job_id), timeout=t,
                                                                 metadata=m))
        self.state.owners.jobs.remember(job_id, owner.key)
        stream = owner.models.DownloadModel(request, timeout=remaining(context), metadata=call_metadata())
        cancel_with(context, stream)
        started = False
        try:
            async for chunk in stream:
                started = True
                yield chunk
        except grpc.aio.AioRpcError as error:
            raise translate(error, owner, started) from None

    async def EvaluateModel(self, request, context):
        """To the trainer holding the entry."""
        self._auth(context, "evaluate models")
        name = entry_name(request.name)
        endpoints, down = self._candidates(_rpc("ModelService", "EvaluateModel"), self.state.owners.models, name)
        response, owner = await ask_owner(endpoints, down, "model", name, context,
                                          lambda e, t, m: e.models.EvaluateModel(request, timeout=t, metadata=m))
        self.state.owners.models.remember(name, owner.key)
        return response
