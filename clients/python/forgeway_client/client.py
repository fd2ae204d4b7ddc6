"""The synchronous SDK: Client over a gRPC channel, with jobs, models and datasets namespaces."""

from __future__ import annotations

import asyncio
import inspect
import itertools
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from forgeway.v1 import (
    backend_pb2_grpc, capabilities_pb2, datasets_pb2, datasets_pb2_grpc, jobs_pb2, jobs_pb2_grpc, models_pb2,
    models_pb2_grpc, train_pb2,
)

from . import convert, types
from .connection import DEFAULT, Connection, Retry, Tls, call_timeout, remaining
from .downloads import DownloadWriter, download_request, evaluate_request
from .embeddings import EmbeddingResult, Inputs, RerankResult, embed_request, rerank_request
from .errors import APIError, InternalError, from_grpc
from .plugins import Plugins
from .requests import (DatasetSource, MessageLike, export_request, generate_request, job_state, load_request,
                       train_request)
from .streams import GenerationStream, TrainingJob
from .tool_runs import ToolChoices, ToolLoop, ToolRun, settle
from .uploads import Upload

T = TypeVar("T")


class Client:
    """A Forgeway endpoint (usually the gateway) over one gRPC channel.

    Args:
        target: host:port; default FORGEWAY_TARGET, then localhost:50051.
        api_key: sent as `authorization: Bearer <key>`; default FORGEWAY_API_KEY.
        tls: True for TLS with the system roots, or a Tls with roots / client certificate.
        timeout: default deadline in seconds of every call but train and job watching (None: no deadline).
        retry: a Retry policy, or the number of retries on UNAVAILABLE (0 disables them).
    """

    def __init__(self, target: str | None = None, *, api_key: str | None = None, tls: Tls | bool | None = None,
                 timeout: float | None = 60.0, retry: Retry | int | None = None):
        self.connection = Connection.resolve(target, api_key, tls, timeout, retry)
        self._channel = self.connection.channel()
        self._backend = backend_pb2_grpc.BackendServiceStub(self._channel)
        self.jobs = Jobs(self)
        self.models = Models(self)
        self.datasets = Datasets(self)
        self.plugins = Plugins(self)

    @property
    def target(self) -> str:
        return self.connection.target

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- calls with retries -------------------------------------------------------------------------------------

    def _retrying(self, attempt: Callable[[float | None], T], timeout: Any = DEFAULT) -> T:
        """Run attempt(remaining seconds) until it returns, retrying UNAVAILABLE with backoff inside the deadline."""
        deadline = self.connection.deadline(call_timeout(self.connection, timeout))
        tries, waited = 0, 0.0
        while True:
            try:
                return attempt(remaining(deadline))
            except grpc.RpcError as rpc_error:
                error = from_grpc(rpc_error)
                wait = self.connection.retry.delay(tries, error, deadline, waited)
                if wait is None:
                    raise error from None
                time.sleep(wait)
                tries, waited = tries + 1, waited + wait

    def _unary(self, method, request, timeout: Any = DEFAULT):
        return self._retrying(lambda t: method(request, timeout=t, metadata=self.connection.metadata), timeout)

    def _open(self, start: Callable[[float | None], Any], timeout: Any = None) -> tuple[Any, Any]:
        """Start a server stream and read its first message (retried like a unary call); (first or None, call)."""
        def attempt(t: float | None):
            call = start(t)
            return next(call, None), call

        return self._retrying(attempt, timeout)

    # -- BackendService ----------------------------------------------------------------------------------------

    def capabilities(self, *, timeout: Any = DEFAULT) -> types.Capabilities:
        """What the endpoint can do now (for the gateway: every backend behind it in `endpoints`)."""
        return convert.capabilities(self._unary(self._backend.Capabilities, capabilities_pb2.CapabilitiesRequest(),
                                                timeout))

    def status(self, *, timeout: Any = DEFAULT) -> list[types.BackendStatus]:
        """One row per backend: available, health, breaker, load, models and training methods."""
        caps = self.capabilities(timeout=timeout)
        if caps.backend == "gateway":
            return convert.backend_rows(caps)
        check = health_pb2_grpc.HealthStub(self._channel).Check
        health = self._unary(check, health_pb2.HealthCheckRequest(), timeout)
        return convert.backend_rows(caps, health_pb2.HealthCheckResponse.ServingStatus.Name(health.status), self.target)

    def generate(self, model: str, prompt: str | None = None, *, timeout: Any = DEFAULT,
                 **options: Any) -> types.Generation:
        """One generation, answered when complete. Options: messages, document, context/question, task, n,
        max_tokens, temperature, top_p, top_k, min_p, repetition/presence/frequency_penalty, seed, stop,
        json_schema, json_object, grammar, logprobs, top_logprobs, adapter, backend, priority, tools (OpenAI tool
        dicts or Python functions), tool_choice ("none", "auto", "required" or a function's name),
        parallel_tool_calls, thinking. Choices carry tool_calls (finish_reason "tool_calls") and reasoning."""
        request = generate_request(model, prompt, **options)
        return convert.generation(self._unary(self._backend.Generate, request, timeout))

    def summarize(self, model: str, document: str, *, timeout: Any = DEFAULT, **options: Any) -> types.Generation:
        """A summary of `document` from a summarization (sequence-to-sequence) model; `.text` is the summary.
        Options as generate's (max_tokens, n, sampling, adapter, ...)."""
        return self.generate(model, document=document, timeout=timeout, **options)

    def answer(self, model: str, context: str, question: str, *, timeout: Any = DEFAULT,
               **options: Any) -> types.Generation:
        """The span of `context` that answers `question`, from an extractive-QA model: `.text` is the answer,
        `.answer_span` its character offsets in the context (start, end) and score."""
        return self.generate(model, context=context, question=question, timeout=timeout, **options)

    def chat(self, model: str, messages: Iterable[MessageLike], *, timeout: Any = DEFAULT,
             **options: Any) -> types.Generation:
        """One assistant reply to chat messages ({"role", "content"} mappings, with tool_calls or tool_call_id where
        they apply, or (role, content) pairs); append `result.message` to continue the chat."""
        return self.generate(model, messages=list(messages), timeout=timeout, **options)

    def run_tools(self, model: str, messages: Iterable[MessageLike], functions: Iterable[Callable[..., Any]], *,
                  max_rounds: int = 5, tool_choice: ToolChoices = "auto", timeout: Any = DEFAULT,
                  **options: Any) -> ToolRun:
        """Chat with `functions` as tools until the model answers: each call it makes runs here with its arguments
        and the result (or the error the function raised) goes back as a tool message. tool_choice applies to every
        model call, or call by call when a sequence (the last repeats); after max_rounds rounds of tool calls the
        model answers with tool_choice "none". Returns the final generation and the whole transcript."""
        loop = ToolLoop(messages, functions, max_rounds, tool_choice, options)
        while calls := loop.answered(generation := self.generate(model, timeout=timeout, **loop.request())):
            for call in calls:
                outcome = loop.start(call)
                loop.finish(call, asyncio.run(settle(outcome)) if inspect.isawaitable(outcome) else outcome)
        return loop.done(generation)

    def stream(self, model: str, prompt: str | None = None, *, timeout: Any = DEFAULT,
               **options: Any) -> GenerationStream:
        """Start a generation and iterate its deltas; `.final` holds the finished Generation afterwards. Errors
        before the first token (unknown model, bad field) raise here."""
        request = generate_request(model, prompt, **options)
        first, call = self._open(
            lambda t: self._backend.GenerateStream(request, timeout=t, metadata=self.connection.metadata),
            call_timeout(self.connection, timeout))
        return GenerationStream(call, first)

    def embed(self, model: str, inputs: Inputs, *, dimensions: int | None = None, normalize: bool | None = None,
              truncation: str | None = None, backend: str = "", user: str = "",
              timeout: Any = DEFAULT) -> EmbeddingResult:
        """Vectors of a text, a list of texts or of token-id lists, in input order. dimensions cuts them to a length
        the model declares (Model.matryoshka_dimensions); normalize None takes the model's own setting; truncation
        "end" or "start" cuts inputs over the model's length (None: they are refused, naming input[i])."""
        request = embed_request(model, inputs, dimensions=dimensions, normalize=normalize, truncation=truncation,
                                backend=backend, user=user)
        return convert.embedding_result(self._unary(self._backend.Embed, request, timeout))

    def rerank(self, model: str, query: str, documents: Iterable[str], *, top_n: int | None = None,
               return_documents: bool = False, truncation: str | None = None, backend: str = "",
               timeout: Any = DEFAULT) -> RerankResult:
        """The documents scored against the query, most relevant first: all, or the best top_n; each with its text
        when return_documents."""
        request = rerank_request(model, query, documents, top_n=top_n, return_documents=return_documents,
                                 truncation=truncation, backend=backend)
        return convert.rerank_result(self._unary(self._backend.Rerank, request, timeout))

    def train(self, base_model: str, dataset: DatasetSource | str | Path | list[dict], *, method: str = "sft",
              timeout: float | None = None, **options: Any) -> TrainingJob:
        """Create a training job and return its handle once the trainer has accepted it (state queued).

        Options are the TrainRequest's, by name: task, eval_dataset, column_mapping, split, percent, max_samples,
        epochs, max_steps, batch_size, gradient_accumulation_steps, learning_rate, lr_scheduler, warmup_ratio,
        max_seq_length, seed, precision, save_steps, lora (True, a dict or LoRA), quantization ("nf4", "fp4",
        "int8"), double_quant, beta, loss_type, num_generations, max_prompt_length, max_completion_length,
        reward_functions (names, "name:weight" or (name, weight)), reward_model, output_name, export
        (["adapter", "merged", "gguf"]), backend ("auto", "trl", "unsloth"), allow_fallback, description (listed with
        the model).
        """
        request = train_request(base_model, dataset, method=method, **options)
        first, call = self._open(lambda t: self._backend.Train(request, timeout=t, metadata=self.connection.metadata),
                                 timeout)
        if first is None:
            raise InternalError("the trainer ended the Train stream without creating a job")
        event = convert.job_event(first.event)
        return TrainingJob(self, event.job_id, call=call, head=[event])

    def job(self, job_id: str, after: int = 0) -> TrainingJob:
        """A handle on an existing job (re-attach): its events come from WatchJob after sequence `after`."""
        return TrainingJob(self, job_id, after=after)

    def upload_dataset(self, source: str | Path | bytes, *, filename: str | None = None, format: str = "",
                       purpose: str = "fine-tune", timeout: Any = DEFAULT) -> types.Dataset:
        """Upload a jsonl/json/csv/parquet file (a local path, or bytes with a filename); checksummed."""
        return self.datasets.upload(source, filename=filename, format=format, purpose=purpose, timeout=timeout)


