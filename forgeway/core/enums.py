"""One name <-> value table per proto enum; every conversion in the services, gateway, shim and SDK reads these."""

from __future__ import annotations

from collections.abc import Mapping

from forgeway.v1 import common_pb2, datasets_pb2, embed_pb2, generate_pb2, jobs_pb2, plugins_pb2, train_pb2

from .errors import InvalidArgument


def _key(name: str) -> str:
    return name.strip().lower().replace("-", "_")


class EnumTable:
    """The names users type for one proto enum, and the values on the wire.

    `names` maps each canonical name to its value; `aliases` are other spellings users bring ("supervised", "4bit");
    `removed` names values that no longer exist, with what to use instead. Lookups ignore case and '-' vs '_'.
    """

    def __init__(self, field: str, names: Mapping[str, int], aliases: Mapping[str, str] | None = None,
                 removed: Mapping[str, str] | None = None, default: str = ""):
        self.field = field
        self.to_value = dict(names)
        self.default = default
        self._by_key = {_key(n): v for n, v in names.items()}
        self._by_key |= {_key(a): names[n] for a, n in (aliases or {}).items()}
        self.removed = {_key(n): why for n, why in (removed or {}).items()}
        self.to_name = {}
        for name, value in names.items():
            self.to_name.setdefault(value, name)

    @property
    def names(self) -> list[str]:
        return list(self.to_value)

    def name(self, value: int) -> str:
        """The canonical name of a wire value; "" for a value the table does not have (zero, unless it is named)."""
        return self.to_name.get(value, "")

    def get(self, name: str) -> int | None:
        return self._by_key.get(_key(name))

    def why_removed(self, name: str) -> str | None:
        """What to use instead of a name that no longer exists ("ppo"); None for every other name."""
        return self.removed.get(_key(name))

    def value(self, name: str, field: str | None = None) -> int:
        """The wire value of a name as a user typed it; INVALID_ARGUMENT naming the field when there is none."""
        where = field or self.field
        if name is None or not str(name).strip():
            if self.default in self.to_value:
                return self.to_value[self.default]
            raise InvalidArgument(where, f"required; allowed: {', '.join(self.names)}")
        if why := self.why_removed(str(name)):
            raise InvalidArgument(where, f"{name!r}: {why}")
        key = _key(str(name))
        if key not in self._by_key:
            raise InvalidArgument(where, f"unknown value {name!r}; allowed: {', '.join(self.names)}")
        return self._by_key[key]

    def known(self, value: int) -> bool:
        return value in self.to_name


TASK = EnumTable("task", {
    "text-generation": common_pb2.TASK_TEXT_GENERATION,
    "summarization": common_pb2.TASK_SUMMARIZATION,
    "extractive-question-answering": common_pb2.TASK_EXTRACTIVE_QUESTION_ANSWERING,
    "embedding": common_pb2.TASK_EMBEDDING,
    "rerank": common_pb2.TASK_RERANK,
}, aliases={"chat": "text-generation", "text_generation": "text-generation", "qa": "extractive-question-answering",
            "embeddings": "embedding", "feature-extraction": "embedding", "sentence-similarity": "embedding",
            "reranker": "rerank", "text-ranking": "rerank"})

QUANTIZATION = EnumTable("quantization", {
    "none": common_pb2.QUANTIZATION_NONE,
    "nf4": common_pb2.QUANTIZATION_4BIT_NF4,
    "fp4": common_pb2.QUANTIZATION_4BIT_FP4,
    "int8": common_pb2.QUANTIZATION_8BIT,
    "gguf": common_pb2.QUANTIZATION_GGUF,
}, aliases={"4bit": "nf4", "8bit": "int8"}, default="none")
# What a trainer can train in: every quantization but GGUF (an export format, not a training one).
TRAINING_QUANTIZATIONS = ("none", "nf4", "fp4", "int8")

