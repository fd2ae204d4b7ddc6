"""Training through the gateway: auto picks Unsloth when it can train, else TRL with a fallback event; job and
dataset calls reach the trainer that owns the job or dataset.

The trainers here are small in-process JobService/DatasetService/Train servers speaking the contract (the real TRL
and Unsloth services are tested through the gateway in their own suites; they import torch, too slow here).
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import AsyncIterator

import grpc
import pytest

from forgeway import __version__
from forgeway.gateway.training import FALLBACK_METADATA
from forgeway.core.errors import NotFound
from forgeway.server.server import start_server
from forgeway.server.settings import ServiceSettings
from forgeway.testing import gateway_settings, start_gateway, stop_now
from forgeway.v1 import (
    backend_pb2_grpc, capabilities_pb2, datasets_pb2, datasets_pb2_grpc, jobs_pb2, jobs_pb2_grpc, train_pb2,
)

SFT = train_pb2.TRAINING_METHOD_SFT
IDS = itertools.count(1)


class LedgerTrainer(backend_pb2_grpc.BackendServiceServicer, jobs_pb2_grpc.JobServiceServicer,
                    datasets_pb2_grpc.DatasetServiceServicer):
    """A trainer that records jobs and datasets in memory and finishes each job at once."""

    def __init__(self, kind: str, available: bool = True):
        self.kind, self.available = kind, available
        self.settings = ServiceSettings(port=0, metrics_port=-1)
        self.ready, self.failure = False, ""
        self.jobs: dict[str, list[jobs_pb2.JobEvent]] = {}
        self.datasets: dict[str, datasets_pb2.Dataset] = {}
        self.fallback_metadata: list[str] = []

    async def start(self) -> None:
        if not self.available:
            raise RuntimeError(f"{self.kind} unavailable: no CUDA device")

    async def stop(self) -> None: ...

    def servicers(self):
        return [(backend_pb2_grpc.add_BackendServiceServicer_to_server, self, "forgeway.v1.BackendService"),
                (jobs_pb2_grpc.add_JobServiceServicer_to_server, self, "forgeway.v1.JobService"),
                (datasets_pb2_grpc.add_DatasetServiceServicer_to_server, self, "forgeway.v1.DatasetService")]

    async def Capabilities(self, request, context):
        rpcs = ["forgeway.v1.BackendService/Train",
                *(f"forgeway.v1.JobService/{m}" for m in ("GetJob", "ListJobs", "WatchJob", "CancelJob")),
                *(f"forgeway.v1.DatasetService/{m}" for m in ("UploadDataset", "GetDataset", "ListDatasets"))]
        return capabilities_pb2.CapabilitiesResponse(
            backend=self.kind, version=__version__, rpcs=rpcs,
            availability=capabilities_pb2.Availability(available=self.ready,
                                                       reason="ready" if self.ready else "no CUDA device"),
            training=capabilities_pb2.TrainingFeatures(methods=[SFT]))

    async def Train(self, request, context):
        self.fallback_metadata.append(dict(context.invocation_metadata()).get(FALLBACK_METADATA, ""))
        job_id = f"job-{self.kind}-{next(IDS)}"
        states = (jobs_pb2.JOB_STATE_QUEUED, jobs_pb2.JOB_STATE_RUNNING, jobs_pb2.JOB_STATE_SUCCEEDED)
        self.jobs[job_id] = [jobs_pb2.JobEvent(job_id=job_id, sequence=i, state=jobs_pb2.StateChange(state=s))
                             for i, s in enumerate(states, 1)]
        for event in self.jobs[job_id]:
            yield train_pb2.TrainResponse(event=event)

    def _events(self, job_id: str) -> list[jobs_pb2.JobEvent]:
        if job_id not in self.jobs:
            raise NotFound("job", job_id)
        return self.jobs[job_id]

    def _job(self, job_id: str) -> jobs_pb2.Job:
        events = self._events(job_id)
        return jobs_pb2.Job(id=job_id, backend=self.kind, state=events[-1].state.state, last_sequence=len(events))

    async def GetJob(self, request, context):
        return jobs_pb2.GetJobResponse(job=self._job(request.job_id))

    async def CancelJob(self, request, context):
        return jobs_pb2.CancelJobResponse(job=self._job(request.job_id))

    async def ListJobs(self, request, context):
        return jobs_pb2.ListJobsResponse(jobs=[self._job(j) for j in self.jobs])

    async def WatchJob(self, request, context):
        for event in self._events(request.job_id):
            if event.sequence > request.after_sequence:
                yield jobs_pb2.WatchJobResponse(event=event)

    async def UploadDataset(self, request_iterator, context):
        parts = [part async for part in request_iterator]
        data = b"".join(p.chunk for p in parts[1:])
        dataset = datasets_pb2.Dataset(id=f"ds-{self.kind}-{next(IDS)}", filename=parts[0].header.filename,
                                       size_bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
        self.datasets[dataset.id] = dataset
        return datasets_pb2.UploadDatasetResponse(dataset=dataset)

    async def GetDataset(self, request, context):
        if request.dataset_id not in self.datasets:
            raise NotFound("dataset", request.dataset_id)
        return datasets_pb2.GetDatasetResponse(dataset=self.datasets[request.dataset_id])

    async def ListDatasets(self, request, context):
        return datasets_pb2.ListDatasetsResponse(datasets=list(self.datasets.values()))


@pytest.fixture(scope="module")
async def trainers() -> AsyncIterator[dict]:
    ledgers = {"trl-1": LedgerTrainer("trl"), "trl-2": LedgerTrainer("trl"),
               "unsloth": LedgerTrainer("unsloth", available=False)}
    servers = {name: await start_server(ledger) for name, ledger in ledgers.items()}
    for server in servers.values():
        await server.startup
    gateway = await start_gateway(
        gateway_settings([{"name": n, "address": f"127.0.0.1:{s.port}"} for n, s in servers.items()]), endpoints=2)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}")
    yield {"ledgers": ledgers, "gateway": gateway, "backend": backend_pb2_grpc.BackendServiceStub(channel),
           "jobs": jobs_pb2_grpc.JobServiceStub(channel), "datasets": datasets_pb2_grpc.DatasetServiceStub(channel)}
    await channel.close()
    await stop_now(gateway)
    for server in servers.values():
        await stop_now(server)


def sft(**fields) -> train_pb2.TrainRequest:
    return train_pb2.TrainRequest(base_model="tiny", method=SFT, **fields)


async def test_auto_falls_back_to_trl_with_a_fallback_event(trainers):
    events = [m.event async for m in trainers["backend"].Train(sft(), timeout=10)]
    assert [e.WhichOneof("kind") for e in events] == ["state", "fallback", "state", "state"]
    fallback = events[1]
    assert fallback.job_id == events[0].job_id and events[0].job_id.startswith("job-trl-")
    assert fallback.fallback.requested == "unsloth" and fallback.fallback.used == "trl"
    assert "unsloth unavailable" in fallback.fallback.reason and "no CUDA device" in fallback.fallback.reason
    owner = next(t for t in trainers["ledgers"].values() if events[0].job_id in t.jobs)
    assert '"used": "trl"' in owner.fallback_metadata[-1], "the trainer is told, to record it durably"


async def test_unsloth_without_fallback_is_unavailable_naming_the_reason(trainers):
    request = sft(backend=train_pb2.TRAINING_BACKEND_UNSLOTH, allow_fallback=False)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for _ in trainers["backend"].Train(request, timeout=10):
            pass
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "no CUDA device" in caught.value.details() and "fallback to trl is disabled" in caught.value.details()


async def test_explicit_trl_has_no_fallback_event(trainers):
    request = sft(backend=train_pb2.TRAINING_BACKEND_TRL)
    events = [m.event async for m in trainers["backend"].Train(request, timeout=10)]
    assert [e.WhichOneof("kind") for e in events] == ["state", "state", "state"]


async def test_job_calls_reach_the_trainer_that_owns_the_job(trainers):
    ledgers = trainers["ledgers"]
    owned = {}
    for name in ("trl-1", "trl-2"):  # a job on each trainer, created directly (not through this gateway)
        async for message in ledgers[name].Train(sft(), _Context()):
            owned[name] = message.event.job_id
    for job_id in owned.values():
        job = (await trainers["jobs"].GetJob(jobs_pb2.GetJobRequest(job_id=job_id), timeout=10)).job
        assert job.id == job_id and job.state == jobs_pb2.JOB_STATE_SUCCEEDED
        watched = [m.event.sequence async for m in trainers["jobs"].WatchJob(
            jobs_pb2.WatchJobRequest(job_id=job_id, after_sequence=1), timeout=10)]
        assert watched == [2, 3]
    listed = {j.id for j in (await trainers["jobs"].ListJobs(jobs_pb2.ListJobsRequest(), timeout=10)).jobs}
    assert set(owned.values()) <= listed
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await trainers["jobs"].GetJob(jobs_pb2.GetJobRequest(job_id="job-nobody"), timeout=10)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_upload_then_train_on_the_dataset_owner(trainers):
    data = b'{"prompt": "a", "completion": "b"}\n'
    parts = [datasets_pb2.UploadDatasetRequest(header=datasets_pb2.DatasetHeader(filename="d.jsonl",
                                                                                 size_bytes=len(data))),
             datasets_pb2.UploadDatasetRequest(chunk=data)]
    dataset = (await trainers["datasets"].UploadDataset(iter(parts), timeout=10)).dataset
    assert dataset.size_bytes == len(data)
    owner = next(n for n, t in trainers["ledgers"].items() if dataset.id in t.datasets)
    fetched = await trainers["datasets"].GetDataset(datasets_pb2.GetDatasetRequest(dataset_id=dataset.id), timeout=10)
    assert fetched.dataset.id == dataset.id
    for _ in range(4):  # whichever trainer is less loaded, the one holding the dataset trains on it
        request = sft(backend=train_pb2.TRAINING_BACKEND_TRL,
                      dataset=train_pb2.DatasetSource(dataset_id=dataset.id))
        first = [m.event async for m in trainers["backend"].Train(request, timeout=10)][0]
        assert first.job_id in trainers["ledgers"][owner].jobs


class _Context:
    """The servicer context of a call made directly on a LedgerTrainer, outside gRPC."""

    def invocation_metadata(self):
        return ()