def page_request(request: T, token: str, page_size: int, limit: int, have: int) -> T:
    """The next page's request of a listing that wants `limit` items (0: all) and has `have` of them."""
    request.page_token = token
    request.page_size = min(page_size or 100, limit - have) if limit else page_size
    return request


class Jobs:
    """JobService: create, list, read, watch and cancel training jobs."""

    def __init__(self, client: Client):
        self._client = client
        self._stub = jobs_pb2_grpc.JobServiceStub(client._channel)

    def create(self, base_model: str, dataset: DatasetSource | str | Path | list[dict], *, method: str = "sft",
               timeout: Any = DEFAULT, **options: Any) -> types.Job:
        """Create a training job and return its record (queued) at once; options as Client.train takes them.
        Follow it with watch() or events()."""
        request = train_pb2.CreateJobRequest(train=train_request(base_model, dataset, method=method, **options))
        return convert.job(self._client._unary(self._client._backend.CreateJob, request, timeout).job)

    def validate(self, base_model: str, dataset: DatasetSource | str | Path | list[dict], *, method: str = "sft",
                 timeout: Any = DEFAULT, **options: Any) -> list[str]:
        """Check a training request as creating its job would (fields, dataset rows, base model, disk) without
        creating one: the trainer's advice ("field: advice") for a good one, the typed error for a bad one."""
        request = train_pb2.CreateJobRequest(train=train_request(base_model, dataset, method=method, **options),
                                             validate_only=True)
        return list(self._client._unary(self._client._backend.CreateJob, request, timeout).advice)

    def list(self, state: str | None = None, limit: int = 0, *, page_size: int = 0,
             timeout: Any = DEFAULT) -> list[types.Job]:
        """Jobs, newest first, page after page: all of them, or the first `limit`; only those in `state`
        ("running", ...) when given."""
        jobs: list[types.Job] = []
        token = ""
        while True:
            request = page_request(jobs_pb2.ListJobsRequest(state=job_state(state)), token, page_size, limit, len(jobs))
            response = self._client._unary(self._stub.ListJobs, request, timeout)
            jobs += [convert.job(j) for j in response.jobs]
            token = response.next_page_token
            if not token or (limit and len(jobs) >= limit):
                return jobs

    def events(self, job_id: str, *, newest_first: bool = False, limit: int = 0, page_size: int = 0,
               timeout: Any = DEFAULT) -> list[types.JobEvent]:
        """A job's recorded events, page after page (oldest first unless newest_first): all, or the first `limit`."""
        events: list[types.JobEvent] = []
        token = ""
        while True:
            request = page_request(jobs_pb2.ListJobEventsRequest(job_id=job_id, newest_first=newest_first), token,
                                   page_size, limit, len(events))
            response = self._client._unary(self._stub.ListJobEvents, request, timeout)
            events += [convert.job_event(e) for e in response.events]
            token = response.next_page_token
            if not token or (limit and len(events) >= limit):
                return events

    def get(self, job_id: str, *, timeout: Any = DEFAULT) -> types.Job:
        response = self._client._unary(self._stub.GetJob, jobs_pb2.GetJobRequest(job_id=job_id), timeout)
        return convert.job(response.job)

    def cancel(self, job_id: str, *, timeout: Any = DEFAULT) -> types.Job:
        """Ask the job to stop at its next step (it keeps a checkpoint); the returned record may still be running."""
        response = self._client._unary(self._stub.CancelJob, jobs_pb2.CancelJobRequest(job_id=job_id), timeout)
        return convert.job(response.job)

    def watch(self, job_id: str, after: int = 0) -> Iterator[types.JobEvent]:
        """The job's events after sequence `after` until it ends (resuming the stream if the connection drops)."""
        return self._client.job(job_id, after=after).events()

    def _watch_call_from(self, request: jobs_pb2.WatchJobRequest, timeout: float | None):
        metadata = self._client.connection.metadata
        return self._client._open(lambda t: self._stub.WatchJob(request, timeout=t, metadata=metadata), timeout)


