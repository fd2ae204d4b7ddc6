"""The inference engine protocol every inference backend implements, and what it reports about itself."""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator
from typing import ClassVar

from forgeway.core.embeddings import EmbeddingRequest, EmbeddingResult, RerankRequest, RerankResult
from forgeway.core.errors import Unavailable, Unimplemented
from forgeway.core.generation import Delta, GenerationRequest, GenerationResult, Task
from forgeway.core.models import Features, LoadInfo, ModelInfo, Request, check_servable, find_model
from forgeway.server.settings import ServiceSettings

__all__ = ["Features", "InferenceEngine", "LoadInfo", "ModelInfo"]


class InferenceEngine(abc.ABC):
    """A backend that generates text. Subclasses implement start, models, features and generate.

    Args:
        settings: the service's settings, built once in main.
    """

    kind: ClassVar[str]
    # The retrieval RPCs it serves beside generation: "Embed", "Rerank" (an engine that has them overrides embed()
    # and rerank()); Capabilities lists them, so the gateway routes them here. An instance may narrow it to what
    # its configured models do (the OpenAI proxy does).
    retrieval_rpcs: tuple[str, ...] = ()
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
    def generate(self, request: GenerationRequest, model: ModelInfo) -> AsyncIterator[Delta | GenerationResult]:
        """Yield deltas as text decodes, then exactly one GenerationResult. Cancellation stops it.

        `model` is what admit() found for the request; the engine never looks it up again."""

    async def complete(self, request: GenerationRequest, model: ModelInfo) -> GenerationResult:
        """The whole result at once (unary Generate): generate()'s last event, unless an engine does better."""
        result = None
        async for event in self.generate(request, model):
            if isinstance(event, GenerationResult):
                result = event
        return result

    async def embed(self, request: EmbeddingRequest, model: ModelInfo) -> EmbeddingResult:
        """One vector per input, in input order. `model` is what admit() found."""
        raise Unimplemented(f"the {self.kind} backend does not embed")

    async def rerank(self, request: RerankRequest, model: ModelInfo) -> RerankResult:
        """A score per document, in document order (RerankResult sorts). `model` is what admit() found."""
        raise Unimplemented(f"the {self.kind} backend does not rerank")

    async def load_model(
        self, name: str, source: str, task: Task | None, quantization: str, base_model: str, options: dict[str, str]
    ) -> ModelInfo:
        raise Unimplemented(f"the {self.kind} backend does not load models at run time")

    async def unload_model(self, name: str) -> None:
        raise Unimplemented(f"the {self.kind} backend does not unload models at run time")

    def find_model(self, name: str) -> ModelInfo:
        return find_model(self.models(), name)

    def admit(self, request: Request) -> ModelInfo:
        """Check a request against what this engine can do now; raise the table's error if it can't."""
        if not self.ready:
            raise Unavailable(f"{self.kind} backend not ready: {self.failure or 'starting'}", retry_after=1.0)
        model = self.find_model(request.model)
        check_servable(request, model, self.features().names(), self.kind)
        return model

