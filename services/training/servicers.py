"""Thin gRPC adapters of a trainer service: BackendService (Capabilities, Train, CreateJob), JobService,
DatasetService, and ModelService's store work (DeleteModel, ExportModel, DownloadModel, EvaluateModel)."""

from __future__ import annotations

import asyncio
import json
import platform

from google.protobuf import json_format

from forgeway import __version__
from forgeway.core import pages
from forgeway.core.enums import EXPORT_FORMAT, METHOD, QUANTIZATION
from forgeway.core.capabilities import model_to_proto
from forgeway.core.errors import InvalidArgument, Unimplemented
from forgeway.core.generation import Task
from forgeway.core.models import ModelInfo
from forgeway.server.hardware import hardware_to_proto
from forgeway.v1 import (
    backend_pb2_grpc,
    capabilities_pb2,
    datasets_pb2,
    datasets_pb2_grpc,
    jobs_pb2,
    jobs_pb2_grpc,
    models_pb2,
    models_pb2_grpc,
    train_pb2,
)

from .engine import TrainingEngine
from .download import chunks, download_folder, manifest
from .runner import JobRunner
from .spec import DatasetSpec
from .store import delete_model, export_gguf_model, export_options, gguf_writer

# The gateway's notice that it fell back to this trainer (JSON Fallback), recorded in the job's history.
FALLBACK_METADATA = "x-forgeway-fallback"
RPCS = [
    "forgeway.v1.BackendService/Capabilities",
    "forgeway.v1.BackendService/Train",
    "forgeway.v1.BackendService/CreateJob",
    *(f"forgeway.v1.JobService/{m}" for m in ("GetJob", "ListJobs", "ListJobEvents", "WatchJob", "CancelJob")),
    *(f"forgeway.v1.DatasetService/{m}" for m in ("UploadDataset", "GetDataset", "ListDatasets")),
    "forgeway.v1.ModelService/DeleteModel",
    "forgeway.v1.ModelService/DownloadModel",
]
EXPORT_RPC = "forgeway.v1.ModelService/ExportModel"  # served where the GGUF writer (gguf, numpy) is installed
EVALUATE_RPC = "forgeway.v1.ModelService/EvaluateModel"  # served by engines with evaluate() (trl)
MAX_NEW_TOKENS = 4096


def trainer_rpcs(engine: TrainingEngine | None = None) -> list[str]:
    """The RPCs this trainer serves: ExportModel only where it can write GGUF, EvaluateModel where its engine
    evaluates."""
    evaluates = callable(getattr(engine, "evaluate", None))
    return RPCS + ([EXPORT_RPC] if gguf_writer() else []) + ([EVALUATE_RPC] if evaluates else [])