class Models:
    """ModelService: list, load and unload models (LlamaForge's add/load/unload)."""

    def __init__(self, client: Client):
        self._client = client
        self._stub = models_pb2_grpc.ModelServiceStub(client._channel)

    def list(self, *, timeout: Any = DEFAULT) -> list[types.Model]:
        response = self._client._unary(self._stub.ListModels, models_pb2.ListModelsRequest(), timeout)
        return [convert.model(m) for m in response.models]

    def load(self, name: str, source: str = "", *, backend: str = "", task: str | None = None,
             quantization: str | None = None, base_model: str = "", options: dict[str, Any] | None = None,
             timeout: Any = DEFAULT) -> types.Model:
        """Load `source` (a path, hub id or model-store name; default the store entry `name`) under `name`, on a
        backend of kind `backend` when given; options are backend-specific (llama.cpp: n_ctx, n_threads, ...)."""
        request = load_request(name, source, backend, task, quantization, base_model, options)
        return convert.model(self._client._unary(self._stub.LoadModel, request, timeout).model)

    def unload(self, name: str, *, timeout: Any = DEFAULT) -> None:
        self._client._unary(self._stub.UnloadModel, models_pb2.UnloadModelRequest(name=name), timeout)

    def delete(self, name: str, *, timeout: Any = DEFAULT) -> None:
        """Delete the model-store entry `name` (refused with FAILED_PRECONDITION while an endpoint serves it loaded)."""
        self._client._unary(self._stub.DeleteModel, models_pb2.DeleteModelRequest(name=name), timeout)

    def export(self, name: str, format: str = "gguf", *, output_name: str = "", outtype: str = "",
               timeout: Any = DEFAULT) -> types.ExportedModel:
        """Convert the store entry `name` into a new entry `output_name` (default NAME-gguf); `outtype` is the GGUF
        matrix type (f32, f16, q8_0; default f16)."""
        request = export_request(name, format, output_name, outtype)
        response = self._client._unary(self._stub.ExportModel, request, timeout)
        return types.ExportedModel(convert.model(response.model), response.path, response.size_bytes)

    def download(self, name: str, dest: str | Path, *, checkpoint: tuple[str, str] | None = None,
                 timeout: float | None = None) -> Path:
        """Download the store entry `name` (or a job's checkpoint: (job id, "checkpoint-N" or "" for the latest))
        into the folder `dest`; every file's sha256 is checked (DownloadError on a mismatch) and nothing
        half-written is left behind. Returns dest."""
        request = download_request(name, checkpoint)
        metadata = self._client.connection.metadata
        first, call = self._client._open(lambda t: self._stub.DownloadModel(request, timeout=t, metadata=metadata),
                                         timeout)
        writer = DownloadWriter(dest)
        try:
            try:
                for chunk in itertools.chain([first] if first is not None else [], call):
                    writer.add(chunk)
            except grpc.RpcError as rpc_error:
                raise from_grpc(rpc_error) from None
            return writer.finish()
        except BaseException:
            writer.abort()
            raise

    def evaluate(self, name: str, dataset: DatasetSource | str | Path | list[dict], *, generate_samples: int = 0,
                 max_new_tokens: int = 64, timeout: float | None = None) -> dict[str, float]:
        """Evaluate the store entry `name` on a dataset now: eval_loss, perplexity, eval_samples and, with
        generate_samples > 0, rouge1/rouge2/rougeL/bleu of greedy answers to that many prompts."""
        request = evaluate_request(name, dataset, generate_samples, max_new_tokens)
        response = self._client._unary(self._stub.EvaluateModel, request, timeout)
        return {**response.metrics, "eval_samples": float(response.examples)}


