"""Training routing: backend auto -> Unsloth when available and healthy, else TRL with a fallback notice."""

from __future__ import annotations

import json
from dataclasses import dataclass

from google.protobuf import timestamp_pb2

from forgeway.services.runtime.errors import InvalidArgument, Unavailable
from forgeway.v1 import common_pb2, jobs_pb2, train_pb2

from .endpoint import Endpoint
from .router import CAPABILITY, HEALTH, Exclusion, no_route, order_by_load, usable

TRAIN = "forgeway.v1.BackendService/Train"
# Forwarded to the trainer that takes over, so it can record the fallback in the job's durable history.
FALLBACK_METADATA = "x-forgeway-fallback"
BACKENDS = {
    train_pb2.TRAINING_BACKEND_UNSPECIFIED: "auto",
    train_pb2.TRAINING_BACKEND_TRL: "trl",
    train_pb2.TRAINING_BACKEND_UNSLOTH: "unsloth",
}


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
    wanted = BACKENDS.get(request.backend, "auto")
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
