"""Typed results of the SDK: plain dataclasses with enum values as lowercase names, never raw protos."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

TERMINAL_STATES = ("succeeded", "failed", "cancelled")


@dataclass(frozen=True)
class TokenLogprob:
    """One generated token's log probability and its most likely alternatives (token, logprob)."""

    token: str
    logprob: float
    top: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True)
class AnswerSpan:
    """Where an extractive-QA answer lies in the context (character offsets) and its score."""

    start: int
    end: int
    score: float


@dataclass(frozen=True)
class ToolCall:
    """A tool call the model made: arguments are JSON text as the model wrote it; `args` parses them."""

    id: str
    name: str
    arguments: str

    @property
    def args(self) -> dict[str, Any]:
        """The arguments as a dict ({} when the model gave none); ValueError when they are not a JSON object."""
        value = json.loads(self.arguments or "{}")
        if not isinstance(value, dict):
            raise ValueError(f"the arguments of {self.name} are not a JSON object: {self.arguments}")
        return value

    def to_openai(self) -> dict[str, Any]:
        """The call as OpenAI's messages carry it (and as `messages` here take it back)."""
        return {"id": self.id, "type": "function", "function": {"name": self.name, "arguments": self.arguments}}


@dataclass(frozen=True)
class ToolCallDelta:
    """A piece of a streamed tool call: its first piece has id and name, later ones more argument text."""

    index: int
    id: str = ""
    name: str = ""
    arguments: str = ""


@dataclass(frozen=True)
class Choice:
    """One completion; finish_reason is "stop", "length", "stop_sequence", "cancelled", "error", "tool_calls" or ""."""

    index: int
    text: str
    finish_reason: str
    logprobs: tuple[TokenLogprob, ...] = ()
    answer_span: AnswerSpan | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    reasoning: str = ""

    @property
    def message(self) -> dict[str, Any]:
        """The assistant message to append to the chat (with its tool calls and reasoning) before calling again."""
        return assistant_message(self.text, self.tool_calls, self.reasoning)


def assistant_message(text: str, tool_calls: tuple[ToolCall, ...] = (), reasoning: str = "") -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if tool_calls:
        message["tool_calls"] = [call.to_openai() for call in tool_calls]
    if reasoning:
        message["reasoning"] = reasoning
    return message


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


@dataclass(frozen=True)
class Timings:
    """Milliseconds spent queued, until the first token, and in total (as the server measured them)."""

    queue_ms: float = 0.0
    time_to_first_token_ms: float = 0.0
    total_ms: float = 0.0


@dataclass(frozen=True)
class Generation:
    """A finished generation: n choices, usage, timings and which backend instance served it."""

    model: str
    choices: tuple[Choice, ...]
    usage: Usage = Usage()
    timings: Timings = Timings()
    served_by: str = ""

    @property
    def text(self) -> str:
        """The first choice's text."""
        return self.choices[0].text if self.choices else ""

    @property
    def finish_reason(self) -> str:
        return self.choices[0].finish_reason if self.choices else ""

    @property
    def tool_calls(self) -> tuple[ToolCall, ...]:
        """The first choice's tool calls."""
        return self.choices[0].tool_calls if self.choices else ()

    @property
    def reasoning(self) -> str:
        """The first choice's reasoning."""
        return self.choices[0].reasoning if self.choices else ""

    @property
    def answer_span(self) -> AnswerSpan | None:
        """Extractive QA: where the first choice's answer lies in the context, and its score."""
        return self.choices[0].answer_span if self.choices else None

    @property
    def message(self) -> dict[str, Any]:
        """The first choice as the assistant message to append to the chat."""
        return self.choices[0].message if self.choices else assistant_message("")


@dataclass(frozen=True)
class Delta:
    """A piece of what choice `index` generates: text, reasoning text, or pieces of tool calls."""

    index: int
    text: str
    logprobs: tuple[TokenLogprob, ...] = ()
    tool_calls: tuple[ToolCallDelta, ...] = ()
    reasoning: str = ""


