"""Thin gRPC adapters of a trainer service: BackendService (Capabilities, Train), JobService, DatasetService."""

from __future__ import annotations

import asyncio
import json
import platform

from google.protobuf import json_format

from forgeway import __version__
from forgeway.services.runtime.capabilities import QUANTIZATION_TO_PROTO, hardware_to_proto
from forgeway.services.runtime.errors import InvalidArgument, Unavailable, Unimplemented
from forgeway.v1 import (
    backend_pb2_grpc,
    capabilities_pb2,
    datasets_pb2,
    datasets_pb2_grpc,
    jobs_pb2,
    jobs_pb2_grpc,
    train_pb2,
)

from .engine import TrainingEngine
from .runner import JobRunner
from .spec import EXPORTS, METHOD_BY_NAME, TrainSpec

# The gateway's notice that it fell back to this trainer (JSON Fallback), recorded in the job's history.
FALLBACK_METADATA = "x-forgeway-fallback"
RPCS = [
    "forgeway.v1.BackendService/Capabilities",
    "forgeway.v1.BackendService/Train",
    *(f"forgeway.v1.JobService/{m}" for m in ("GetJob", "ListJobs", "WatchJob", "CancelJob")),
    *(f"forgeway.v1.DatasetService/{m}" for m in ("UploadDataset", "GetDataset", "ListDatasets")),
]


class TrainerBackendServicer(backend_pb2_grpc.BackendServiceServicer):
    def __init__(self, engine: TrainingEngine, runner: JobRunner):
        self.engine, self.runner = engine, runner

    async def Capabilities(self, request, context):
        available, reason = self.engine.availability()
        features = self.engine.features()
        export_by_name = {v: k for k, v in EXPORTS.items()}
        load = capabilities_pb2.Load(in_flight=1 if self.runner.running else 0, queue_depth=len(self.runner.queue),
                                     max_concurrency=1, max_queue=self.engine.settings.max_queued_jobs)
        return capabilities_pb2.CapabilitiesResponse(
            backend=self.engine.kind,
            version=__version__,
            instance_id=self.engine.settings.instance_id,
            availability=capabilities_pb2.Availability(
                available=available and self.engine.ready,
                reason=reason if not available or self.engine.ready else (self.engine.failure or "starting")),
            rpcs=RPCS,
            training=capabilities_pb2.TrainingFeatures(
                methods=[METHOD_BY_NAME[m] for m in features.methods],
                tasks=[t.to_proto() for t in features.tasks],
                lora=features.lora,
                quantizations=[QUANTIZATION_TO_PROTO[q] for q in features.quantizations],
                export_formats=[export_by_name[f] for f in features.export_formats],
            ),
            hardware=hardware_to_proto(self.engine.hardware()),
            load=load,
            library_versions={"python": platform.python_version(), "forgeway": __version__,
                              **self.engine.library_versions()},
        )

    async def Generate(self, request, context):
        raise Unimplemented(f"the {self.engine.kind} trainer does not generate; its models are served by hf or llamacpp")

    async def GenerateStream(self, request, context):
        raise Unimplemented(f"the {self.engine.kind} trainer does not generate; its models are served by hf or llamacpp")
        yield

    async def Train(self, request, context):
        spec = TrainSpec.from_proto(request)
        available, reason = self.engine.availability()
        if not available or not self.engine.ready:
            raise Unavailable(f"{self.engine.kind} cannot train here: {reason or self.engine.failure}", retry_after=30)
        fallback = _fallback(context, spec, self.engine.kind)
        await asyncio.to_thread(self.engine.validate, spec)
        job = self.runner.submit(request, spec, fallback)
        async for event in self.runner.watch(job.id):
            yield train_pb2.TrainResponse(event=event)


class JobServicer(jobs_pb2_grpc.JobServiceServicer):
    def __init__(self, runner: JobRunner):
        self.runner = runner

    async def GetJob(self, request, context):
        return jobs_pb2.GetJobResponse(job=self.runner.jobs.get(_job_id(request.job_id)))

    async def ListJobs(self, request, context):
        return jobs_pb2.ListJobsResponse(jobs=self.runner.jobs.list(request.state, request.limit))

    async def WatchJob(self, request, context):
        self.runner.jobs.get(_job_id(request.job_id))
        async for event in self.runner.watch(request.job_id, request.after_sequence):
            yield jobs_pb2.WatchJobResponse(event=event)

    async def CancelJob(self, request, context):
        return jobs_pb2.CancelJobResponse(job=self.runner.cancel(_job_id(request.job_id)))


class DatasetServicer(datasets_pb2_grpc.DatasetServiceServicer):
    def __init__(self, engine: TrainingEngine):
        self.engine = engine

    async def UploadDataset(self, request_iterator, context):
        return datasets_pb2.UploadDatasetResponse(dataset=await self.engine.datasets.upload(request_iterator))

    async def GetDataset(self, request, context):
        if not request.dataset_id:
            raise InvalidArgument("dataset_id", "required")
        return datasets_pb2.GetDatasetResponse(dataset=self.engine.datasets.get(request.dataset_id))

    async def ListDatasets(self, request, context):
        return datasets_pb2.ListDatasetsResponse(datasets=self.engine.datasets.list())


def _fallback(context, spec: TrainSpec, kind: str) -> jobs_pb2.Fallback | None:
    """The fallback to record in the job: the gateway's notice (metadata), or a request for another trainer that
    reached this one directly (refused when the request disallows fallback)."""
    notice = dict(context.invocation_metadata() or ()).get(FALLBACK_METADATA)
    if notice:
        try:
            return json_format.ParseDict(json.loads(notice), jobs_pb2.Fallback(), ignore_unknown_fields=True)
        except (ValueError, json_format.ParseError):
            raise InvalidArgument(FALLBACK_METADATA, "not a JSON Fallback") from None
    if spec.backend in ("auto", kind):
        return None
    if not spec.allow_fallback:
        raise InvalidArgument("backend", f"this is the {kind} trainer; {spec.backend} was asked for with "
                              "allow_fallback false")
    return jobs_pb2.Fallback(requested=spec.backend, used=kind, reason=f"the request reached the {kind} trainer")


def _job_id(job_id: str) -> str:
    if not job_id:
        raise InvalidArgument("job_id", "required")
    return job_id



def trainer_servicers(engine: TrainingEngine, runner: JobRunner) -> list[tuple[object, object, str]]:
    """(add_to_server function, servicer, full service name) for a trainer."""
    return [
        (backend_pb2_grpc.add_BackendServiceServicer_to_server, TrainerBackendServicer(engine, runner),
         "forgeway.v1.BackendService"),
        (jobs_pb2_grpc.add_JobServiceServicer_to_server, JobServicer(runner), "forgeway.v1.JobService"),
        (datasets_pb2_grpc.add_DatasetServiceServicer_to_server, DatasetServicer(engine), "forgeway.v1.DatasetService"),
    ]
