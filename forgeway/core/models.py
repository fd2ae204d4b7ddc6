"""What a backend serves (models, generation features, load) and the one decision: can this model serve this request."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from .errors import InvalidArgument, NotFound, Unsupported
from .embeddings import EmbeddingRequest, RerankRequest
from .generation import GenerationRequest, Task

FEATURE_FLAGS = ("logprobs", "json_schema", "grammar", "stop", "seed", "multiple_choices", "adapters", "tools",
                 "reasoning")


@dataclass
class ModelInfo:
    name: str
    task: Task = Task.TEXT_GENERATION
    context_length: int = 0
    quantization: str = "none"  # a QUANTIZATION name: none, nf4, fp4, int8, gguf
    adapters: list[str] = field(default_factory=list)
    loaded: bool = True
    source: str = ""
    chat: bool = False
    aliases: list[str] = field(default_factory=list)
    backend: str = ""
    # Features the engine has that this model cannot honour (its task has no use for them): name -> why.
    unsupported: dict[str, str] = field(default_factory=dict)
    # Embedding models: vector length, the shorter Matryoshka lengths a request may ask for, and the pooling.
    dimensions: int = 0
    matryoshka: list[int] = field(default_factory=list)
    pooling: str = ""
    # Trained models (model-store entries): their provenance, as the trainer recorded it.
    description: str = ""
    created: datetime | None = None
    base_model: str = ""
    provider: str = ""  # ModelForge's vocabulary: "huggingface", "unsloth"
    trained_by: str = ""  # the Forgeway trainer service: "trl", "unsloth"

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)


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
    tools: bool = False
    reasoning: bool = False
    sampling_params: frozenset[str] = frozenset()

    def names(self) -> set[str]:
        return {f for f in FEATURE_FLAGS if getattr(self, f)} | set(self.sampling_params)


@dataclass
class LoadInfo:
    in_flight: int = 0
    queue_depth: int = 0
    max_concurrency: int = 0
    max_queue: int = 0


# What a model of each task answers, for errors that send a caller to the right API.
SERVES = {
    Task.TEXT_GENERATION: "generation (chat and completions)",
    Task.SUMMARIZATION: "summarization (Generate with a document)",
    Task.EXTRACTIVE_QA: "extractive question answering (Generate with a context and question)",
    Task.EMBEDDING: "embeddings (/v1/embeddings, Embed)",
    Task.RERANK: "reranking (/v1/rerank, Rerank)",
}
Request = GenerationRequest | EmbeddingRequest | RerankRequest


def check_servable(request: Request, model: ModelInfo, features: set[str] | frozenset[str], backend: str) -> None:
    """Raise the table's error when `model` on a `backend` with these feature names cannot serve `request`.

    The gateway's router asks it of every endpoint and every engine asks it at admission: one decision, one wording.
    """
    if request.backend and request.backend != backend:
        raise InvalidArgument("backend", f"model {model.name!r} is served by {backend}, not {request.backend!r}")
    wanted = Task.EMBEDDING if isinstance(request, EmbeddingRequest) else (
        Task.RERANK if isinstance(request, RerankRequest) else None)
    if wanted is not None or model.task in (Task.EMBEDDING, Task.RERANK):
        if model.task != wanted:
            asked = SERVES[wanted] if wanted else "generation"
            raise InvalidArgument("model", f"model {model.name!r} serves {SERVES[model.task]}, not {asked}")
        if isinstance(request, EmbeddingRequest):
            check_dimensions(request, model)
        return
    missing = sorted(request.features() - set(features))
    if missing:
        raise Unsupported(missing[0], backend)
    refused = sorted(request.features() & set(model.unsupported))
    if refused:
        raise Unsupported(refused[0], backend, f"{model.unsupported[refused[0]]} ({model.task.value})")
    task = request.task or request.input_task
    if task != model.task or request.input_task != model.task:
        raise InvalidArgument("task", f"model {model.name!r} serves {model.task.value}, not {task.value}")
    if request.messages and not model.chat:
        raise InvalidArgument("messages", f"model {model.name!r} has no chat template; send a prompt")
    if request.adapter and request.adapter not in model.adapters:
        raise NotFound("adapter", request.adapter, model.adapters)
    max_tokens = request.sampling.max_tokens
    if max_tokens and model.context_length and model.task == Task.TEXT_GENERATION and max_tokens >= model.context_length:
        raise InvalidArgument(
            "max_tokens", f"{max_tokens} tokens cannot fit the context length {model.context_length} of model "
                          f"{model.name!r} with any prompt (at most {model.context_length - 1})")


def check_dimensions(request: EmbeddingRequest, model: ModelInfo) -> None:
    """A shorter vector only where the model was trained for it (Matryoshka); its own length is always fine."""
    wanted = request.dimensions
    if wanted is None or wanted == model.dimensions or wanted in model.matryoshka:
        return
    if not model.matryoshka:
        raise InvalidArgument("dimensions", f"model {model.name!r} makes {model.dimensions}-dimensional vectors and "
                                            f"declares no shorter (Matryoshka) lengths")
    allowed = ", ".join(str(d) for d in sorted({*model.matryoshka, model.dimensions}))
    raise InvalidArgument("dimensions", f"model {model.name!r} cannot make {wanted}-dimensional vectors; "
                                        f"allowed: {allowed}")


def find_model(models: list[ModelInfo], name: str) -> ModelInfo:
    """The model called `name` (or aliased so); NOT_FOUND listing the known names."""
    for model in models:
        if name in model.names:
            return model
    raise NotFound("model", name, [m.name for m in models])
