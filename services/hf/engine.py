"""HFEngine: transformers models behind the InferenceEngine protocol, each with its own batching worker."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import torch

from forgeway.server import metrics
from forgeway.services.runtime.engine import Features, InferenceEngine, LoadInfo, ModelInfo
from forgeway.core.embeddings import EmbeddingRequest, EmbeddingResult, RerankRequest, RerankResult
from forgeway.core.errors import FailedPrecondition, InvalidArgument, NotFound
from forgeway.core.generation import Delta, GenerationRequest, GenerationResult, Task
from forgeway.server.hardware import installed_versions

from . import structured
from .catalog import Catalog
from .encoder_runner import EncoderRunner
from .encoders import ENCODER_TASKS, LoadedEncoder
from .intake import build_job, unsupported
from .load_options import OPTIONS, LoadOptions
from .models import Source, load, resolve
from .scheduler import CausalRunner, Runner
from .settings import HFSettings, ModelSpec
from forgeway.core.modelstore import ModelStore
from .tasks import QuestionAnswerRunner, Seq2SeqRunner
from .warmup import warm_up_request

log = logging.getLogger("forgeway.hf")

RUNNERS: dict[Task, type[Runner]] = {
    Task.TEXT_GENERATION: CausalRunner,
    Task.SUMMARIZATION: Seq2SeqRunner,
    Task.EXTRACTIVE_QA: QuestionAnswerRunner,
}
SAMPLING = frozenset({"temperature", "top_p", "top_k", "min_p", "repetition_penalty", "presence_penalty",
                      "frequency_penalty"})
LIBRARIES = ("torch", "transformers", "tokenizers", "sentence-transformers", "peft", "xgrammar", "bitsandbytes",
             "accelerate")


@dataclass
class Served:
    """A name requests use: a runner, and the adapter it implies when the name is a LoRA over a base model."""

    name: str
    runner: Runner | EncoderRunner
    adapter: str = ""
    source: str = ""


class HFEngine(InferenceEngine):
    """Serves transformers models: batched causal LM generation, summarization, extractive QA, LoRA adapters; and
    sentence-transformers embedding models and cross-encoder rerankers, batched."""

    kind = "hf"
    retrieval_rpcs = ("Embed", "Rerank")
    Settings = HFSettings
    settings: HFSettings

    def __init__(self, settings: HFSettings):
        super().__init__(settings)
        self.store = ModelStore(settings.home / "models")
        self.catalog = Catalog(self.store)
        self.served: dict[str, Served] = {}
        self.runners: dict[tuple, Runner | EncoderRunner] = {}  # by (location, quantization, encoder task, options)
        self._loading: asyncio.Lock | None = None

    @property
    def loading(self) -> asyncio.Lock:
        if self._loading is None:
            self._loading = asyncio.Lock()
        return self._loading

    async def start(self) -> None:
        if self.settings.torch_threads:
            torch.set_num_threads(self.settings.torch_threads)
        for spec in self.settings.models:
            try:
                await self._load_spec(spec)
            except Exception as exc:
                raise RuntimeError(f"model {spec.name!r} failed to load: {type(exc).__name__}: {exc}") from exc
        if not self.settings.models:
            await self._serve_store()

    async def _serve_store(self) -> None:
        """With no models configured, serve the store's full models (adapters load on first use)."""
        entries = [e for e in self.store.list() if e.loadable and not e.is_adapter]
        failures = []
        for entry in entries:
            try:
                await self._load_spec(ModelSpec(name=entry.name, path=entry.name))
            except Exception as exc:  # one broken entry does not keep the others from being served
                failures.append(f"{entry.name}: {type(exc).__name__}: {exc}")
                log.warning("model-store entry %s not served: %s", entry.name, failures[-1])
        if not self.served:
            where = self.store.root
            raise RuntimeError("no model to serve: set --model PATH or --models, or put one in the model store "
                               f"({where})" + (f"; {'; '.join(failures)}" if failures else ""))

    async def stop(self) -> None:
        runners = list(self.runners.values())
        self.runners.clear()
        self.served.clear()
        await asyncio.gather(*(asyncio.to_thread(r.stop) for r in runners))

    # -- loading -------------------------------------------------------------------------------------------------

    async def _runner_for(self, source: Source, task: Task | None, quantization: str,
                          options: LoadOptions) -> Runner | EncoderRunner:
        key = (source.location, quantization, task if task in ENCODER_TASKS else None, options)
        if key not in self.runners:
            s = self.settings
            loaded = await asyncio.to_thread(load, source, task, quantization, options)
            name = source.location.rstrip("/").rsplit("/", 1)[-1]
            if loaded.task in ENCODER_TASKS:
                runner = EncoderRunner(loaded, name, s.embedding_batch_size, s.max_queue, self._queue_changed)
            else:
                runner = RUNNERS[loaded.task](loaded, name, s.max_concurrency, s.max_queue, self._queue_changed)
            runner.start()
            self.runners[key] = runner
        return self.runners[key]

    async def _attach(self, runner: Runner, name: str, path: str) -> None:
        if name in runner.loaded.adapters:
            raise FailedPrecondition(f"adapter {name!r} is already loaded on this model")
        await asyncio.wrap_future(runner.call(lambda: runner.loaded.add_adapter(name, path)))

    async def _load_spec(self, spec: ModelSpec, roots: list[Path] | None = None,
                         options: LoadOptions | None = None) -> Served:
        """Load and warm up a model; with `roots`, a local path must lie under one of them. Without `options`, the
        spec's and the service's settings say how it loads."""
        if spec.name in self.served:
            raise FailedPrecondition(f"model {spec.name!r} is already loaded")
        before = set(self.runners.values())
        try:
            return await self._load_new(spec, roots, options or LoadOptions.of_spec(spec, self.settings))
        except BaseException:
            for key, runner in [(k, r) for k, r in self.runners.items() if r not in before]:
                del self.runners[key]  # a model that failed to load or warm up holds no memory or thread
                await asyncio.to_thread(runner.stop)
            raise

    async def _load_new(self, spec: ModelSpec, roots: list[Path] | None, options: LoadOptions) -> Served:
        source = resolve(spec.path, self.store, roots)
        if source.is_adapter:
            base = source.adapter_base()
            if not base:
                raise InvalidArgument("source", f"adapter {spec.path!r} names no base model")
            runner = await self._runner_for(resolve(base, self.store), None, spec.quantization, options)
            await self._attach(runner, spec.name, source.location)
            served = Served(spec.name, runner, adapter=spec.name, source=spec.path)
        else:
            runner = await self._runner_for(source, spec.task, spec.quantization, options)
            served = Served(spec.name, runner, source=spec.path)
        for adapter in spec.adapters:
            await self._attach(runner, adapter.name, resolve(adapter.path, self.store).location)
        await self._warm_up(served)
        self.served[spec.name] = served
        return served

    async def _warm_up(self, served: Served) -> None:
        request = warm_up_request(served.name, served.runner.loaded.task)
        if isinstance(served.runner, EncoderRunner):
            await served.runner.serve(request, served.name, "warm-up")
            return
        async for _ in self._generate(served, request):
            pass

    async def load_model(self, name: str, source: str, task: Task | None, quantization: str, base_model: str,
                         options: dict[str, str]) -> ModelInfo:
        roots = [self.store.root, *self.settings.model_roots]
        if base_model and options:  # an adapter runs on its base model's device, dtype and context
            raise InvalidArgument(f"options.{sorted(options)[0]}", f"an adapter loaded onto base_model takes no "
                                                                   f"options (known for models: {', '.join(OPTIONS)})")
        load_options = LoadOptions.of_request(options, self.settings, roots)
        self.catalog.invalidate()
        async with self.loading:
            if name in self.served:
                raise FailedPrecondition(f"model {name!r} is already loaded; unload it first")
            if base_model:
                base = self.served.get(base_model)
                if base is None:
                    raise NotFound("model", base_model, sorted(self.served))
                found = resolve(source or name, self.store, roots)
                if not found.is_adapter:
                    raise InvalidArgument("source", f"{source or name!r} is not a peft adapter")
                await self._attach(base.runner, name, found.location)
                self.served[name] = Served(name, base.runner, adapter=name, source=source or name)
            else:
                spec = ModelSpec(name=name, path=source or name, task=task, quantization=quantization,
                                 context_length=load_options.context_length, pooling=load_options.pooling)
                await self._load_spec(spec, roots, load_options)
        return self.find_model(name)

    async def unload_model(self, name: str) -> None:
        self.catalog.invalidate()
        async with self.loading:
            served = self.served.get(name)
            if served is None:  # an adapter configured beside its base model
                owners = [r for r in self.runners.values() if name in r.loaded.adapters]
                served = Served(name, owners[0], adapter=name) if owners else None
            if served is None:
                raise NotFound("model", name, sorted(self.served))
            runner = served.runner
            if served.adapter:
                with runner.cond:
                    jobs = runner.running | {entry[2] for entry in runner.pending}
                if any(job.adapter == served.adapter for job in jobs):
                    raise FailedPrecondition(f"adapter {name!r} is generating; retry when its requests finish")
                self.served.pop(name, None)
                await asyncio.wrap_future(runner.call(lambda: runner.loaded.remove_adapter(served.adapter)))
                return
            self.served.pop(name, None)
            if any(s.runner is runner and not s.adapter for s in self.served.values()):
                return  # another name serves the same weights (same source, loaded the same way): they stay
            for other in [s for s in self.served.values() if s.runner is runner]:
                del self.served[other.name]
            self.runners = {k: r for k, r in self.runners.items() if r is not runner}
            await asyncio.to_thread(runner.stop)

    async def _served(self, name: str) -> Served:
        """The served entry for a name admit() accepted; store models load on first use."""
        if name in self.served:
            return self.served[name]
        if not self.settings.load_on_demand:
            raise FailedPrecondition(f"model {name!r} is in the model store but not loaded; LoadModel it first")
        async with self.loading:
            if name not in self.served:
                await self._load_spec(ModelSpec(name=name, path=name))
        return self.served[name]

    # -- generation ------------------------------------------------------------------------------------------------

    async def generate(self, request: GenerationRequest, model: ModelInfo) -> AsyncIterator[Delta | GenerationResult]:
        served = await self._served(model.name)
        async for event in self._generate(served, request):
            yield event

    async def _generate(self, served: Served, request: GenerationRequest) -> AsyncIterator[Delta | GenerationResult]:
        runner = served.runner
        job = await build_job(runner.loaded, request, served.name, request.adapter or served.adapter,
                              f"{self.kind}/{self.settings.instance_id}", self.settings.max_new_tokens)
        runner.submit(job)
        try:
            async for event in job.events():
                yield event
        finally:
            if not job.finished:
                runner.cancel(job)

    # -- embeddings and reranking ----------------------------------------------------------------------------------

    async def embed(self, request: EmbeddingRequest, model: ModelInfo) -> EmbeddingResult:
        return await self._retrieve(request, model)

    async def rerank(self, request: RerankRequest, model: ModelInfo) -> RerankResult:
        return await self._retrieve(request, model)

    async def _retrieve(self, request: EmbeddingRequest | RerankRequest, model: ModelInfo):
        served = await self._served(model.name)
        if not model.loaded:  # judged from the store's files; now that it is loaded, judge what it is
            self.admit(request)
        return await served.runner.serve(request, served.name, f"{self.kind}/{self.settings.instance_id}")

    # -- what it reports -------------------------------------------------------------------------------------------

    def models(self) -> list[ModelInfo]:
        infos = []
        for served in self.served.values():
            loaded = served.runner.loaded
            infos.append(ModelInfo(
                name=served.name, task=loaded.task, context_length=loaded.context_length,
                quantization=loaded.quantization, adapters=[] if served.adapter else sorted(loaded.adapters),
                loaded=True, source=served.source, chat=loaded.chat and loaded.task == Task.TEXT_GENERATION,
                unsupported=unsupported(loaded.task, loaded),
                **(loaded.vector_info() if isinstance(loaded, LoadedEncoder) else {}),
                **self.catalog.provenance_of(served.source),
            ))
        configured = {m.name for m in infos}
        for spec in self.settings.models:
            if spec.name not in configured:
                configured.add(spec.name)
                infos.append(ModelInfo(name=spec.name, task=spec.task or Task.TEXT_GENERATION, loaded=False,
                                       source=spec.path, quantization=spec.quantization))
        if self.settings.load_on_demand:
            infos += self.catalog.models(configured)
        for info in infos:
            if not info.loaded:
                info.unsupported = unsupported(info.task, None)
        return infos

    def features(self) -> Features:
        return Features(streaming=True, logprobs=True, json_schema=structured.available(), grammar=False, stop=True,
                        seed=True, multiple_choices=True, adapters=True, tools=True, reasoning=True,
                        sampling_params=SAMPLING)

    def load(self) -> LoadInfo:
        runners = list(self.runners.values())
        return LoadInfo(
            in_flight=sum(len(r.running) for r in runners),
            queue_depth=sum(r.queued for r in runners),
            max_concurrency=sum(r.slots for r in runners) or self.settings.max_concurrency,
            max_queue=self.settings.max_queue,
        )

    def _queue_changed(self) -> None:
        metrics.QUEUE_DEPTH.labels(self.kind).set(sum(r.queued for r in list(self.runners.values())))

    def library_versions(self) -> dict[str, str]:
        return {name: "not installed" for name in LIBRARIES} | installed_versions(LIBRARIES)