class Datasets:
    """DatasetService: upload, read and list training datasets."""

    def __init__(self, client: Client):
        self._client = client
        self._stub = datasets_pb2_grpc.DatasetServiceStub(client._channel)

    def upload(self, source: str | Path | bytes, *, filename: str | None = None, format: str = "",
               purpose: str = "fine-tune", timeout: Any = DEFAULT) -> types.Dataset:
        upload = Upload.of(source, filename, format, purpose)
        header = upload.header()
        metadata = self._client.connection.metadata
        response = self._client._retrying(
            lambda t: self._stub.UploadDataset(upload.parts(header), timeout=t, metadata=metadata), timeout)
        return convert.dataset(response.dataset)

    def get(self, dataset_id: str, *, timeout: Any = DEFAULT) -> types.Dataset:
        request = datasets_pb2.GetDatasetRequest(dataset_id=dataset_id)
        return convert.dataset(self._client._unary(self._stub.GetDataset, request, timeout).dataset)

    def list(self, *, timeout: Any = DEFAULT) -> list[types.Dataset]:
        response = self._client._unary(self._stub.ListDatasets, datasets_pb2.ListDatasetsRequest(), timeout)
        return [convert.dataset(d) for d in response.datasets]


__all__ = ["Client", "Jobs", "Models", "Datasets", "APIError"]
