"""Settings of the llama.cpp service: LlamaForge's per-model parameters, from YAML/flags or LoadModel options."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from forgeway.core.enums import TASK
from forgeway.core.errors import InvalidArgument
from forgeway.core.generation import Task
from forgeway.server.settings import ServiceSettings

# The chat templates llama-server knows by name (`llama-server --help`, --chat-template).
CHAT_TEMPLATES = (
    "bailing", "bailing-think", "bailing2", "chatglm3", "chatglm4", "chatml", "command-r", "deepseek", "deepseek-ocr",
    "deepseek2", "deepseek3", "exaone-moe", "exaone3", "exaone4", "falcon3", "gemma", "gigachat", "glmedge", "gpt-oss",
    "granite", "granite-4.0", "granite-4.1", "grok-2", "hunyuan-dense", "hunyuan-moe", "hunyuan-vl", "kimi-k2",
    "llama2", "llama2-sys", "llama2-sys-bos", "llama2-sys-strip", "llama3", "llama4", "megrez", "minicpm",
    "mistral-v1", "mistral-v3", "mistral-v3-tekken", "mistral-v7", "mistral-v7-tekken", "monarch", "openchat", "orion",
    "pangu-embedded", "phi3", "phi4", "rwkv-world", "seed_oss", "smolvlm", "solar-open", "vicuna", "vicuna-orca",
    "yandex", "zephyr",
)
KvCacheType = Literal["f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "iq4_nl", "q5_0", "q5_1"]
# llama.cpp's pooling types (llama-server --pooling): how token vectors become one vector per input.
Pooling = Literal["none", "mean", "cls", "last", "rank"]
# What llama-server serves: generation, embeddings (--embedding) or reranking (--reranking).
SERVED_TASKS = (Task.TEXT_GENERATION, Task.EMBEDDING, Task.RERANK)


class ModelConfig(BaseModel):
    """One GGUF model: where it is, how llama.cpp loads it, and its generation defaults."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, description="Name requests use.")
    source: str = Field("", description="A .gguf path, a folder holding one, or a model-store name (default: name).")
    aliases: list[str] = Field(default_factory=list, description="Other names it answers to.")
    task: Task = Field(Task.TEXT_GENERATION, description="What it serves: text-generation, embedding (Embed; "
                                                         "llama-server --embedding) or rerank (Rerank; --reranking, "
                                                         "a GGUF with a classification head).")
    pooling: Pooling | None = Field(None, description="Embedding models: how token vectors pool into one (mean, cls, "
                                                       "last); default the GGUF's own pooling type. Rerank models "
                                                       "pool by rank.")
    normalize: bool = Field(True, description="Embedding models: scale vectors to unit length (L2) when a request "
                                              "leaves normalize unset (llama-server's own default).")
    # llama.cpp load parameters (LlamaForge's, with f16_kv's successor kv_cache_type)
    n_ctx: int = Field(2048, ge=0, description="Context length in tokens; 0 takes the GGUF's training context.")
    n_gpu_layers: int = Field(0, ge=-1, description="Layers offloaded to the GPU; -1 offloads all.")
    n_batch: int = Field(512, ge=1, description="Prompt tokens evaluated per batch.")
    n_threads: int | None = Field(None, ge=1, description="Decode threads (default: llama.cpp's choice).")
    n_threads_batch: int | None = Field(None, ge=1, description="Prompt-evaluation threads (default: n_threads).")
    use_mlock: bool = Field(False, description="Lock the weights in RAM.")
    use_mmap: bool = Field(True, description="Memory-map the GGUF file.")
    kv_cache_type: KvCacheType = Field("f16", description="KV cache element type (successor of f16_kv).")
    flash_attn: bool = Field(False, description="Use flash attention where the build supports it.")
    seed: int = Field(-1, ge=-1, le=2**32 - 1, description="Sampling seed when a request sets none; -1 is random.")
    chat_format: str | None = Field(
        None, description="A chat template llama.cpp knows by name (chatml, llama2, llama3, ...), or a Jinja "
                          "template; default the GGUF's own template."
    )
    thinking: Literal["off", "on", "auto"] = Field(
        "off", description="The chat template's thinking switch (enable_thinking) when a request leaves it unset: "
                           "off, on, or auto (on where the template has one; llama-server's --reasoning). llama.cpp "
                           "always gives templates the switch, so unset cannot mean the template's own default.")
    # serving
    instances: int = Field(4, ge=1, le=256, description="Parallel slots of its llama-server (continuous batching: "
                                                        "requests decode together); each slot holds n_ctx tokens.")
    max_queue: int = Field(64, ge=0, description="Requests that may wait for a slot before RESOURCE_EXHAUSTED.")
    cache_reuse: int = Field(256, ge=0, description="Smallest prompt chunk reused from another request's KV cache by "
                                                    "shifting (llama-server --cache-reuse); 0 reuses prefixes only.")
    # generation defaults, taken when a request leaves them unset
    max_tokens: int = Field(256, ge=1, description="Default largest completion, in tokens.")
    temperature: float = Field(0.0, ge=0, le=2, description="Default temperature; 0 is greedy.")
    top_p: float = Field(1.0, gt=0, le=1, description="Default nucleus sampling threshold.")
    top_k: int = Field(0, ge=0, description="Default top-k; 0 disables.")
    min_p: float = Field(0.0, ge=0, le=1, description="Default min-p.")
    repeat_penalty: float = Field(1.0, gt=0, description="Default repetition penalty; 1 disables.")

    @field_validator("chat_format")
    @classmethod
    def _known_template(cls, value: str | None) -> str | None:
        """A built-in template name llama.cpp knows, or a Jinja template (it has tags); anything else is a typo."""
        if value is None or "{{" in value or "{%" in value or value in CHAT_TEMPLATES:
            return value
        raise ValueError(f"unknown chat template {value!r}: name one of llama.cpp's ({', '.join(CHAT_TEMPLATES)}) "
                         "or give a Jinja template")

    @field_validator("task", mode="before")
    @classmethod
    def _served_task(cls, value: Any) -> Any:
        """A task name as users type it (core's TASK table: "embeddings", "reranker", ...), one llama.cpp serves."""
        if isinstance(value, str) and not isinstance(value, Task):
            try:
                value = Task.from_proto(TASK.value(value))
            except InvalidArgument as exc:
                raise ValueError(exc.message) from None
        if value not in SERVED_TASKS:
            raise ValueError(f"llama.cpp serves {', '.join(t.value for t in SERVED_TASKS)}, not {Task(value).value}")
        return value

    @model_validator(mode="after")
    def _pooling_fits_task(self) -> ModelConfig:
        """Pooling is for embedding (one vector per input: mean, cls, last) and rerank (rank) models only."""
        if self.pooling is None:
            return self
        if self.task == Task.TEXT_GENERATION:
            raise ValueError("pooling applies to embedding and rerank models; set task: embedding or rerank")
        if self.task == Task.RERANK and self.pooling != "rank":
            raise ValueError(f"a rerank model pools by rank, not {self.pooling}")
        if self.task == Task.EMBEDDING and self.pooling == "none":
            raise ValueError("pooling none gives a vector per token; an embedding is one vector per input: "
                             "mean, cls or last")
        if self.task == Task.EMBEDDING and self.pooling == "rank":
            raise ValueError("rank pooling scores query-document pairs; serve such a model with task: rerank")
        return self

    @model_validator(mode="before")
    @classmethod
    def _f16_kv(cls, data: Any) -> Any:
        """LlamaForge's f16_kv (dropped by llama.cpp) maps onto kv_cache_type: true -> f16, false -> f32."""
        if isinstance(data, dict) and "f16_kv" in data:
            data = dict(data)
            flag = data.pop("f16_kv")
            if isinstance(flag, str):
                flag = flag.strip().lower() not in ("0", "false", "no", "off")
            data.setdefault("kv_cache_type", "f16" if flag else "f32")
        return data

    @classmethod
    def from_options(cls, name: str, source: str, options: dict[str, str], task: Task | None = None) -> ModelConfig:
        """Build from ModelService.LoadModel: options are strings, validated like settings; the request's task
        (when set) is the model's task."""
        for key in ("name", "source"):
            if key in options:
                raise InvalidArgument(f"options.{key}", f"set {key} in the request, not in options")
        fields = dict(options)
        if task is not None:
            fields.setdefault("task", task)
        if "aliases" in fields:
            fields["aliases"] = [a.strip() for a in fields["aliases"].split(",") if a.strip()]
        try:
            config = cls(name=name, source=source, **fields)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"]) or "pooling"  # a whole-model check is about pooling
            raise InvalidArgument(f"options.{where}", err["msg"].removeprefix("Value error, ")) from None
        if task is not None and config.task != task:
            raise InvalidArgument("options.task", f"{options['task']!r} contradicts the request's task {task.value}")
        return config



class LlamaCppSettings(ServiceSettings):
    """Settings of the llama.cpp backend. Models load at start from --models (JSON) or a YAML `models:` list, e.g.
    --models '[{"name": "demo", "source": "demo", "n_ctx": 2048, "n_threads": 4}]', and at run time by LoadModel."""

    models: list[ModelConfig] = Field(
        default_factory=list, description="GGUF models loaded at start, each with its llama.cpp parameters."
    )
    model_roots: list[Path] = Field(
        default_factory=list,
        description="Folders LoadModel may read GGUF files from, besides FORGEWAY_HOME/models.",
    )
    server_binary: Path | None = Field(
        None, description="The llama-server to run (default: FORGEWAY_LLAMA_SERVER, else the one `make venv` built "
                          "into the virtualenv's bin, else PATH). Point it at a CUDA or Metal build to offload.")
    warmup: bool = Field(True, description="Let llama-server run a warm-up decode after loading, before serving.")
    verbose: bool = Field(False, description="llama-server logs every request (its output goes to "
                                             "FORGEWAY_HOME/logs/llama-server-NAME.log either way).")