METHOD = EnumTable("method", {
    "sft": train_pb2.TRAINING_METHOD_SFT,
    "dpo": train_pb2.TRAINING_METHOD_DPO,
    "grpo": train_pb2.TRAINING_METHOD_GRPO,
    "kto": train_pb2.TRAINING_METHOD_KTO,
    "orpo": train_pb2.TRAINING_METHOD_ORPO,
    "cpo": train_pb2.TRAINING_METHOD_CPO,
    "rloo": train_pb2.TRAINING_METHOD_RLOO,
    "online_dpo": train_pb2.TRAINING_METHOD_ONLINE_DPO,
    "reward": train_pb2.TRAINING_METHOD_REWARD,
    "counterfact_grpo": train_pb2.TRAINING_METHOD_COUNTERFACT_GRPO,
    "gbmpo": train_pb2.TRAINING_METHOD_GBMPO,
    "pace": train_pb2.TRAINING_METHOD_PACE,
    "nmgrpo": train_pb2.TRAINING_METHOD_NMGRPO,
    "metaes": train_pb2.TRAINING_METHOD_METAES,
}, aliases={"supervised": "sft", "bolt": "pace", "meta_es": "metaes"}, removed={
    "ppo": "TRL removed PPO; the nearest methods are grpo and rloo (online RL) or dpo (offline preferences)",
})

BACKEND = EnumTable("backend", {
    "auto": train_pb2.TRAINING_BACKEND_UNSPECIFIED,
    "trl": train_pb2.TRAINING_BACKEND_TRL,
    "unsloth": train_pb2.TRAINING_BACKEND_UNSLOTH,
}, default="auto")

PRECISION = EnumTable("hyperparameters.precision", {
    "auto": train_pb2.PRECISION_UNSPECIFIED,
    "fp32": train_pb2.PRECISION_FP32,
    "fp16": train_pb2.PRECISION_FP16,
    "bf16": train_pb2.PRECISION_BF16,
}, default="auto")

EXPORT_FORMAT = EnumTable("output.formats", {
    "adapter": train_pb2.EXPORT_FORMAT_ADAPTER,
    "merged": train_pb2.EXPORT_FORMAT_MERGED,
    "gguf": train_pb2.EXPORT_FORMAT_GGUF,
})

JOB_STATE = EnumTable("state", {
    "queued": jobs_pb2.JOB_STATE_QUEUED,
    "running": jobs_pb2.JOB_STATE_RUNNING,
    "succeeded": jobs_pb2.JOB_STATE_SUCCEEDED,
    "failed": jobs_pb2.JOB_STATE_FAILED,
    "cancelled": jobs_pb2.JOB_STATE_CANCELLED,
}, aliases={"canceled": "cancelled"})
FINISHED_STATES = frozenset({jobs_pb2.JOB_STATE_SUCCEEDED, jobs_pb2.JOB_STATE_FAILED, jobs_pb2.JOB_STATE_CANCELLED})

FINISH_REASON = EnumTable("finish_reason", {
    "stop": generate_pb2.FINISH_REASON_STOP,
    "length": generate_pb2.FINISH_REASON_LENGTH,
    "stop_sequence": generate_pb2.FINISH_REASON_STOP_SEQUENCE,
    "cancelled": generate_pb2.FINISH_REASON_CANCELLED,
    "error": generate_pb2.FINISH_REASON_ERROR,
    "tool_calls": generate_pb2.FINISH_REASON_TOOL_CALLS,
})

TOOL_CHOICE = EnumTable("tool_choice", {
    "none": generate_pb2.TOOL_CHOICE_MODE_NONE,
    "auto": generate_pb2.TOOL_CHOICE_MODE_AUTO,
    "required": generate_pb2.TOOL_CHOICE_MODE_REQUIRED,
    "function": generate_pb2.TOOL_CHOICE_MODE_FUNCTION,
})

# Which end of a too-long embedding or rerank input loses tokens; "none" refuses the input.
TRUNCATION = EnumTable("truncation", {
    "none": embed_pb2.TRUNCATION_UNSPECIFIED,
    "end": embed_pb2.TRUNCATION_END,
    "start": embed_pb2.TRUNCATION_START,
}, aliases={"right": "end", "left": "start"}, default="none")

DATASET_FORMAT = EnumTable("format", {
    "jsonl": datasets_pb2.DATASET_FORMAT_JSONL,
    "json": datasets_pb2.DATASET_FORMAT_JSON,
    "csv": datasets_pb2.DATASET_FORMAT_CSV,
    "parquet": datasets_pb2.DATASET_FORMAT_PARQUET,
})

# LlamaForge's kinds of gateway plugin (its "commands" run in the client and have no value here).
PLUGIN_KIND = EnumTable("kind", {
    "preprocessing": plugins_pb2.PLUGIN_KIND_PREPROCESSING,
    "postprocessing": plugins_pb2.PLUGIN_KIND_POSTPROCESSING,
    "tools": plugins_pb2.PLUGIN_KIND_TOOLS,
}, aliases={"preprocessor": "preprocessing", "postprocessor": "postprocessing", "tool": "tools"})
