"""An inference engine around a LlamaForge-style backend class: each model is one instance of it, called on a worker
thread (its methods block); LoadModel makes another. Unary Generate calls its generate, GenerateStream its
generate_stream; stop sequences are applied here as well, so they hold whatever the class does with them."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from forgeway.compat.llamaforge.backends.base import BackendInstance
from forgeway.compat.llamaforge.model import Model
from forgeway.core.errors import FailedPrecondition, NotFound, Unimplemented, Unsupported
from forgeway.core.generation import (
    Completion, Delta, FinishReason, GenerationRequest, GenerationResult, Sampling, Task, apply_stop, held_back,
)
from forgeway.services.runtime.engine import Features, InferenceEngine, LoadInfo, ModelInfo

from .settings import CustomSettings, resolve_backend_class

log = logging.getLogger("forgeway.services.custom")
WORD = re.compile(r"\s*\S+")  # usage is counted in words: a custom backend reports no tokens
_END = object()


class CustomEngine(InferenceEngine):
    """Serves models through instances of one backend class (settings.backend_class)."""

    kind = "custom"
    Settings = CustomSettings
    settings: CustomSettings

    def __init__(self, settings: CustomSettings):
        super().__init__(settings)
        self.backend_class = resolve_backend_class(settings.backend_class)
        self.served: dict[str, tuple[BackendInstance, str]] = {}  # name -> (instance, path)
        self.loading = asyncio.Lock()
        self.in_flight = 0

    async def start(self) -> None:
        s = self.settings
        if s.model_name:
            await self._load(s.model_name, s.model_path or s.model_name, s.parameters)

    async def stop(self) -> None:
        for instance, _ in list(self.served.values()):
            await asyncio.to_thread(instance.unload)
        self.served.clear()

    def models(self) -> list[ModelInfo]:
        return [ModelInfo(name=name, context_length=self.settings.context_length, source=path, chat=False)
                for name, (_, path) in self.served.items()]

    def features(self) -> Features:
        return Features(streaming=True, stop=True, sampling_params=frozenset(self.settings.sampling_params))

    def load(self) -> LoadInfo:
        return LoadInfo(in_flight=self.in_flight)

    async def load_model(self, name: str, source: str, task: Task | None, quantization: str, base_model: str,
                         options: dict[str, str]) -> ModelInfo:
        if task not in (None, Task.TEXT_GENERATION):
            raise Unsupported(f"task {task.value}", self.kind, "a custom backend generates text")
        if quantization != "none":
            raise Unsupported(f"quantization {quantization}", self.kind)
        if base_model:
            raise Unsupported("adapters", self.kind)
        await self._load(name, source or name, {k: _option_value(v) for k, v in options.items()})
        return self.find_model(name)

    async def unload_model(self, name: str) -> None:
        async with self.loading:
            if name not in self.served:
                raise NotFound("model", name, list(self.served))
            instance, _ = self.served.pop(name)
        await asyncio.to_thread(instance.unload)

    async def _load(self, name: str, path: str, parameters: dict[str, Any]) -> None:
        async with self.loading:
            if name in self.served:
                raise FailedPrecondition(f"model {name!r} is already loaded; unload it first")
            instance = BackendInstance(self.backend_class())
            model = Model(name, path, {"backend": instance.name, "parameters": parameters})
            try:
                await asyncio.to_thread(instance.load, model)
            except NotImplementedError:
                raise Unimplemented(f"{self.settings.backend_class} does not implement load_model") from None
            except Exception as error:  # the class's own reason, as LlamaForge reports a failed load
                log.warning("%s could not load %r from %r", self.settings.backend_class, name, path, exc_info=True)
                raise FailedPrecondition(f"the custom backend could not load {name!r}: {error}") from None
            self.served[name] = (instance, path)

    async def complete(self, request: GenerationRequest, model: ModelInfo) -> GenerationResult:
        start = time.perf_counter()
        instance = self._instance(model.name)
        self.in_flight += 1
        try:
            text = await asyncio.to_thread(
                _implemented, "generate", instance.generate, request.prompt, parameters(request.sampling))
        finally:
            self.in_flight -= 1
        text, stopped = apply_stop(str(text), request.sampling.stop)
        reason = FinishReason.STOP_SEQUENCE if stopped else FinishReason.STOP
        return self._result(request, text, reason, start, time.perf_counter())

    async def generate(self, request: GenerationRequest, model: ModelInfo) -> AsyncIterator[Delta | GenerationResult]:
        start = time.perf_counter()
        instance = self._instance(model.name)
        stops = request.sampling.stop
        text, sent, reason, first = "", 0, FinishReason.STOP, 0.0
        worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="forgeway-custom")  # one thread per stream
        loop = asyncio.get_running_loop()
        chunks: Iterator[str] | None = None
        self.in_flight += 1
        try:
            chunks = await loop.run_in_executor(
                worker, _implemented, "generate_stream", instance.stream, request.prompt, parameters(request.sampling))
            while (chunk := await loop.run_in_executor(
                    worker, _implemented, "generate_stream", next, chunks, _END)) is not _END:
                first = first or time.perf_counter()
                text, stopped = apply_stop(text + str(chunk), stops)
                if stopped:
                    reason = FinishReason.STOP_SEQUENCE
                    break
                end = len(text) - held_back(text, stops)
                if end > sent:
                    yield Delta(0, text[sent:end])
                    sent = end
        finally:
            self.in_flight -= 1
            close = getattr(chunks, "close", None)
            if close is not None:  # after the pending next() (same thread): a generator stops where it is
                worker.submit(close)
            worker.shutdown(wait=False)
        if sent < len(text):
            yield Delta(0, text[sent:])
        yield self._result(request, text, reason, start, first)

    def _instance(self, name: str) -> BackendInstance:
        if name not in self.served:  # unloaded since admission
            raise NotFound("model", name, list(self.served))
        return self.served[name][0]

    def _result(self, request: GenerationRequest, text: str, reason: FinishReason, start: float,
                first: float) -> GenerationResult:
        done = time.perf_counter()
        return GenerationResult(
            model=request.model, choices=[Completion(0, text, reason, completion_tokens=len(WORD.findall(text)))],
            prompt_tokens=len(WORD.findall(request.prompt or "")),
            time_to_first_token_ms=(first - start) * 1000 if first else 0.0, total_ms=(done - start) * 1000,
            served_by=f"{self.kind}/{self.settings.instance_id}")


def parameters(sampling: Sampling) -> dict[str, Any]:
    """A request's sampling as LlamaForge's generation parameters (only those it set)."""
    values: dict[str, Any] = {name: getattr(sampling, name) for name in
                              ("max_tokens", "temperature", "top_p", "top_k", "min_p", "repetition_penalty",
                               "presence_penalty", "frequency_penalty")}
    values["stop"] = list(sampling.stop) or None
    return {k: v for k, v in values.items() if v is not None}


def _implemented(what: str, method, *args: Any) -> Any:
    """method(*args), with the backend's NotImplementedError as UNIMPLEMENTED naming `what` it lacks."""
    try:
        return method(*args)
    except NotImplementedError:
        raise Unimplemented(f"the custom backend does not implement {what}") from None


def _option_value(value: str) -> Any:
    """A LoadModel option (always a string) as the JSON value it spells, else the string itself."""
    try:
        return json.loads(value)
    except ValueError:
        return value
