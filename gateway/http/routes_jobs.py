"""/v1/fine_tuning/jobs: create (BackendService.CreateJob), list and events (paged by the contract's page tokens), get,
cancel. The create, get, list and cancel answers are one conversion of the job's record (convert_tuning.job_object)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from forgeway.core import pages
from forgeway.v1 import jobs_pb2, train_pb2

from .convert_tuning import event_object, job_object, sequence_of, train_param, train_request
from .errors import OpenAIHTTPError, checked_text
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
    """Start a fine-tuning job: the trainer records it and answers its record; the job runs on."""
    create = train_pb2.CreateJobRequest(train=train_request(body, target.settings.base_learning_rate))
    call = target.backend.CreateJob(create, metadata=call_metadata(request),
                                    timeout=target.settings.request_timeout_seconds)
    job = (await answer(request, call, train_param)).job
    return JSONResponse(job_object(job, target.settings.base_learning_rate))


@router.get("/v1/fine_tuning/jobs", response_model=None, responses=documented(JobList, statuses=(
    400, 401, 403, 429, 500, 501, 503, 504)))
async def list_jobs(request: Request, after: After = None, limit: Limit = 20,
                    target: Upstream = Depends(upstream)) -> JSONResponse:
    """Jobs, newest first; `after` is the last job id of the previous page."""
    token = ""
    if after is not None:
        try:
            token = pages.job_token(pages.JobCursor.of(await read_job(request, target, after)))
        except OpenAIHTTPError as error:
            if error.status != 404:
                raise
            raise OpenAIHTTPError(400, f"after: no job {after!r}", param="after", code="invalid_value") from None
    call = target.jobs.ListJobs(jobs_pb2.ListJobsRequest(page_size=limit, page_token=token),
                                metadata=call_metadata(request), timeout=target.settings.request_timeout_seconds)
    page = await answer(request, call)
    rate = target.settings.base_learning_rate
    return JSONResponse({"object": "list", "data": [job_object(j, rate) for j in page.jobs],
                         "has_more": bool(page.next_page_token)})


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
    job_id = checked_text(fine_tuning_job_id, "fine_tuning_job_id")
    token = ""
    if after is not None:
        cursor = sequence_of(after, job_id)
        if cursor is None:
            raise OpenAIHTTPError(400, f"after: not an event id of job {job_id}", param="after",
                                  code="invalid_value")
        token = pages.event_token(job_id, cursor, newest_first=True)
    call = target.jobs.ListJobEvents(
        jobs_pb2.ListJobEventsRequest(job_id=job_id, page_size=limit, page_token=token, newest_first=True),
        metadata=call_metadata(request), timeout=target.settings.request_timeout_seconds)
    page = await answer(request, call, _job_param)
    return JSONResponse({"object": "list", "data": [event_object(e) for e in page.events],
                         "has_more": bool(page.next_page_token)})


@router.post("/v1/fine_tuning/jobs/{fine_tuning_job_id}/cancel", response_model=None, responses=documented(
    FineTuningJob, statuses=(400, 401, 403, 404, 409, 429, 500, 501, 503, 504)))
async def cancel_job(fine_tuning_job_id: str, request: Request, target: Upstream = Depends(upstream)) -> JSONResponse:
    """Cancel a queued or running job (409 when it already finished)."""
    call = target.jobs.CancelJob(
        jobs_pb2.CancelJobRequest(job_id=checked_text(fine_tuning_job_id, "fine_tuning_job_id")),
        metadata=call_metadata(request), timeout=target.settings.request_timeout_seconds)
    job = (await answer(request, call, _job_param)).job
    return JSONResponse(job_object(job, target.settings.base_learning_rate))
