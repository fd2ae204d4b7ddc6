"""The asyncio SDK: AsyncClient over a grpc.aio channel, mirroring Client call for call."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from forgeway.v1 import (
    backend_pb2_grpc, capabilities_pb2, datasets_pb2, datasets_pb2_grpc, jobs_pb2, jobs_pb2_grpc, models_pb2,
    models_pb2_grpc, train_pb2,
)

from . import convert, types
from .aio_streams import AsyncGenerationStream, AsyncTrainingJob, _messages
from .client import page_request
from .connection import DEFAULT, Connection, Retry, Tls, call_timeout, remaining
from .downloads import DownloadWriter, download_request, evaluate_request
from .embeddings import EmbeddingResult, Inputs, RerankResult, embed_request, rerank_request
from .errors import InternalError, from_grpc
from .requests import (DatasetSource, MessageLike, export_request, generate_request, job_state, load_request,
                       train_request)
from .tool_runs import ToolChoices, ToolLoop, ToolRun, settle
from .uploads import Upload

T = TypeVar("T")


class AsyncClient:
    """Client's asyncio twin (same arguments, same results); use `async with AsyncClient(...) as client`."""

    def __init__(self, target: str | None = None, *, api_key: str | None = None, tls: Tls | bool | None = None,
                 timeout: float | None = 60.0, retry: Retry | int | None = None):
        self.connection = Connection.resolve(target, api_key, tls, timeout, retry)
        self._channel = self.connection.aio_channel()
        self._backend = backend_pb2_grpc.BackendServiceStub(self._channel)
        self.jobs = AsyncJobs(self)
        self.models = AsyncModels(self)
        self.datasets = AsyncDatasets(self)

    @property
    def target(self) -> str:
        return self.connection.target

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def _retrying(self, attempt: Callable[[float | None], Awaitable[T]], timeout: Any = DEFAULT) -> T:
        deadline = self.connection.deadline(call_timeout(self.connection, timeout))
        tries, waited = 0, 0.0
        while True:
            try:
                return await attempt(remaining(deadline))
            except grpc.RpcError as rpc_error:
                error = from_grpc(rpc_error)
                wait = self.connection.retry.delay(tries, error, deadline, waited)
                if wait is None:
                    raise error from None
                await asyncio.sleep(wait)
                tries, waited = tries + 1, waited + wait

    async def _unary(self, method, request, timeout: Any = DEFAULT):
        async def attempt(t: float | None):
            return await method(request, timeout=t, metadata=self.connection.metadata)

        return await self._retrying(attempt, timeout)

    async def _open(self, start: Callable[[float | None], Any], timeout: Any = None) -> tuple[Any, Any]:
        async def attempt(t: float | None):
            call = start(t)
            first = await call.read()
            return (None if first is grpc.aio.EOF else first), call

        return await self._retrying(attempt, timeout)

    async def capabilities(self, *, timeout: Any = DEFAULT) -> types.Capabilities:
        request = capabilities_pb2.CapabilitiesRequest()
        return convert.capabilities(await self._unary(self._backend.Capabilities, request, timeout))

    async def status(self, *, timeout: Any = DEFAULT) -> list[types.BackendStatus]:
        caps = await self.capabilities(timeout=timeout)
        if caps.backend == "gateway":
            return convert.backend_rows(caps)
        health = await self._unary(health_pb2_grpc.HealthStub(self._channel).Check, health_pb2.HealthCheckRequest(),
                                   timeout)
        return convert.backend_rows(caps, health_pb2.HealthCheckResponse.ServingStatus.Name(health.status), self.target)

    async def generate(self, model: str, prompt: str | None = None, *, timeout: Any = DEFAULT,
                       **options: Any) -> types.Generation:
        request = generate_request(model, prompt, **options)
        return convert.generation(await self._unary(self._backend.Generate, request, timeout))

    async def summarize(self, model: str, document: str, *, timeout: Any = DEFAULT,
                        **options: Any) -> types.Generation:
        """Client.summarize."""
        return await self.generate(model, document=document, timeout=timeout, **options)

    async def answer(self, model: str, context: str, question: str, *, timeout: Any = DEFAULT,
                     **options: Any) -> types.Generation:
        """Client.answer."""
        return await self.generate(model, context=context, question=question, timeout=timeout, **options)

    async def chat(self, model: str, messages: Iterable[MessageLike], *, timeout: Any = DEFAULT,
                   **options: Any) -> types.Generation:
        return await self.generate(model, messages=list(messages), timeout=timeout, **options)

    async def run_tools(self, model: str, messages: Iterable[MessageLike], functions: Iterable[Callable[..., Any]], *,
                        max_rounds: int = 5, tool_choice: ToolChoices = "auto", timeout: Any = DEFAULT,
                        **options: Any) -> ToolRun:
        """Client.run_tools; functions may be coroutine functions (awaited)."""
        loop = ToolLoop(messages, functions, max_rounds, tool_choice, options)
        while calls := loop.answered(generation := await self.generate(model, timeout=timeout, **loop.request())):
            for call in calls:
                loop.finish(call, await settle(loop.start(call)))
        return loop.done(generation)

    async def stream(self, model: str, prompt: str | None = None, *, timeout: Any = DEFAULT,
                     **options: Any) -> AsyncGenerationStream:
        request = generate_request(model, prompt, **options)
        first, call = await self._open(
            lambda t: self._backend.GenerateStream(request, timeout=t, metadata=self.connection.metadata),
            call_timeout(self.connection, timeout))
        return AsyncGenerationStream(call, first)

    async def embed(self, model: str, inputs: Inputs, *, dimensions: int | None = None,
                    normalize: bool | None = None, truncation: str | None = None, backend: str = "", user: str = "",
                    timeout: Any = DEFAULT) -> EmbeddingResult:
        request = embed_request(model, inputs, dimensions=dimensions, normalize=normalize, truncation=truncation,
                                backend=backend, user=user)
        return convert.embedding_result(await self._unary(self._backend.Embed, request, timeout))

    async def rerank(self, model: str, query: str, documents: Iterable[str], *, top_n: int | None = None,
                     return_documents: bool = False, truncation: str | None = None, backend: str = "",
                     timeout: Any = DEFAULT) -> RerankResult:
        request = rerank_request(model, query, documents, top_n=top_n, return_documents=return_documents,
                                 truncation=truncation, backend=backend)
        return convert.rerank_result(await self._unary(self._backend.Rerank, request, timeout))

    async def train(self, base_model: str, dataset: DatasetSource | str | Path | list[dict], *, method: str = "sft",
                    timeout: float | None = None, **options: Any) -> AsyncTrainingJob:
        request = train_request(base_model, dataset, method=method, **options)
        first, call = await self._open(
            lambda t: self._backend.Train(request, timeout=t, metadata=self.connection.metadata), timeout)
        if first is None:
            raise InternalError("the trainer ended the Train stream without creating a job")
        cursor = AsyncTrainingJob(self, first.event.job_id, call=call)
        cursor._head.append(first.event)
        return cursor

    def job(self, job_id: str, after: int = 0) -> AsyncTrainingJob:
        return AsyncTrainingJob(self, job_id, after=after)

    async def upload_dataset(self, source: str | Path | bytes, *, filename: str | None = None, format: str = "",
                             purpose: str = "fine-tune", timeout: Any = DEFAULT) -> types.Dataset:
        return await self.datasets.upload(source, filename=filename, format=format, purpose=purpose, timeout=timeout)


