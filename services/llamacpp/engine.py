"""The llama.cpp backend: GGUF models served through llama-cpp-python, one thread per context, never torch."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator

import llama_cpp

from forgeway.services.runtime import metrics
from forgeway.services.runtime.engine import Features, InferenceEngine, LoadInfo, ModelInfo
from forgeway.services.runtime.errors import FailedPrecondition, NotFound, Unsupported
from forgeway.services.runtime.generation import Delta, GenerationRequest, GenerationResult, Task

from .config import LlamaCppSettings, ModelConfig
from .model import LoadedModel
from .source import locate_gguf

log = logging.getLogger("forgeway.llamacpp")

SAMPLING_PARAMS = frozenset(
    {"temperature", "top_p", "top_k", "min_p", "repetition_penalty", "presence_penalty", "frequency_penalty"}
)
_DONE = object()


class LlamaCppEngine(InferenceEngine):
    """Serves several GGUF models; each has `instances` llama.cpp contexts and a bounded queue in front of them."""

    kind = "llamacpp"
    Settings = LlamaCppSettings
    settings: LlamaCppSettings

    def __init__(self, settings: LlamaCppSettings):
        super().__init__(settings)
        self.loaded: dict[str, LoadedModel] = {}
        self.claimed: set[str] = set()  # names and aliases loaded or being loaded

    async def start(self) -> None:
        for config in self.settings.models:
            await self._open(config, confined=False)

    async def stop(self) -> None:
        models, self.loaded = list(self.loaded.values()), {}
        for model in models:
            await asyncio.to_thread(model.close)

    def models(self) -> list[ModelInfo]:
        return [m.info() for m in self.loaded.values()]

    def features(self) -> Features:
        return Features(logprobs=True, json_schema=True, grammar=True, stop=True, seed=True, multiple_choices=True,
                        sampling_params=SAMPLING_PARAMS)

    def load(self) -> LoadInfo:
        models = list(self.loaded.values())
        return LoadInfo(
            in_flight=sum(m.busy for m in models),
            queue_depth=sum(m.waiting for m in models),
            max_concurrency=sum(len(m.slots) for m in models),
            max_queue=sum(m.config.max_queue for m in models),
        )

    def library_versions(self) -> dict[str, str]:
        return {"llama-cpp-python": llama_cpp.__version__,
                "llama.cpp-gpu-offload": str(bool(llama_cpp.llama_supports_gpu_offload())).lower()}

    def model(self, name: str) -> LoadedModel:
        for model in self.loaded.values():
            if name == model.name or name in model.config.aliases:
                return model
        raise NotFound("model", name, list(self.loaded))

    async def load_model(
        self, name: str, source: str, task: Task | None, quantization: str, base_model: str, options: dict[str, str]
    ) -> ModelInfo:
        if task not in (None, Task.TEXT_GENERATION):
            raise Unsupported(f"task {task.value}", self.kind, "llama.cpp serves text generation only")
        if quantization not in ("none", "gguf"):
            raise Unsupported(f"quantization {quantization}", self.kind, "a GGUF file carries its own quantization")
        if base_model:
            raise Unsupported("adapters", self.kind, "merge the adapter and export a GGUF (forgeway export-gguf)")
        model = await self._open(ModelConfig.from_options(name, source, options), confined=True)
        return model.info()

    async def unload_model(self, name: str) -> None:
        model = self.model(name)
        del self.loaded[model.name]  # new requests get NOT_FOUND; queued and running ones finish first
        await model.drain()
        await asyncio.to_thread(model.close)
        self.claimed -= {model.name, *model.config.aliases}
        log.info("unloaded %s", model.name)

    async def _open(self, config: ModelConfig, confined: bool) -> LoadedModel:
        names = {config.name, *config.aliases}
        if names & self.claimed:
            raise FailedPrecondition(f"model name {sorted(names & self.claimed)[0]!r} is taken; unload it first")
        self.claimed |= names
        try:
            roots = self.settings.model_roots if confined else None
            path = await asyncio.to_thread(locate_gguf, config.source or config.name, self.settings.home, roots)
            model = await asyncio.to_thread(LoadedModel.open, config, path, self.settings.verbose)
            if self.settings.warmup:
                await asyncio.to_thread(model.warm_up)
        except BaseException:
            self.claimed -= names
            raise
        gauge = metrics.QUEUE_DEPTH.labels(self.kind)
        model.on_queue_change = lambda: gauge.set(self.load().queue_depth)
        self.loaded[config.name] = model
        log.info("loaded %s from %s (%s, n_ctx %d, %d slot(s))", config.name, path, model.file_type, model.n_ctx,
                 len(model.slots))
        return model

    async def generate(self, request: GenerationRequest) -> AsyncIterator[Delta | GenerationResult]:
        start = time.perf_counter()
        model = self.model(request.model)
        plan = await model.prepare(request)
        planned = time.perf_counter()
        slot = await model.acquire()
        acquired = time.perf_counter()
        loop = asyncio.get_running_loop()
        events: asyncio.Queue = asyncio.Queue()
        cancelled = threading.Event()
        counter = metrics.TOKENS.labels(self.kind, model.name, "completion")
        metrics.TOKENS.labels(self.kind, model.name, "prompt").inc(len(plan.prompt_tokens))

        def post(event) -> None:
            try:
                loop.call_soon_threadsafe(events.put_nowait, event)
            except RuntimeError:  # the event loop is gone (shutdown): nobody is listening
                cancelled.set()

        def work():
            try:
                return slot.loop.run(plan, post, cancelled, counter.inc)
            finally:
                post(_DONE)

        future = loop.run_in_executor(slot.executor, work)
        future.add_done_callback(lambda _: model.release(slot))
        # A cancelled RPC may leave this generator suspended, unclosed, in its caller's frame; the RPC's task ending
        # is the signal that always arrives, so the decoding thread stops within a token either way.
        caller = asyncio.current_task()
        stop = lambda _: cancelled.set()  # noqa: E731
        if caller is not None:
            caller.add_done_callback(stop)
        try:
            done = False
            while not done:
                batch = [await events.get()]
                while not events.empty():  # coalesce what piled up while the consumer was busy
                    batch.append(events.get_nowait())
                if batch[-1] is _DONE:
                    batch.pop()
                    done = True
                for delta in _merge(batch):
                    yield delta
            stats = await future
        finally:
            cancelled.set()
            if caller is not None:
                caller.remove_done_callback(stop)
        end = time.perf_counter()
        tokens = sum(c.completion_tokens for c in stats.choices)
        if stats.first_token_at:
            metrics.TIME_TO_FIRST_TOKEN.labels(self.kind, model.name).observe(stats.first_token_at - start)
            if tokens > 1:
                per_token = (end - stats.first_token_at) / (tokens - 1)
                metrics.TIME_PER_OUTPUT_TOKEN.labels(self.kind, model.name).observe(per_token)
        yield GenerationResult(
            model=model.name,
            choices=stats.choices,
            prompt_tokens=len(plan.prompt_tokens),
            queue_ms=(acquired - planned) * 1000,
            time_to_first_token_ms=(stats.first_token_at - start) * 1000 if stats.first_token_at else 0.0,
            total_ms=(end - start) * 1000,
            served_by=f"{self.kind}/{self.settings.instance_id}",
        )


def _merge(batch: list[Delta]) -> list[Delta]:
    """Join consecutive deltas of the same choice into one."""
    merged: list[Delta] = []
    for delta in batch:
        if merged and merged[-1].index == delta.index:
            last = merged[-1]
            merged[-1] = Delta(last.index, last.text + delta.text, last.logprobs + delta.logprobs)
        else:
            merged.append(delta)
    return merged