@dataclass(frozen=True)
class Model:
    """A model an endpoint knows; task is "text-generation", "summarization", "extractive-question-answering",
    "embedding" or "rerank". Embedding models give their vector length, the shorter lengths `embed(dimensions=...)`
    may ask for (Matryoshka) and their pooling."""

    name: str
    task: str = ""
    context_length: int = 0
    quantization: str = ""
    adapters: tuple[str, ...] = ()
    loaded: bool = False
    backend: str = ""
    source: str = ""
    aliases: tuple[str, ...] = ()
    chat: bool = False
    dimensions: int = 0
    matryoshka_dimensions: tuple[int, ...] = ()
    pooling: str = ""
    # Trained models (model-store entries): provenance. provider is ModelForge's name ("huggingface", "unsloth"),
    # trained_by the Forgeway trainer service ("trl", "unsloth").
    description: str = ""
    created: datetime | None = None
    base_model: str = ""
    provider: str = ""
    trained_by: str = ""


@dataclass(frozen=True)
class ExportedModel:
    """A store entry an export wrote: the model as listed, where it lies on the exporting service, its size."""

    model: Model
    path: str
    size_bytes: int


@dataclass(frozen=True)
class GenerationFeatures:
    streaming: bool = False
    logprobs: bool = False
    json_schema: bool = False
    grammar: bool = False
    stop: bool = False
    seed: bool = False
    multiple_choices: bool = False
    adapters: bool = False
    sampling_params: tuple[str, ...] = ()
    tools: bool = False
    reasoning: bool = False


@dataclass(frozen=True)
class TrainingFeatures:
    """Method names ("sft", "dpo", ...), tasks, LoRA, quantizations ("nf4", ...) and export formats ("gguf", ...)."""

    methods: tuple[str, ...] = ()
    tasks: tuple[str, ...] = ()
    lora: bool = False
    quantizations: tuple[str, ...] = ()
    export_formats: tuple[str, ...] = ()


@dataclass(frozen=True)
class Recommendation:
    """What to train for one task on the endpoint's hardware profile: a model from ModelForge's curated lists, the
    alternatives (the recommended one first) and training settings; `train_options()` passes them to Client.train."""

    task: str
    model: str
    alternatives: tuple[str, ...] = ()
    quantization: str = "none"
    epochs: float = 0.0
    batch_size: int = 0
    gradient_accumulation_steps: int = 0
    learning_rate: float = 0.0
    warmup_ratio: float = 0.0
    max_seq_length: int = 0
    lora_r: int = 0
    lora_alpha: int = 0
    lora_dropout: float = 0.0

    def train_options(self, lora: bool = True) -> dict[str, Any]:
        """Keyword arguments of Client.train with these settings (with LoRA unless lora=False)."""
        options: dict[str, Any] = {
            "task": self.task, "epochs": self.epochs, "batch_size": self.batch_size,
            "gradient_accumulation_steps": self.gradient_accumulation_steps, "learning_rate": self.learning_rate,
            "warmup_ratio": self.warmup_ratio, "max_seq_length": self.max_seq_length, "quantization": self.quantization}
        if lora:
            options["lora"] = {"r": self.lora_r, "alpha": self.lora_alpha, "dropout": self.lora_dropout}
        return options


@dataclass(frozen=True)
class Hardware:
    """The machine; profile is ModelForge's: "cpu" (no accelerator), "low_end", "mid_range" or "high_end". Memory
    and disk in bytes; disk_free/disk_total are the model store's filesystem's; recommendations: one per task."""

    device: str = ""
    accelerator: str = ""
    accelerator_memory_total: int = 0
    accelerator_memory_free: int = 0
    ram_total: int = 0
    ram_available: int = 0
    cpu_cores: int = 0
    profile: str = ""
    recommendation: str = ""
    disk_free: int = 0
    disk_total: int = 0
    accelerator_count: int = 0
    driver_version: str = ""
    cuda_version: str = ""
    recommendations: tuple[Recommendation, ...] = ()

    def recommended(self, task: str = "text-generation") -> Recommendation | None:
        """The recommendation for a task ("text-generation", "summarization", "extractive-question-answering")."""
        return next((r for r in self.recommendations if r.task == task), None)


