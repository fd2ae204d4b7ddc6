"""The inference engine protocol every inference backend implements, and what it reports about itself."""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import ClassVar

from .errors import InvalidArgument, NotFound, Unavailable, Unimplemented, Unsupported
from .generation import Delta, GenerationRequest, GenerationResult, Task
from .settings import ServiceSettings


@dataclass
class ModelInfo:
    name: str
    task: Task = Task.TEXT_GENERATION
    context_length: int = 0
    quantization: str = "none"  # none, nf4, fp4, int8, gguf
    adapters: list[str] = field(default_factory=list)
    loaded: bool = True
    source: str = ""
    chat: bool = False
    aliases: list[str] = field(default_factory=list)


@dataclass
class Features:
    """Generation features an engine honours; anything else a request asks for is rejected."""

    streaming: bool = True
    logprobs: bool = False
    json_schema: bool = False
    grammar: bool = False
    stop: bool = False
    seed: bool = False
    multiple_choices: bool = False
    adapters: bool = False
    sampling_params: frozenset[str] = frozenset()

    def names(self) -> set[str]:
        flags = ("logprobs", "json_schema", "grammar", "stop", "seed", "multiple_choices", "adapters")
        return {f for f in flags if getattr(self, f)} | set(self.sampling_params)


@dataclass
class LoadInfo:
    in_flight: int = 0
    queue_depth: int = 0
    max_concurrency: int = 0
    max_queue: int = 0


class InferenceEngine(abc.ABC):
    """A backend that generates text. Subclasses implement start, models, features and generate.

    Args:
        settings: the service's settings, built once in main.
    """

    kind: ClassVar[str]
    Settings: ClassVar[type[ServiceSettings]] = ServiceSettings

    def __init__(self, settings: ServiceSettings):
        self.settings = settings
        self.ready = False
        self.failure = ""

    @abc.abstractmethod
    async def start(self) -> None:
        """Load models and warm up; raise to stay NOT_SERVING with the error as the reason."""

    async def stop(self) -> None:
        """Release resources."""

    @abc.abstractmethod
    def models(self) -> list[ModelInfo]:
        """The models this engine knows."""

    @abc.abstractmethod
    def features(self) -> Features:
        """The generation features it honours."""

    def load(self) -> LoadInfo:
        """Current load."""
        return LoadInfo()

    def library_versions(self) -> dict[str, str]:
        return {}

    @abc.abstractmethod
    def generate(self, request: GenerationRequest) -> AsyncIterator[Delta | GenerationResult]:
        """Yield deltas as text decodes, then exactly one GenerationResult. Cancellation stops it."""

    async def load_model(
        self, name: str, source: str, task: Task | None, quantization: str, base_model: str, options: dict[str, str]
    ) -> ModelInfo:
        raise Unimplemented(f"the {self.kind} backend does not load models at run time")

    async def unload_model(self, name: str) -> None:
        raise Unimplemented(f"the {self.kind} backend does not unload models at run time")

    def find_model(self, name: str) -> ModelInfo:
        for model in self.models():
            if name == model.name or name in model.aliases:
                return model
        raise NotFound("model", name, [m.name for m in self.models()])

    def admit(self, request: GenerationRequest) -> ModelInfo:
        """Check a request against what this engine can do now; raise the table's error if it can't."""
        if not self.ready:
            raise Unavailable(f"{self.kind} backend not ready: {self.failure or 'starting'}", retry_after=1.0)
        if request.backend and request.backend != self.kind:
            raise InvalidArgument("backend", f"this endpoint is the {self.kind} backend, not {request.backend!r}")
        model = self.find_model(request.model)
        missing = sorted(request.features() - self.features().names())
        if missing:
            raise Unsupported(missing[0], self.kind)
        task = request.task or request.input_task
        if task != model.task or request.input_task != model.task:
            raise InvalidArgument("task", f"model {model.name!r} serves {model.task.value}, not {task.value}")
        if request.messages and not model.chat:
            raise InvalidArgument("messages", f"model {model.name!r} has no chat template; send a prompt")
        if request.adapter and request.adapter not in model.adapters:
            raise NotFound("adapter", request.adapter, model.adapters)
        return model

    def servicers(self) -> list[tuple[object, object, str]]:
        """The gRPC services this engine is served through."""
        from .servicers import inference_servicers

        return inference_servicers(self)
