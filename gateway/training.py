"""Training at the gateway (Train and CreateJob): backend auto goes to Unsloth where it is available and healthy,
else to TRL with a fallback notice; a backend-auto job Unsloth declines before creating it goes to TRL too."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass

from google.protobuf import timestamp_pb2

from forgeway.core.enums import BACKEND
from forgeway.core.errors import InvalidArgument, RemoteError, Unavailable
from forgeway.v1 import common_pb2, jobs_pb2, train_pb2

from . import metrics
from .auth import Principal
from .endpoint import Endpoint
from .router import CAPABILITY, HEALTH, Exclusion, Route, no_route, order_by_load, usable
from .state import GatewayState

TRAIN = "forgeway.v1.BackendService/Train"
# Forwarded to the trainer that takes over, so it can record the fallback in the job's durable history.
FALLBACK_METADATA = "x-forgeway-fallback"


@dataclass(frozen=True)
class FallbackNote:
    requested: str
    used: str
    reason: str

    def metadata(self) -> tuple[tuple[str, str], ...]:
        return ((FALLBACK_METADATA, json.dumps(self.__dict__)),)

    def event(self, job_id: str) -> train_pb2.TrainResponse:
        """The notice as a job event. Sequence 0: it comes from the gateway, outside the trainer's numbering."""
        now = timestamp_pb2.Timestamp()
        now.GetCurrentTime()
        fallback = jobs_pb2.Fallback(requested=self.requested, used=self.used, reason=self.reason)
        return train_pb2.TrainResponse(event=jobs_pb2.JobEvent(job_id=job_id, sequence=0, time=now, fallback=fallback))


def validate(request: train_pb2.TrainRequest) -> None:
    """What the gateway needs to route; the trainer validates the rest."""
    if not request.base_model:
        raise InvalidArgument("base_model", "required")
    if request.method == train_pb2.TRAINING_METHOD_UNSPECIFIED:
        raise InvalidArgument("method", "required")


def _trainers(endpoints: list[Endpoint], kind: str, request: train_pb2.TrainRequest,
              limit: int) -> tuple[list[Endpoint], list[Exclusion]]:
    method, task = request.method, request.task or common_pb2.TASK_TEXT_GENERATION
    found, excluded = [], []
    for endpoint in endpoints:
        if endpoint.kind != kind:
            continue
        if endpoint.capabilities is None:
            excluded.append(Exclusion(endpoint.key, HEALTH, endpoint.unavailable_reason))
            continue
        if not endpoint.serves(TRAIN):
            excluded.append(Exclusion(endpoint.key, CAPABILITY, f"does not serve {TRAIN}"))
            continue
        tasks = endpoint.capabilities.training.tasks
        if tasks and task not in tasks:
            name = common_pb2.Task.Name(task)
            excluded.append(Exclusion(endpoint.key, CAPABILITY, f"does not train for {name}",
                                      InvalidArgument("task", f"no {kind} trainer trains for {name}")))
            continue
        methods = endpoint.capabilities.training.methods
        if methods and method not in methods:
            name = train_pb2.TrainingMethod.Name(method)
            excluded.append(Exclusion(endpoint.key, CAPABILITY, f"does not train {name}",
                                      InvalidArgument("method", f"no {kind} trainer runs {name}")))
            continue
        reason = usable(endpoint, limit)
        if reason is not None:
            excluded.append(reason)
            continue
        found.append(endpoint)
    return order_by_load(found), excluded


def plan_training(endpoints: list[Endpoint], request: train_pb2.TrainRequest,
                  limit: int = 0) -> tuple[list[Endpoint], FallbackNote | None]:
    """The trainers to try, best first, and the fallback notice when the requested trainer could not take it."""
    wanted = BACKEND.name(request.backend)
    if wanted == "trl":
        trl, excluded = _trainers(endpoints, "trl", request, limit)
        if not trl:
            raise no_route("training with trl", excluded)
        return trl, None
    unsloth, excluded = _trainers(endpoints, "unsloth", request, limit)
    if unsloth:
        return unsloth, None
    why = "; ".join(f"{e.endpoint}: {e.reason}" for e in excluded) or "no unsloth endpoint is configured"
    if wanted == "unsloth" and request.HasField("allow_fallback") and not request.allow_fallback:
        raise Unavailable(f"unsloth unavailable: {why}; fallback to trl is disabled", retry_after=5.0,
                          reason="TRAINER_UNAVAILABLE")
    trl, trl_excluded = _trainers(endpoints, "trl", request, limit)
    if not trl:
        raise no_route("training (unsloth, then trl)", excluded + trl_excluded)
    return trl, FallbackNote(requested="unsloth", used="trl", reason=f"unsloth unavailable: {why}")


def declined_for_trl(error: BaseException) -> bool:
    """Whether a trainer refused a job, before creating it, with a hint that trl can take it (e.g. an
    architecture Unsloth does not support): a backend-auto request then falls back."""
    info = getattr(error, "error_info", None)
    return info is not None and info.metadata.get("fallback") == "trl"