@dataclass(frozen=True)
class Load:
    in_flight: int = 0
    queue_depth: int = 0
    max_concurrency: int = 0
    max_queue: int = 0


@dataclass(frozen=True)
class EndpointStatus:
    """One backend endpoint as the gateway sees it: health ("SERVING", ...), breaker ("closed", ...) and what it
    last reported."""

    address: str
    health: str
    breaker: str
    capabilities: Capabilities


@dataclass(frozen=True)
class Capabilities:
    """What an endpoint can do now; for the gateway, `endpoints` lists every backend behind it."""

    backend: str
    version: str = ""
    instance_id: str = ""
    available: bool = False
    reason: str = ""
    rpcs: tuple[str, ...] = ()
    models: tuple[Model, ...] = ()
    generation: GenerationFeatures = GenerationFeatures()
    training: TrainingFeatures = TrainingFeatures()
    hardware: Hardware = Hardware()
    load: Load = Load()
    library_versions: dict[str, str] = field(default_factory=dict)
    endpoints: tuple[EndpointStatus, ...] = ()


@dataclass(frozen=True)
class BackendStatus:
    """One row of `forgeway backends`: a backend endpoint, its health, breaker, load, models and training methods."""

    address: str
    backend: str
    available: bool
    reason: str
    health: str
    breaker: str
    load: Load
    models: tuple[str, ...]
    methods: tuple[str, ...]
    instance_id: str = ""


@dataclass(frozen=True)
class Progress:
    """Training progress at one logging step."""

    step: int
    total_steps: int
    epoch: float = 0.0
    loss: float | None = None
    learning_rate: float | None = None
    grad_norm: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    tokens_per_second: float | None = None
    eta_seconds: float | None = None


@dataclass(frozen=True)
class Artifact:
    """The trained model in the model store; Generate serves it under model_name."""

    model_name: str
    path: str
    format: str


@dataclass(frozen=True)
class Checkpoint:
    step: int
    path: str


@dataclass(frozen=True)
class Fallback:
    """The requested trainer could not run the job; `used` did."""

    requested: str
    used: str
    reason: str


@dataclass(frozen=True)
class JobEvent:
    """One event of a job. kind is "state", "progress", "log", "checkpoint", "fallback" or "artifact"; the field of
    that name is set (state is the new state's name, message its reason or the log line's text)."""

    job_id: str
    sequence: int
    kind: str
    time: datetime | None = None
    state: str | None = None
    message: str = ""
    level: str = ""
    progress: Progress | None = None
    checkpoint: Checkpoint | None = None
    fallback: Fallback | None = None
    artifact: Artifact | None = None

    @property
    def terminal(self) -> bool:
        """True for the state change that ends the job."""
        return self.kind == "state" and self.state in TERMINAL_STATES


@dataclass(frozen=True)
class Job:
    """A training job's record; state is "queued", "running", "succeeded", "failed" or "cancelled"."""

    id: str
    state: str
    backend: str = ""
    base_model: str = ""
    method: str = ""
    created: datetime | None = None
    updated: datetime | None = None
    error: str = ""
    progress: Progress | None = None
    artifact: Artifact | None = None
    last_sequence: int = 0
    suffix: str = ""  # what the tuned model's name was asked to carry (OpenAI's fine-tuning suffix)

    @property
    def done(self) -> bool:
        return self.state in TERMINAL_STATES


@dataclass(frozen=True)
class Dataset:
    """An uploaded dataset; use its id as a training dataset."""

    id: str
    filename: str
    format: str
    size_bytes: int
    sha256: str
    rows: int
    created: datetime | None = None
    purpose: str = ""
