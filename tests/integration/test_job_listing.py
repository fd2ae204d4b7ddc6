"""CreateJob (unary) and the paged job listings over real gRPC: on a real TRL trainer, and through a real gateway
that merges two trainers' pages."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import grpc
import pytest
from trl_harness import TEXT, Trainer, assert_succeeded, request, tiny, trl_service

from forgeway.client.aio import AsyncClient
from forgeway.client.client import Client
from forgeway.testing import gateway_settings, start_gateway, stop_now
from forgeway.v1 import backend_pb2_grpc, jobs_pb2, jobs_pb2_grpc, train_pb2

pytestmark = [pytest.mark.trl, pytest.mark.slow]


def create(train: train_pb2.TrainRequest) -> train_pb2.CreateJobRequest:
    return train_pb2.CreateJobRequest(train=train)


async def all_pages(jobs: jobs_pb2_grpc.JobServiceStub, page_size: int) -> list[list[jobs_pb2.Job]]:
    """ListJobs page after page, by next_page_token, until a page says it is the last."""
    listed, token = [], ""
    for _ in range(20):  # a listing that never ends fails here instead of hanging
        page = await jobs.ListJobs(jobs_pb2.ListJobsRequest(page_size=page_size, page_token=token), timeout=30)
        listed.append(list(page.jobs))
        token = page.next_page_token
        if not token:
            return listed
    raise AssertionError(f"no last page after {len(listed)} pages")


async def event_pages(jobs: jobs_pb2_grpc.JobServiceStub, job_id: str, page_size: int,
                      newest_first: bool) -> list[list[int]]:
    listed, token = [], ""
    for _ in range(50):
        page = await jobs.ListJobEvents(jobs_pb2.ListJobEventsRequest(
            job_id=job_id, page_size=page_size, page_token=token, newest_first=newest_first), timeout=30)
        listed.append([e.sequence for e in page.events])
        token = page.next_page_token
        if not token:
            return listed
    raise AssertionError(f"no last page after {len(listed)} pages")


def newest_first(jobs: list[jobs_pb2.Job]) -> list[str]:
    return [j.id for j in sorted(jobs, key=lambda j: (j.created.ToNanoseconds(), j.id), reverse=True)]


async def test_create_job_answers_the_queued_record_at_once_and_the_job_runs(tmp_path):
    async with trl_service(tmp_path) as trainer:
        train = request(steps=1, output=train_pb2.TrainOutput(model_name="cats-1", suffix="cats"))
        train.hyperparameters.seed = 7
        job = (await trainer.backend.CreateJob(create(train), timeout=60)).job
        assert job.id.startswith("job-") and job.state == jobs_pb2.JOB_STATE_QUEUED
        assert (job.backend, job.method, job.dataset, job.suffix, job.seed) == ("trl", "sft", "inline", "cats", 7)
        events = await trainer.wait(job.id)
        assert events[0].state.state == jobs_pb2.JOB_STATE_QUEUED and events[0].sequence == 1
        assert assert_succeeded(events).model_name == "cats-1"
        done = (await trainer.jobs.GetJob(jobs_pb2.GetJobRequest(job_id=job.id))).job
        assert (done.id, done.created, done.suffix) == (job.id, job.created, "cats")

        with pytest.raises(grpc.aio.AioRpcError) as caught:  # validated before a job exists, as Train does
            await trainer.backend.CreateJob(create(train_pb2.TrainRequest(method=train_pb2.TRAINING_METHOD_SFT)))
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "base_model" in caught.value.details()
        listed = (await trainer.jobs.ListJobs(jobs_pb2.ListJobsRequest())).jobs
        assert [j.id for j in listed] == [job.id]


async def test_jobs_and_events_page_over_more_than_one_page(tmp_path):
    async with trl_service(tmp_path) as trainer:
        ids = [(await trainer.backend.CreateJob(create(request(steps=1)), timeout=60)).job.id for _ in range(5)]
        for job_id in ids:
            await trainer.wait(job_id)
        listed = await all_pages(trainer.jobs, page_size=2)
        assert [len(page) for page in listed] == [2, 2, 1]
        assert [j.id for page in listed for j in page] == ids[::-1]
        assert all(j.state == jobs_pb2.JOB_STATE_SUCCEEDED for page in listed for j in page)

        history = [e.sequence for e in await trainer.wait(ids[0])]
        assert len(history) > 4
        oldest_first = await event_pages(trainer.jobs, ids[0], 4, newest_first=False)
        assert sum(oldest_first, []) == history and all(len(page) == 4 for page in oldest_first[:-1])
        assert sum(await event_pages(trainer.jobs, ids[0], 3, newest_first=True), []) == history[::-1]

        page = await trainer.jobs.ListJobEvents(jobs_pb2.ListJobEventsRequest(job_id=ids[0], page_size=2))
        with pytest.raises(grpc.aio.AioRpcError) as caught:  # a token is good for its own job and order only
            await trainer.jobs.ListJobEvents(jobs_pb2.ListJobEventsRequest(job_id=ids[1],
                                                                           page_token=page.next_page_token))
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "page_token" in caught.value.details()
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await trainer.jobs.ListJobEvents(jobs_pb2.ListJobEventsRequest(job_id="job-nowhere"))
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.fixture
async def two_trainers(tmp_path) -> AsyncIterator[tuple[list[Trainer], dict]]:
    """Two real TRL trainers (homes of their own) behind a real gateway."""
    async with AsyncExitStack() as stack:
        trainers = [await stack.enter_async_context(trl_service(tmp_path / name)) for name in ("one", "two")]
        gateway = await start_gateway(gateway_settings([t.address for t in trainers]))
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}")
        yield trainers, {"backend": backend_pb2_grpc.BackendServiceStub(channel),
                         "jobs": jobs_pb2_grpc.JobServiceStub(channel)}
        await channel.close()
        await stop_now(gateway)


async def test_the_gateway_creates_jobs_and_pages_over_every_trainers_jobs(two_trainers):
    trainers, gateway = two_trainers
    trl = request(steps=1, backend=train_pb2.TRAINING_BACKEND_TRL)
    via_gateway = (await gateway["backend"].CreateJob(create(trl), timeout=60)).job
    assert via_gateway.state == jobs_pb2.JOB_STATE_QUEUED and via_gateway.backend == "trl"
    holders = [t for t in trainers
               if via_gateway.id in [j.id for j in (await t.jobs.ListJobs(jobs_pb2.ListJobsRequest())).jobs]]
    assert len(holders) == 1
    events = await holders[0].wait(via_gateway.id)
    assert_succeeded(events)
    created = [via_gateway]
    for trainer in trainers:  # each trainer holds jobs of its own
        for _ in range(3):  # one at a time: both trainers share this process, and trainings running side by side in
            # one process would share accelerate's process-wide state (a deployed trainer is a process of its own)
            created.append((await trainer.backend.CreateJob(create(request(steps=1)), timeout=60)).job)
            assert_succeeded(await trainer.wait(created[-1].id))

    listed = await all_pages(gateway["jobs"], page_size=3)
    assert [len(page) for page in listed] == [3, 3, 1]
    assert [j.id for page in listed for j in page] == newest_first(created)

    page = await gateway["jobs"].ListJobEvents(jobs_pb2.ListJobEventsRequest(job_id=via_gateway.id, page_size=1000))
    assert list(page.events) == events
    assert not page.next_page_token
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await gateway["jobs"].ListJobs(jobs_pb2.ListJobsRequest(page_token="not-a-token"))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_the_sdk_creates_jobs_and_reads_every_page(tmp_path):
    async with trl_service(tmp_path) as trainer, AsyncClient(trainer.address, retry=0) as client:
        options = {"max_steps": 1, "batch_size": 2, "max_seq_length": 32, "lora": True}
        created = [await client.jobs.create(str(tiny("llama")), TEXT, **options) for _ in range(3)]
        assert all(job.state == "queued" for job in created)
        histories = [await trainer.wait(job.id) for job in created]
        newest = [job.id for job in created][::-1]
        assert [j.id for j in await client.jobs.list(page_size=2)] == newest
        assert [j.id for j in await client.jobs.list(limit=2, page_size=1)] == newest[:2]
        events = await client.jobs.events(created[0].id, page_size=2)
        assert [e.sequence for e in events] == [e.sequence for e in histories[0]]
        latest = await client.jobs.events(created[0].id, newest_first=True, limit=3, page_size=2)
        assert [e.sequence for e in latest] == [e.sequence for e in histories[0]][::-1][:3]

        def sync_listing() -> tuple[list[str], list[int]]:  # the synchronous SDK, off this event loop
            with Client(trainer.address, retry=0) as sync:
                return ([j.id for j in sync.jobs.list(page_size=2)],
                        [e.sequence for e in sync.jobs.events(created[1].id, newest_first=True, page_size=3)])

        ids, sequences = await asyncio.to_thread(sync_listing)
        assert ids == newest and sequences == [e.sequence for e in histories[1]][::-1]