class TrainerBackendServicer(backend_pb2_grpc.BackendServiceServicer):
    def __init__(self, engine: TrainingEngine, runner: JobRunner):
        self.engine, self.runner = engine, runner

    async def Capabilities(self, request, context):
        available, reason = self.engine.availability()
        features = self.engine.features()
        load = capabilities_pb2.Load(in_flight=1 if self.runner.running else 0, queue_depth=len(self.runner.queue),
                                     max_concurrency=1, max_queue=self.engine.settings.max_queued_jobs)
        return capabilities_pb2.CapabilitiesResponse(
            backend=self.engine.kind,
            version=__version__,
            instance_id=self.engine.settings.instance_id,
            availability=capabilities_pb2.Availability(
                available=available and self.engine.ready,
                reason=reason if not available or self.engine.ready else (self.engine.failure or "starting")),
            rpcs=trainer_rpcs(self.engine),
            training=capabilities_pb2.TrainingFeatures(
                methods=[METHOD.to_value[m] for m in features.methods],
                tasks=[t.to_proto() for t in features.tasks],
                lora=features.lora,
                quantizations=[QUANTIZATION.to_value[q] for q in features.quantizations],
                export_formats=[EXPORT_FORMAT.to_value[f] for f in features.export_formats],
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
        job = await self.runner.create(request, _gateway_notice(context))
        async for event in self.runner.watch(job.id):
            yield train_pb2.TrainResponse(event=event)

    async def CreateJob(self, request, context):
        if request.validate_only:
            _, _, advice = await self.runner.check(request.train, _gateway_notice(context))
            return train_pb2.CreateJobResponse(advice=[f"{field}: {text}" for field, text in advice])
        return train_pb2.CreateJobResponse(job=await self.runner.create(request.train, _gateway_notice(context)))


class JobServicer(jobs_pb2_grpc.JobServiceServicer):
    def __init__(self, runner: JobRunner):
        self.runner = runner

    async def GetJob(self, request, context):
        return jobs_pb2.GetJobResponse(job=self.runner.jobs.get(_job_id(request.job_id)))

    async def ListJobs(self, request, context):
        jobs, more = self.runner.jobs.list(request.state, pages.page_size(request.page_size),
                                           pages.job_cursor(request.page_token))
        return jobs_pb2.ListJobsResponse(jobs=jobs, next_page_token=pages.next_jobs_token(jobs, more))

    async def ListJobEvents(self, request, context):
        job_id, newest_first = _job_id(request.job_id), request.newest_first
        events, more = self.runner.jobs.event_page(job_id, pages.page_size(request.page_size),
                                                   pages.event_cursor(request.page_token, job_id, newest_first),
                                                   newest_first)
        return jobs_pb2.ListJobEventsResponse(
            events=events, next_page_token=pages.next_events_token(job_id, events, more, newest_first))

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


class StoreServicer(models_pb2_grpc.ModelServiceServicer):
    """ModelService's edits of the store this trainer writes; listing, loading and unloading are the inference
    services'. Whether a model is loaded somewhere is the gateway's check, before it forwards a delete."""

    def __init__(self, engine: TrainingEngine):
        self.engine = engine
        self._evaluating = asyncio.Lock()  # one evaluation at a time: each loads a model

    async def DeleteModel(self, request, context):
        await asyncio.to_thread(delete_model, self.engine.models, request.name)
        return models_pb2.DeleteModelResponse()

    async def ExportModel(self, request, context):
        if request.format != train_pb2.EXPORT_FORMAT_GGUF:
            raise InvalidArgument("format", f"{EXPORT_FORMAT.name(request.format) or 'unset'} cannot be exported "
                                            "from the store; allowed: gguf")
        writer = gguf_writer()
        if writer is None:
            raise Unimplemented(f"the {self.engine.kind} trainer cannot write GGUF here (the gguf package is missing)")
        outtype = export_options(dict(request.options))
        exported = await asyncio.to_thread(export_gguf_model, self.engine.models, request.name, request.output_name,
                                           outtype, writer)
        entry = exported.entry
        info = ModelInfo(name=entry.name, task=entry.task or Task.TEXT_GENERATION, quantization="gguf", loaded=False,
                         source=f"store:{entry.name}", chat=entry.chat, description=entry.description,
                         created=entry.created,
                         base_model=str(entry.metadata.get("base_model_requested") or ""), provider=entry.provider,
                         trained_by=entry.trained_by)
        return models_pb2.ExportModelResponse(model=model_to_proto(info, self.engine.kind), path=str(entry.path),
                                              size_bytes=exported.size_bytes)


    async def DownloadModel(self, request, context):
        folder = await asyncio.to_thread(download_folder, self.engine.models, self.engine.settings.home, request)
        files = await asyncio.to_thread(manifest, folder)
        pieces = chunks(folder, files)
        while (chunk := await asyncio.to_thread(next, pieces, None)) is not None:
            yield chunk

    async def EvaluateModel(self, request, context):
        evaluate = getattr(self.engine, "evaluate", None)
        if not callable(evaluate):
            raise Unimplemented(f"the {self.engine.kind} trainer does not evaluate models")
        if not request.HasField("dataset"):
            raise InvalidArgument("dataset", "required")
        if request.max_new_tokens > MAX_NEW_TOKENS:
            raise InvalidArgument("max_new_tokens", f"at most {MAX_NEW_TOKENS}")
        errors: list[tuple[str, str]] = []
        dataset = DatasetSpec.from_proto(request.dataset, "dataset", errors)
        if errors:
            (where, why), *more = errors
            raise InvalidArgument(where, why, more=more)
        async with self._evaluating:
            result = await asyncio.to_thread(evaluate, request.name, dataset, request.generate_samples,
                                             request.max_new_tokens)
        return models_pb2.EvaluateModelResponse(metrics=result.metrics, examples=result.examples)


def _gateway_notice(context) -> jobs_pb2.Fallback | None:
    """The gateway's notice that it fell back to this trainer (metadata, JSON Fallback), if it sent one."""
    notice = dict(context.invocation_metadata() or ()).get(FALLBACK_METADATA)
    if not notice:
        return None
    try:
        return json_format.ParseDict(json.loads(notice), jobs_pb2.Fallback(), ignore_unknown_fields=True)
    except (ValueError, json_format.ParseError):
        raise InvalidArgument(FALLBACK_METADATA, "not a JSON Fallback") from None


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
        (models_pb2_grpc.add_ModelServiceServicer_to_server, StoreServicer(engine), "forgeway.v1.ModelService"),
    ]
