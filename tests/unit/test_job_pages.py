"""Paging of the job listings: JobStore's keyset pages (ties on the creation time, the state filter, a jobs.db from
before the listing columns), the page tokens, and the gateway's bounded cache of job and dataset owners."""

from __future__ import annotations

import sqlite3

import pytest

from forgeway.core import pages
from forgeway.core.errors import InvalidArgument
from forgeway.gateway.owners import OwnerCache, Owners
from forgeway.services.training.jobs import JobStore
from forgeway.v1 import jobs_pb2, train_pb2

REQUEST = train_pb2.TrainRequest(base_model="m", output=train_pb2.TrainOutput(suffix="cats"))


def walk(store: JobStore, size: int, state: int = 0) -> list[list[str]]:
    """Every page of the store's listing, by the tokens the servicer would hand out."""
    token, seen = "", []
    for _ in range(20):  # a listing that never ends fails here instead of hanging
        jobs, more = store.list(state, size, pages.job_cursor(token))
        seen.append([j.id for j in jobs])
        token = pages.next_jobs_token(jobs, more)
        if not token:
            return seen
    raise AssertionError(f"no last page after {seen}")


def test_pages_cover_every_job_once_newest_first_even_with_equal_creation_times(tmp_path):
    store = JobStore(tmp_path / "jobs.db")
    ids = [store.create(REQUEST, "trl", "sft").id for _ in range(7)]
    for job_id in ids[2:5]:  # three jobs created in the same nanosecond: the id breaks the tie
        job = store.get(job_id)
        job.created.FromNanoseconds(5)
        store._db.execute("UPDATE jobs SET created_ns = 5, record = ? WHERE id = ?", (job.SerializeToString(), job_id))
    newest_first = [r[0] for r in store._db.execute("SELECT id FROM jobs ORDER BY created_ns DESC, id DESC")]
    listed = walk(store, 3)
    assert [len(page) for page in listed] == [3, 3, 1]
    assert [job_id for page in listed for job_id in page] == newest_first
    assert sorted(newest_first) == sorted(ids)
    assert store.get(ids[0]).suffix == "cats"


def test_the_state_filter_pages_too(tmp_path):
    store = JobStore(tmp_path / "jobs.db")
    ids = [store.create(REQUEST, "trl", "sft").id for _ in range(5)]
    for job_id in ids[::2]:
        store.append(job_id, state=jobs_pb2.StateChange(state=jobs_pb2.JOB_STATE_FAILED, message="boom"))
    failed = walk(store, 2, jobs_pb2.JOB_STATE_FAILED)
    assert [job_id for page in failed for job_id in page] == ids[::2][::-1]
    assert [j.id for j in store.unfinished()] == ids[1::2]


def test_a_jobs_db_from_before_the_listing_columns_is_filled_in(tmp_path):
    path = tmp_path / "jobs.db"
    old = JobStore(path)
    ids = [old.create(REQUEST, "trl", "sft").id for _ in range(3)]
    old.append(ids[1], state=jobs_pb2.StateChange(state=jobs_pb2.JOB_STATE_SUCCEEDED))
    old.close()
    db = sqlite3.connect(path)  # the table as the first version wrote it
    db.executescript("DROP INDEX jobs_newest; ALTER TABLE jobs DROP COLUMN created_ns; "
                     "ALTER TABLE jobs DROP COLUMN state;")
    db.close()
    store = JobStore(path)
    assert [job_id for page in walk(store, 2) for job_id in page] == ids[::-1]
    assert [j.id for j in store.unfinished()] == [ids[0], ids[2]]


def test_event_pages_in_either_order(tmp_path):
    store = JobStore(tmp_path / "jobs.db")
    job_id = store.create(REQUEST, "trl", "sft").id
    for step in range(1, 7):
        store.append(job_id, progress=jobs_pb2.Progress(step=step))
    for newest_first, expected in ((False, list(range(1, 8))), (True, list(range(7, 0, -1)))):
        token, seen = "", []
        for _ in range(10):
            events, more = store.event_page(job_id, 3, pages.event_cursor(token, job_id, newest_first), newest_first)
            seen.append([e.sequence for e in events])
            token = pages.event_token(job_id, events[-1].sequence, newest_first) if more else ""
            if not token:
                break
        assert [len(page) for page in seen] == [3, 3, 1] and sum(seen, []) == expected


def test_a_token_of_another_listing_is_invalid_naming_page_token():
    events = pages.event_token("job-1", 4, newest_first=True)
    for token, read in (("nonsense", pages.job_cursor), (events, pages.job_cursor),
                        (pages.job_token(pages.JobCursor(1, "job-1")), lambda t: pages.event_cursor(t, "job-1", True)),
                        (events, lambda t: pages.event_cursor(t, "job-2", True)),
                        (events, lambda t: pages.event_cursor(t, "job-1", False))):
        with pytest.raises(InvalidArgument) as caught:
            read(token)
        assert caught.value.field == "page_token"
    assert pages.event_cursor(events, "job-1", True) == 4
    assert pages.page_size(0) == pages.DEFAULT_PAGE_SIZE and pages.page_size(10**6) == pages.MAX_PAGE_SIZE


class Endpoint:
    def __init__(self, key: str):
        self.key = key


def test_the_owner_caches_stay_bounded_and_forget_the_least_recently_used():
    owners = Owners(limit=3)
    a, b = Endpoint("a"), Endpoint("b")
    for n in range(5):
        owners.jobs.remember(f"job-{n}", "a")
    assert len(owners.jobs) == 3 and owners.jobs.get("job-0") is None
    owners.jobs.get("job-2")  # used: job-3 is now the least recently used
    owners.jobs.remember("job-9", "b")
    assert owners.jobs.get("job-3") is None and owners.jobs.get("job-2") == "a"
    assert [e.key for e in owners.jobs.ordered("job-9", [a, b])] == ["b", "a"]
    cache = OwnerCache(limit=1)
    cache.remember("x", "a")
    cache.remember("y", "b")
    assert len(cache) == 1 and cache.get("y") == "b"
