"""Loading transformers models: where from (path, store, hub), which class for the task, device, dtype, adapters."""

from __future__ import annotations

import contextlib
import inspect
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForQuestionAnswering,
    AutoModelForSeq2SeqLM,
    AutoTokenizer,
)

from forgeway.core.errors import InvalidArgument, NotFound, Unsupported
from forgeway.core.generation import Task

from . import structured
from .encoder_config import encoder_task
from .encoders import ENCODER_TASKS, LoadedEncoder, load_encoder
from .families import ReplyFormat, reply_format
from .load_options import LoadOptions
from forgeway.core.modelstore import ModelStore, StoredModel, confine
from .text import IncrementalText, TokenBytes

MODEL_CLASSES = {
    Task.TEXT_GENERATION: AutoModelForCausalLM,
    Task.SUMMARIZATION: AutoModelForSeq2SeqLM,
    Task.EXTRACTIVE_QA: AutoModelForQuestionAnswering,
}
# The peft task_type of an adapter each task serves (as the trainers write it).
PEFT_TASK_TYPES = {
    Task.TEXT_GENERATION: "CAUSAL_LM",
    Task.SUMMARIZATION: "SEQ_2_SEQ_LM",
    Task.EXTRACTIVE_QA: "QUESTION_ANS",
}
BASE = "__base__"  # peft's name for "no adapter" in a mixed batch
UNBOUNDED = 1_000_000


@dataclass
class Source:
    """Where a model's files are: a folder or hub id, plus its store entry when it came from the store."""

    location: str
    entry: StoredModel | None = None

    @property
    def is_adapter(self) -> bool:
        return Path(self.location, "adapter_config.json").is_file()

    def adapter_base(self) -> str | None:
        if self.entry is not None and self.entry.base_model:
            return self.entry.base_model
        try:
            return json.loads(Path(self.location, "adapter_config.json").read_text()).get("base_model_name_or_path")
        except (OSError, ValueError):
            return None


def resolve(path: str, store: ModelStore, roots: list[Path] | None = None) -> Source:
    """A model-store name, else a local folder, else (where a hub is reachable) a hub id.

    With `roots` (LoadModel), a local folder must lie under one of them (PERMISSION_DENIED) and hold a transformers
    model or a peft adapter (INVALID_ARGUMENT naming `source`); models the settings name are trusted.
    """
    entry = store.get(path)
    if entry is not None:
        if not entry.loadable:
            raise InvalidArgument("source", f"model-store entry {path!r} holds no transformers weights or adapter")
        return Source(str(entry.path.resolve()), entry)
    local = Path(path).expanduser()
    if path.startswith((".", "/", "~")) or local.is_dir():
        folder = confine(local, roots, "source") if roots is not None else local.resolve()
        if not folder.is_dir():
            raise NotFound("model path", path)
        if not (folder / "config.json").is_file() and not (folder / "adapter_config.json").is_file():
            raise InvalidArgument("source", f"{path} holds no transformers model (config.json) or peft adapter "
                                            "(adapter_config.json)")
        return Source(str(folder))
    if path.count("/") > 1:
        raise NotFound("model path", path)
    return Source(path)


def read_config(location: str, options: LoadOptions):
    """The model's config: a folder transformers cannot read is INVALID_ARGUMENT, a hub id it cannot get NOT_FOUND."""
    try:
        return AutoConfig.from_pretrained(location, **options.hub)
    except (OSError, ValueError) as exc:
        if not options.trust_remote_code and "auto_map" in _config_json(location):
            raise InvalidArgument("options.trust_remote_code", f"{location} ships its own model code (config.json "
                                  "auto_map): loading it needs trust_remote_code=true, which the operator allows "
                                  "with the hf setting allow_remote_code") from None
        if Path(location).is_dir():
            why = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise InvalidArgument("source", f"{location} holds no model transformers can read: {why}") from None
        if isinstance(exc, OSError):  # not on the hub, or offline and not in the hub cache
            raise NotFound("model", location) from None
        raise