class AsyncJobs:
    def __init__(self, client: AsyncClient):
        self._client = client
        self._stub = jobs_pb2_grpc.JobServiceStub(client._channel)

    async def _watch_call_from(self, request: jobs_pb2.WatchJobRequest, timeout: float | None):
        metadata = self._client.connection.metadata
        return await self._client._open(lambda t: self._stub.WatchJob(request, timeout=t, metadata=metadata), timeout)

    async def create(self, base_model: str, dataset: DatasetSource | str | Path | list[dict], *, method: str = "sft",
                     timeout: Any = DEFAULT, **options: Any) -> types.Job:
        request = train_pb2.CreateJobRequest(train=train_request(base_model, dataset, method=method, **options))
        return convert.job((await self._client._unary(self._client._backend.CreateJob, request, timeout)).job)

    async def validate(self, base_model: str, dataset: DatasetSource | str | Path | list[dict], *,
                       method: str = "sft", timeout: Any = DEFAULT, **options: Any) -> list[str]:
        request = train_pb2.CreateJobRequest(train=train_request(base_model, dataset, method=method, **options),
                                             validate_only=True)
        return list((await self._client._unary(self._client._backend.CreateJob, request, timeout)).advice)

    async def list(self, state: str | None = None, limit: int = 0, *, page_size: int = 0,
                   timeout: Any = DEFAULT) -> list[types.Job]:
        jobs: list[types.Job] = []
        token = ""
        while True:
            request = page_request(jobs_pb2.ListJobsRequest(state=job_state(state)), token, page_size, limit, len(jobs))
            response = await self._client._unary(self._stub.ListJobs, request, timeout)
            jobs += [convert.job(j) for j in response.jobs]
            token = response.next_page_token
            if not token or (limit and len(jobs) >= limit):
                return jobs

    async def events(self, job_id: str, *, newest_first: bool = False, limit: int = 0, page_size: int = 0,
                     timeout: Any = DEFAULT) -> list[types.JobEvent]:
        events: list[types.JobEvent] = []
        token = ""
        while True:
            request = page_request(jobs_pb2.ListJobEventsRequest(job_id=job_id, newest_first=newest_first), token,
                                   page_size, limit, len(events))
            response = await self._client._unary(self._stub.ListJobEvents, request, timeout)
            events += [convert.job_event(e) for e in response.events]
            token = response.next_page_token
            if not token or (limit and len(events) >= limit):
                return events

    async def get(self, job_id: str, *, timeout: Any = DEFAULT) -> types.Job:
        response = await self._client._unary(self._stub.GetJob, jobs_pb2.GetJobRequest(job_id=job_id), timeout)
        return convert.job(response.job)

    async def cancel(self, job_id: str, *, timeout: Any = DEFAULT) -> types.Job:
        response = await self._client._unary(self._stub.CancelJob, jobs_pb2.CancelJobRequest(job_id=job_id), timeout)
        return convert.job(response.job)

    def watch(self, job_id: str, after: int = 0) -> AsyncIterator[types.JobEvent]:
        return self._client.job(job_id, after=after).events()