def as_trl(request: train_pb2.TrainRequest) -> train_pb2.TrainRequest:
    retry = train_pb2.TrainRequest()
    retry.CopyFrom(request)
    retry.backend = train_pb2.TRAINING_BACKEND_TRL
    return retry


class TrainingDispatch:
    """Train and CreateJob at the gateway: validate, admit, choose the trainers, forward; the one place that knows
    the fallback rules (the servicers only authenticate)."""

    def __init__(self, state: GatewayState):
        self.state = state

    def _plan(self, principal: Principal, request: train_pb2.TrainRequest) -> tuple[list[Endpoint], FallbackNote | None]:
        validate(request)
        self.state.admission.admit(principal).done()
        return plan_training(list(self.state.pool), request, self.state.settings.limits.endpoint_max_in_flight)

    def _retry_on_trl(self, request: train_pb2.TrainRequest, tried: list[Endpoint],
                      error: RemoteError) -> tuple[list[Endpoint], FallbackNote] | None:
        """The trl trainers for a backend-auto request that unsloth declined before creating its job, else None."""
        auto = request.backend == train_pb2.TRAINING_BACKEND_UNSPECIFIED
        if not auto or tried[0].kind != "unsloth" or not declined_for_trl(error):
            return None
        trl, _ = plan_training(list(self.state.pool), as_trl(request), self.state.settings.limits.endpoint_max_in_flight)
        return trl, FallbackNote(requested="unsloth", used="trl", reason=f"unsloth declined: {error.message}")

    async def stream(self, principal: Principal, request: train_pb2.TrainRequest,
                     context) -> AsyncIterator[train_pb2.TrainResponse]:
        """Train: the job's events from the trainer that took it."""
        endpoints, note = self._plan(principal, request)
        yielded = False
        try:
            async for message in self._stream_on(endpoints, note, request, context):
                yielded = True
                yield message
        except RemoteError as exc:
            retry = None if yielded else self._retry_on_trl(request, endpoints, exc)
            if retry is None:
                raise
            async for message in self._stream_on(*retry, request, context):
                yield message

    async def create(self, principal: Principal, request: train_pb2.TrainRequest, context,
                     validate_only: bool = False) -> train_pb2.CreateJobResponse:
        """CreateJob: the job's record from the trainer that took it; with validate_only, the check of the trainer
        that would take it (no job)."""
        endpoints, note = self._plan(principal, request)
        try:
            return await self._create_on(endpoints, note, request, context, validate_only)
        except RemoteError as exc:
            retry = self._retry_on_trl(request, endpoints, exc)
            if retry is None:
                raise
            return await self._create_on(*retry, request, context, validate_only)

    async def _routes(self, endpoints: list[Endpoint], note: FallbackNote | None,
                      request: train_pb2.TrainRequest, validate_only: bool = False) -> list[Route]:
        """Routes to the trainers, those holding the uploaded dataset first."""
        if note is not None and not validate_only:
            metrics.FALLBACKS.labels(note.requested, note.used).inc()
        if request.HasField("resume_from") and len(endpoints) > 1:  # only the job's trainer has its checkpoints
            owners = await self.state.owners.find_job(endpoints, request.resume_from.job_id)
            endpoints = [e for e in endpoints if e.key in owners] or endpoints
        if request.dataset.WhichOneof("source") == "dataset_id" and len(endpoints) > 1:
            owners = await self.state.owners.find_dataset(endpoints, request.dataset.dataset_id)
            endpoints = sorted(endpoints, key=lambda e: e.key not in owners)
        return [Route(e, request.base_model) for e in endpoints]

    async def _create_on(self, endpoints: list[Endpoint], note: FallbackNote | None, request: train_pb2.TrainRequest,
                         context, validate_only: bool = False) -> train_pb2.CreateJobResponse:
        create = train_pb2.CreateJobRequest(train=request, validate_only=validate_only)
        response, route, _ = await self.state.forwarder.unary(
            await self._routes(endpoints, note, request, validate_only),
            lambda r, t, m: r.endpoint.backend.CreateJob(create, timeout=t, metadata=m), context, "CreateJob",
            extra_metadata=note.metadata() if note else (),
        )
        if response.job.id:
            self.state.owners.jobs.remember(response.job.id, route.endpoint.key)
        return response

    async def _stream_on(self, endpoints: list[Endpoint], note: FallbackNote | None, request: train_pb2.TrainRequest,
                         context) -> AsyncIterator[train_pb2.TrainResponse]:
        job_id = ""
        async for message, route in self.state.forwarder.stream(
            await self._routes(endpoints, note, request),
            lambda r, t, m: r.endpoint.backend.Train(request, timeout=t, metadata=m), context, "Train",
            extra_metadata=note.metadata() if note else (),
        ):
            if not job_id:
                job_id = message.event.job_id
                self.state.owners.jobs.remember(job_id, route.endpoint.key)
            elif note is not None:  # the trainer's own fallback event (recorded durably) or the gateway's notice
                if not message.event.HasField("fallback"):
                    yield note.event(job_id)
                note = None
            if message.event.HasField("artifact"):
                await self.state.router.refresh()  # the new model is routable before the caller hears of it
            yield message
        if note is not None and job_id:
            yield note.event(job_id)
