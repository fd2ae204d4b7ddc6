"""/v1/fine_tuning/jobs: create (BackendService.Train, detached after its first event), list, get, events, cancel."""

from __future__ import annotations

from typing import Annotated

import grpc
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from forgeway.v1 import jobs_pb2

from .convert_tuning import event_object, job_object, sequence_of, train_param, train_request
from .errors import ApiError, checked_text, from_grpc
from .responses import documented
from .schemas_tuning import FineTuningJob, FineTuningJobRequest, JobEventList, JobList
from .upstream import Upstream, answer, call_metadata, upstream

router = APIRouter(tags=["fine-tuning"])
Limit = Annotated[int, Query(ge=1, le=100)]
After = Annotated[str | None, Query(max_length=256)]


def _job_param(field: str) -> str | None:
    return "fine_tuning_job_id" if field else None


async def read_job(request: Request, target: Upstream, job_id: str) -> jobs_pb2.Job:
    call = target.jobs.GetJob(jobs_pb2.GetJobRequest(job_id=checked_text(job_id, "fine_tuning_job_id")),
                              metadata=call_metadata(request), timeout=target.settings.request_timeout_seconds)
    return (await answer(request, call, _job_param)).job


@router.post("/v1/fine_tuning/jobs", response_model=None, responses=documented(FineTuningJob, statuses=(
    400, 401, 403, 404, 409, 413, 415, 429, 500, 501, 503, 504)))
async def create_job(body: FineTuningJobRequest, request: Request,
                     target: Upstream = Depends(upstream)) -> JSONResponse:
    """Start a fine-tuning job: the trainer persists it and answers its first event; the job runs on detached."""
    proto = train_request(body, target.settings.base_learning_rate)
    call = target.backend.Train(proto, metadata=call_metadata(request), timeout=target.settings.request_timeout_seconds)
    try:
        first = await call.read()
    except grpc.RpcError as error:
        raise from_grpc(error, train_param) from None
    finally:
        call.cancel()  # the job outlives the stream; events are read back with /events
    if first is grpc.aio.EOF or not first.event.job_id:
        raise ApiError(502, "the trainer answered no job", code="bad_gateway")
    try:
        job = await read_job(request, target, first.event.job_id)
    except ApiError:  # the record is not readable here (yet): answer what the first event says
        job = jobs_pb2.Job(id=first.event.job_id, state=first.event.state.state or jobs_pb2.JOB_STATE_QUEUED,
                           base_model=body.model, created=first.event.time, updated=first.event.time)
    answer_ = job_object(job, target.settings.base_learning_rate)
    hp = body.effective_hyperparameters
    answer_.update(
        training_file=body.training_file, validation_file=body.validation_file, seed=body.seed,
        user_provided_suffix=body.suffix,
        hyperparameters={"n_epochs": hp.n_epochs, "batch_size": hp.batch_size,
                         "learning_rate_multiplier": hp.learning_rate_multiplier},
        method={"type": body.method_type},
    )
    return JSONResponse(answer_)


@router.get("/v1/fine_tuning/jobs", response_model=None, responses=documented(JobList, statuses=(
    400, 401, 403, 429, 500, 501, 503, 504)))
async def list_jobs(request: Request, after: After = None, limit: Limit = 20,
                    target: Upstream = Depends(upstream)) -> JSONResponse:
    """Jobs, newest first; `after` is the last job id of the previous page."""
    call = target.jobs.ListJobs(jobs_pb2.ListJobsRequest(limit=1000), metadata=call_metadata(request),
                                timeout=target.settings.request_timeout_seconds)
    jobs = list((await answer(request, call)).jobs)
    if after is not None:
        ids = [j.id for j in jobs]
        if after not in ids:
            raise ApiError(400, f"after: no job {after!r}", param="after", code="invalid_value")
        jobs = jobs[ids.index(after) + 1:]
    rate = target.settings.base_learning_rate
    return JSONResponse({"object": "list", "data": [job_object(j, rate) for j in jobs[:limit]],
                         "has_more": len(jobs) > limit})


@router.get("/v1/fine_tuning/jobs/{fine_tuning_job_id}", response_model=None, responses=documented(
    FineTuningJob, statuses=(400, 401, 403, 404, 429, 500, 501, 503, 504)))
async def get_job(fine_tuning_job_id: str, request: Request, target: Upstream = Depends(upstream)) -> JSONResponse:
    """One job."""
    job = await read_job(request, target, fine_tuning_job_id)
    return JSONResponse(job_object(job, target.settings.base_learning_rate))


@router.get("/v1/fine_tuning/jobs/{fine_tuning_job_id}/events", response_model=None, responses=documented(
    JobEventList, statuses=(400, 401, 403, 404, 429, 500, 501, 503, 504)))
async def job_events(fine_tuning_job_id: str, request: Request, after: After = None, limit: Limit = 20,
                     target: Upstream = Depends(upstream)) -> JSONResponse:
    """A job's events, newest first; `after` is the last event id of the previous page (older ones follow)."""
    job = await read_job(request, target, fine_tuning_job_id)
    newest = job.last_sequence
    if after is not None:
        cursor = sequence_of(after, job.id)
        if cursor is None:
            raise ApiError(400, f"after: not an event id of job {job.id}", param="after", code="invalid_value")
        newest = min(newest, cursor - 1)
    oldest = max(1, newest - limit + 1)
    events = await _history(request, target, job.id, oldest, newest) if newest >= 1 else []
    return JSONResponse({"object": "list", "data": [event_object(e) for e in reversed(events)],
                         "has_more": bool(events) and oldest > 1})


async def _history(request: Request, target: Upstream, job_id: str, oldest: int, newest: int) -> list:
    """Events oldest..newest from WatchJob, which would go on following a running job: stop at newest."""
    call = target.jobs.WatchJob(jobs_pb2.WatchJobRequest(job_id=job_id, after_sequence=oldest - 1),
                                metadata=call_metadata(request), timeout=target.settings.request_timeout_seconds)
    events = []
    try:
        while True:
            reply = await call.read()
            if reply is grpc.aio.EOF:
                break
            if reply.event.sequence > newest:
                break
            events.append(reply.event)
            if reply.event.sequence >= newest:
                break
    except grpc.RpcError as error:
        raise from_grpc(error, _job_param) from None
    finally:
        call.cancel()
    return events


@router.post("/v1/fine_tuning/jobs/{fine_tuning_job_id}/cancel", response_model=None, responses=documented(
    FineTuningJob, statuses=(400, 401, 403, 404, 409, 429, 500, 501, 503, 504)))
async def cancel_job(fine_tuning_job_id: str, request: Request, target: Upstream = Depends(upstream)) -> JSONResponse:
    """Cancel a queued or running job (409 when it already finished)."""
    call = target.jobs.CancelJob(
        jobs_pb2.CancelJobRequest(job_id=checked_text(fine_tuning_job_id, "fine_tuning_job_id")),
        metadata=call_metadata(request), timeout=target.settings.request_timeout_seconds)
    job = (await answer(request, call, _job_param)).job
    return JSONResponse(job_object(job, target.settings.base_learning_rate))