class AsyncModels:
    def __init__(self, client: AsyncClient):
        self._client = client
        self._stub = models_pb2_grpc.ModelServiceStub(client._channel)

    async def list(self, *, timeout: Any = DEFAULT) -> list[types.Model]:
        response = await self._client._unary(self._stub.ListModels, models_pb2.ListModelsRequest(), timeout)
        return [convert.model(m) for m in response.models]

    async def load(self, name: str, source: str = "", *, backend: str = "", task: str | None = None,
                   quantization: str | None = None, base_model: str = "", options: dict[str, Any] | None = None,
                   timeout: Any = DEFAULT) -> types.Model:
        request = load_request(name, source, backend, task, quantization, base_model, options)
        return convert.model((await self._client._unary(self._stub.LoadModel, request, timeout)).model)

    async def unload(self, name: str, *, timeout: Any = DEFAULT) -> None:
        await self._client._unary(self._stub.UnloadModel, models_pb2.UnloadModelRequest(name=name), timeout)

    async def delete(self, name: str, *, timeout: Any = DEFAULT) -> None:
        """Delete the model-store entry `name` (refused with FAILED_PRECONDITION while an endpoint serves it loaded)."""
        await self._client._unary(self._stub.DeleteModel, models_pb2.DeleteModelRequest(name=name), timeout)

    async def export(self, name: str, format: str = "gguf", *, output_name: str = "", outtype: str = "",
               timeout: Any = DEFAULT) -> types.ExportedModel:
        """Convert the store entry `name` into a new entry `output_name` (default NAME-gguf); `outtype` is the GGUF
        matrix type (f32, f16, q8_0; default f16)."""
        request = export_request(name, format, output_name, outtype)
        response = await self._client._unary(self._stub.ExportModel, request, timeout)
        return types.ExportedModel(convert.model(response.model), response.path, response.size_bytes)

    async def download(self, name: str, dest: str | Path, *, checkpoint: tuple[str, str] | None = None,
                       timeout: float | None = None) -> Path:
        """Client.models.download: the entry (or a job's checkpoint) into `dest`, every sha256 checked."""
        request = download_request(name, checkpoint)
        metadata = self._client.connection.metadata
        first, call = await self._client._open(
            lambda t: self._stub.DownloadModel(request, timeout=t, metadata=metadata), timeout)
        writer = await asyncio.to_thread(DownloadWriter, dest)
        try:
            try:
                if first is not None:
                    await asyncio.to_thread(writer.add, first)
                    async for chunk in _messages(call):
                        await asyncio.to_thread(writer.add, chunk)
            except grpc.RpcError as rpc_error:
                raise from_grpc(rpc_error) from None
            return await asyncio.to_thread(writer.finish)
        except BaseException:
            await asyncio.to_thread(writer.abort)
            raise

    async def evaluate(self, name: str, dataset: DatasetSource | str | Path | list[dict], *,
                       generate_samples: int = 0, max_new_tokens: int = 64,
                       timeout: float | None = None) -> dict[str, float]:
        """Client.models.evaluate: eval_loss, perplexity, eval_samples (and rouge/bleu with generate_samples)."""
        request = evaluate_request(name, dataset, generate_samples, max_new_tokens)
        response = await self._client._unary(self._stub.EvaluateModel, request, timeout)
        return {**response.metrics, "eval_samples": float(response.examples)}


class AsyncDatasets:
    def __init__(self, client: AsyncClient):
        self._client = client
        self._stub = datasets_pb2_grpc.DatasetServiceStub(client._channel)

    async def upload(self, source: str | Path | bytes, *, filename: str | None = None, format: str = "",
                     purpose: str = "fine-tune", timeout: Any = DEFAULT) -> types.Dataset:
        upload = Upload.of(source, filename, format, purpose)
        header = await asyncio.to_thread(upload.header)
        metadata = self._client.connection.metadata

        async def attempt(t: float | None):
            return await self._stub.UploadDataset(upload.parts(header), timeout=t, metadata=metadata)

        return convert.dataset((await self._client._retrying(attempt, timeout)).dataset)

    async def get(self, dataset_id: str, *, timeout: Any = DEFAULT) -> types.Dataset:
        request = datasets_pb2.GetDatasetRequest(dataset_id=dataset_id)
        return convert.dataset((await self._client._unary(self._stub.GetDataset, request, timeout)).dataset)

    async def list(self, *, timeout: Any = DEFAULT) -> list[types.Dataset]:
        response = await self._client._unary(self._stub.ListDatasets, datasets_pb2.ListDatasetsRequest(), timeout)
        return [convert.dataset(d) for d in response.datasets]
