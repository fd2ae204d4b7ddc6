"""Page tokens of the job listings: opaque to callers; to the trainers, and to the gateway that merges their pages,
a keyset cursor (where the previous page ended), so paging never skips or repeats a row as jobs are added."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass

from forgeway.v1 import jobs_pb2

from .errors import InvalidArgument

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


def page_size(asked: int) -> int:
    """The page size a listing uses: 0 means the default, anything larger than the maximum is the maximum."""
    return min(asked or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


@dataclass(frozen=True, order=True)
class JobCursor:
    """A job's place in the newest-first order (creation time, then id); the next page holds the jobs below it."""

    created_ns: int
    job_id: str

    @classmethod
    def of(cls, job: jobs_pb2.Job) -> JobCursor:
        return cls(job.created.ToNanoseconds(), job.id)


def _encode(fields: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(fields, separators=(",", ":")).encode()).decode().rstrip("=")


def _decode(token: str, kind: str) -> dict:
    try:
        fields = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (ValueError, binascii.Error):
        fields = None
    if not isinstance(fields, dict) or fields.get("k") != kind:
        raise InvalidArgument("page_token", "not a next_page_token of this listing")
    return fields


def job_token(cursor: JobCursor) -> str:
    return _encode({"k": "jobs", "t": cursor.created_ns, "id": cursor.job_id})


def job_cursor(token: str) -> JobCursor | None:
    """Where the page a ListJobs token asks for starts below; None for the first page."""
    if not token:
        return None
    fields = _decode(token, "jobs")
    if not isinstance(fields.get("t"), int) or not isinstance(fields.get("id"), str):
        raise InvalidArgument("page_token", "not a next_page_token of this listing")
    return JobCursor(fields["t"], fields["id"])


def next_jobs_token(jobs: list[jobs_pb2.Job], more: bool) -> str:
    """The token after a page of jobs: empty when nothing follows it."""
    return job_token(JobCursor.of(jobs[-1])) if more and jobs else ""


def event_token(job_id: str, sequence: int, newest_first: bool) -> str:
    """The token of the page that continues after event `sequence` in the listing's order."""
    return _encode({"k": "events", "job": job_id, "seq": sequence, "desc": newest_first})


def next_events_token(job_id: str, events: list[jobs_pb2.JobEvent], more: bool, newest_first: bool) -> str:
    """The token after a page of a job's events: empty when nothing follows it."""
    return event_token(job_id, events[-1].sequence, newest_first) if more and events else ""


def event_cursor(token: str, job_id: str, newest_first: bool) -> int | None:
    """The sequence the page a ListJobEvents token asks for continues after (below it when newest first); None for
    the first page. A token of another job or order is INVALID_ARGUMENT."""
    if not token:
        return None
    fields = _decode(token, "events")
    if fields.get("job") != job_id or fields.get("desc") != newest_first or not isinstance(fields.get("seq"), int):
        raise InvalidArgument("page_token", "not a next_page_token of this job's events in this order")
    return fields["seq"]