def detect_task(config) -> Task:
    """The task a config implies: QA heads, encoder-decoders (summarization), else text generation."""
    if any(a.endswith("ForQuestionAnswering") for a in config.architectures or []):
        return Task.EXTRACTIVE_QA
    if getattr(config, "is_encoder_decoder", False):
        return Task.SUMMARIZATION
    return Task.TEXT_GENERATION


def _config_json(location: str) -> dict:
    try:
        found = json.loads(Path(location, "config.json").read_text())
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def quantization_config(quantization: str, device: torch.device):
    """bitsandbytes settings; 0.50 runs 4-bit and 8-bit on CPU too (slowly), so only a missing package refuses."""
    if quantization == "none":
        return None
    try:
        import bitsandbytes  # noqa: F401
        from transformers import BitsAndBytesConfig
    except ImportError:
        raise Unsupported("quantization", "hf", "bitsandbytes is not installed") from None
    warnings.filterwarnings("ignore", message="MatMul8bitLt: inputs will be cast")  # once per forward on CPU
    if quantization == "int8":
        return BitsAndBytesConfig(load_in_8bit=True)
    compute = torch.bfloat16 if device.type == "cuda" else torch.float32
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=quantization, bnb_4bit_compute_dtype=compute)


@dataclass
class LoadedModel:
    """A model ready to run, with what generation needs to know about it."""

    source: str
    task: Task
    model: torch.nn.Module
    tokenizer: object
    device: torch.device
    context_length: int
    quantization: str = "none"
    adapters: dict[str, str] = field(default_factory=dict)
    eos: frozenset[int] = frozenset()
    suppress: list[int] = field(default_factory=list)
    cache_arg: str = "past_key_values"
    keeps_logits: bool = False  # forward takes logits_to_keep
    vocab_size: int = 0
    grammar: structured.GrammarCompiler | None = None
    reply: ReplyFormat = field(default_factory=ReplyFormat)

    def __post_init__(self):
        self.token_bytes = TokenBytes(self.tokenizer)
        if self.task == Task.TEXT_GENERATION:
            self.reply = reply_format(self.tokenizer)

    @property
    def chat(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))

    def text(self, context: list[int], parsed: bool = False) -> IncrementalText:
        """Incremental decoding; for a parsed reply, keeping the special tokens that delimit its calls."""
        return IncrementalText(self.tokenizer, context, self.reply.drop if parsed else frozenset())

    def add_adapter(self, name: str, path: str) -> None:
        """Load a peft LoRA adapter under name (call between forward passes). peft picks the wrapper from the
        adapter's task_type (CAUSAL_LM, SEQ_2_SEQ_LM, QUESTION_ANS); a QA adapter carries its trained qa_outputs head
        (modules_to_save), swapped in with the adapter."""
        from peft import PeftModel

        try:
            kind = json.loads(Path(path, "adapter_config.json").read_text()).get("task_type")
        except (OSError, ValueError):
            kind = None
        if kind and kind != PEFT_TASK_TYPES[self.task]:
            raise InvalidArgument("source", f"adapter {name!r} was trained for peft task {kind}, but its base serves "
                                            f"{self.task.value} ({PEFT_TASK_TYPES[self.task]})")

        if isinstance(self.model, PeftModel):
            self.model.load_adapter(path, adapter_name=name)
        else:
            self.model = PeftModel.from_pretrained(self.model, path, adapter_name=name).eval()
        self.adapters[name] = path

    @property
    def network(self) -> torch.nn.Module:
        """The transformers model itself, its LoRA layers in place: serial tasks call it directly, since peft's QA
        wrapper drops token_type_ids on the way in."""
        return self.model.get_base_model() if self.adapters else self.model

    def running(self, adapter: str):
        """The context one request of a serial task (summarization, QA) runs in: its adapter active, or with none the
        base model alone (every adapter layer and saved head off)."""
        if not self.adapters:
            return contextlib.nullcontext()
        if not adapter:
            return self.model.disable_adapter()
        self.model.set_adapter(adapter)
        return contextlib.nullcontext()

    def remove_adapter(self, name: str) -> None:
        """Drop an adapter (between forward passes); without adapters left the plain model comes back."""
        if len(self.adapters) == 1:  # peft cannot run with its last adapter deleted
            from peft.utils import ModulesToSaveWrapper

            for path, module in list(self.model.named_modules()):  # peft's unload would keep a saved QA head
                if isinstance(module, ModulesToSaveWrapper):
                    parent, _, attr = path.rpartition(".")
                    setattr(self.model.get_submodule(parent), attr, module.original_module)
            self.model = self.model.unload()
        else:
            self.model.delete_adapter(name)
        del self.adapters[name]

    def grammar_compiler(self) -> structured.GrammarCompiler:
        if self.grammar is None:
            self.grammar = structured.GrammarCompiler(self.tokenizer, self.vocab_size, sorted(self.eos))
        return self.grammar


def positions(config) -> int | None:
    """The longest sequence the model's config says it holds, where it says."""
    for key in ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def check_context(config, options: LoadOptions, location: str) -> None:
    """A served context may cap the model's own, not exceed it."""
    own = positions(config)
    if options.context_length and own and options.context_length > own:
        raise InvalidArgument(options.context_field, f"{options.context_length} exceeds the {own} positions the model "
                                                     f"at {location} holds")


def context_length(config, tokenizer, override: int | None) -> int:
    if override:
        return override
    own = positions(config)
    if own:
        return own
    limit = getattr(tokenizer, "model_max_length", UNBOUNDED)
    return limit if limit < UNBOUNDED else 2048


def weight_dtype(dtype_name: str, device: torch.device):
    """The dtype weights load in: the one named, else float32 on CPU and the checkpoint's own on CUDA."""
    if dtype_name != "auto":
        return getattr(torch, dtype_name)
    return torch.float32 if device.type == "cpu" else "auto"


def load(source: Source, task: Task | None, quantization: str, options: LoadOptions) -> LoadedModel | LoadedEncoder:
    """Load weights and tokenizer (blocking: run it off the event loop)."""
    config = read_config(source.location, options)
    task = (task or (source.entry.task if source.entry else None) or encoder_task(Path(source.location))
            or detect_task(config))
    check_context(config, options, source.location)
    device = torch.device(options.device)
    if task in ENCODER_TASKS:
        if quantization != "none":
            raise Unsupported("quantization", "hf", f"{task.value} models load unquantized")
        return load_encoder(source.location, task, options.pooling, device, weight_dtype(options.dtype, device),
                            options.context_length, **options.hub)
    if options.pooling:
        raise InvalidArgument("pooling", f"pooling applies to embedding models, not {task.value}")
    kwargs: dict = {"quantization_config": quantization_config(quantization, device),
                    "dtype": weight_dtype(options.dtype, device), **options.hub}
    if kwargs["quantization_config"] is not None:
        kwargs["device_map"] = {"": device.index or 0} if device.type == "cuda" else {"": "cpu"}
    model = MODEL_CLASSES[task].from_pretrained(source.location, **kwargs)
    if kwargs["quantization_config"] is None:
        model = model.to(device)
    model.eval()
    tokenizer = AutoTokenizer.from_pretrained(source.location, **options.hub)
    gen = getattr(model, "generation_config", None)
    eos = _ids(getattr(gen, "eos_token_id", None)) | _ids(tokenizer.eos_token_id)
    forward = inspect.signature(model.forward).parameters
    return LoadedModel(
        source=source.location,
        task=task,
        model=model,
        tokenizer=tokenizer,
        device=device,
        context_length=context_length(config, tokenizer, options.context_length),
        quantization=quantization,
        eos=frozenset(eos),
        suppress=sorted(_ids(getattr(gen, "suppress_tokens", None))),
        cache_arg="cache" if "cache" in forward else "past_key_values",
        keeps_logits="logits_to_keep" in forward,
        vocab_size=_output_size(model) or getattr(model.config, "vocab_size", None) or len(tokenizer),
    )


def _ids(value) -> set[int]:
    if value is None:
        return set()
    return {int(value)} if isinstance(value, int) else {int(v) for v in value}


def _output_size(model) -> int | None:
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    weight = getattr(head, "weight", None)
    return int(weight.shape[0]) if weight is not None else None
