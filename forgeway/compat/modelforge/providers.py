"""ModelForge's fine-tuning providers (its ProviderRegistry) answered by Forgeway's trainers behind a gateway.

ModelForge's `ProviderRegistry` is a class whose providers check their own imports; here a registry is an instance
reading one gateway (or trainer), since availability is the trainer service's: `huggingface` trains on the trl
service, `unsloth` on the unsloth service, each available when that service reports itself available in the
gateway's Capabilities (with its reason when not). Method names, result shapes and the two errors are ModelForge's:

    registry = ProviderRegistry(target="localhost:50051")
    registry.list_all()        # [{"name", "available", "supported_tasks", "reason", "backend"}]
    registry.list_available()  # ["huggingface"]
    provider = registry.create_provider("huggingface", "my-base-model", "summarization", "low_end")
    report = provider.train("data.jsonl", {"num_train_epochs": 1, "lora_r": 8})

A provider's `train` sends one TrainRequest through the gateway with the provider's trainer as backend preference
(and fallback to another trainer only when allowed); the settings are checked where every training request is, so
a bad one comes back as SettingsError naming each setting, all at once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from forgeway.client import Client, InvalidArgumentError
from forgeway.client.types import Capabilities, Job, JobEvent

TASKS = ("text-generation", "summarization", "extractive-question-answering")
PROFILES = ("low_end", "mid_range", "high_end", "cpu")
MODEL_CLASSES = {"text-generation": "AutoPeftModelForCausalLM", "summarization": "AutoPeftModelForSeq2SeqLM",
                 "extractive-question-answering": "AutoPeftModelForQuestionAnswering"}
# ModelForge's strategies as Forgeway methods: its RLHF strategy is DPO; QLoRA is SFT on a 4-bit base.
STRATEGIES = {"sft": "sft", "qlora": "sft", "dpo": "dpo", "rlhf": "dpo"}
# ModelForge setting -> Forgeway train option (Client.train's keyword), and back for the fields of a violation.
SETTINGS = {"num_train_epochs": "epochs", "max_steps": "max_steps", "per_device_train_batch_size": "batch_size",
            "gradient_accumulation_steps": "gradient_accumulation_steps", "learning_rate": "learning_rate",
            "lr_scheduler_type": "lr_scheduler", "warmup_ratio": "warmup_ratio", "max_seq_length": "max_seq_length",
            "seed": "seed", "save_steps": "save_steps"}
FIELDS = {f"hyperparameters.{option}": name for name, option in SETTINGS.items()} | {
    "hyperparameters.lr_scheduler": "lr_scheduler_type", "hyperparameters.precision": "fp16/bf16",
    "lora.r": "lora_r", "lora.alpha": "lora_alpha", "lora.dropout": "lora_dropout", "lora": "lora_r",
    "quantization.quantization": "bnb_4bit_quant_type", "quantization": "bnb_4bit_quant_type",
    "quantization.double_quant": "use_nested_quant", "method": "strategy", "task": "task"}
LORA = {"lora_r": "r", "lora_alpha": "alpha", "lora_dropout": "dropout"}
QUANTIZATION = ("quantization", "use_4bit", "use_8bit", "bnb_4bit_quant_type", "use_nested_quant")
# ModelForge settings Forgeway's trainers choose themselves (optimizer, logging, device placement, ...): accepted
# and reported back as ignored, so a ModelForge settings form works unchanged.
IGNORED = {"optim", "weight_decay", "max_grad_norm", "group_by_length", "packing", "gradient_checkpointing",
           "logging_steps", "per_device_eval_batch_size", "bnb_4bit_compute_dtype", "bnb_4bit_use_quant_type",
           "bnb_8bit_quant_type", "load_in_4bit", "load_in_8bit", "device_map", "device", "eval_split", "eval_steps",
           "output_dir", "fine_tuned_name", "is_custom_model", "compute_specs", "task", "model_name", "dataset",
           "provider", "logging_dir", "save_strategy"}


class SettingsError(ValueError):
    """Settings the trainer refused: `violations` holds every (setting, why), by ModelForge's name where it has one."""

    def __init__(self, violations: list[tuple[str, str]]):
        self.violations = violations
        super().__init__("Invalid settings: " + "; ".join(f"{name}: {why}" for name, why in violations))


class BaseProvider:
    """A ModelForge provider: fine-tunes `model_name` for `task` on one Forgeway trainer service, through `client`.

    Args:
        model_name: the base model (hub id, path the trainer may read, or a model-store name).
        task: text-generation, summarization or extractive-question-answering.
        compute_specs: ModelForge's hardware profile (low_end, mid_range, high_end; cpu without an accelerator).
        client: the gateway (or trainer) to train through.
    """

    provider_name: ClassVar[str]
    backend: ClassVar[str]  # the Forgeway trainer service
    supported_tasks: ClassVar[tuple[str, ...]] = TASKS

    def __init__(self, model_name: str, task: str, compute_specs: str, *, client: Client):
        if not model_name:
            raise ValueError("Model name cannot be empty")
        if task not in self.get_supported_tasks():
            raise ValueError(f"{type(self).__name__} supports {self.get_supported_tasks()}, but got '{task}'")
        if compute_specs not in PROFILES:
            raise ValueError(f"Invalid compute specs '{compute_specs}'. Must be one of {list(PROFILES)}")
        self.model_name, self.task, self.compute_specs, self.client = model_name, task, compute_specs, client

    @classmethod
    def get_provider_name(cls) -> str:
        return cls.provider_name

    @classmethod
    def get_supported_tasks(cls) -> list[str]:
        return list(cls.supported_tasks)

    def get_model_class_name(self) -> str:
        """The class ModelForge's playground loads the trained adapter with (as in its modelforge_config.json)."""
        return MODEL_CLASSES[self.task]

    def validate_hyperparameters(self, hyperparameters: Mapping[str, Any]) -> dict[str, Any]:
        """ModelForge settings -> Client.train options (LoRA always on, as in ModelForge); ValueError naming any
        setting ModelForge does not have. Ranges are the trainer's to check (SettingsError from train)."""
        unknown = sorted(set(hyperparameters) - set(SETTINGS) - set(LORA) - set(QUANTIZATION) - IGNORED
                         - {"strategy", "fp16", "bf16"})
        if unknown:
            raise ValueError(f"Unknown settings: {', '.join(unknown)}")
        options: dict[str, Any] = {"task": self.task, "method": _strategy(hyperparameters.get("strategy", "sft"))}
        for name, option in SETTINGS.items():
            value = hyperparameters.get(name)
            if value is not None and not (name in ("max_steps", "max_seq_length") and value == -1) and not (
                    name == "save_steps" and value == 0):
                options[option] = value
        options["lora"] = {LORA[k]: v for k, v in hyperparameters.items() if k in LORA} or True  # True: defaults
        quantization = _quantization(hyperparameters)
        if quantization:
            options["quantization"] = quantization
            options["double_quant"] = bool(hyperparameters.get("use_nested_quant", False))
        elif hyperparameters.get("use_nested_quant"):
            options["double_quant"] = True  # refused by the trainer: nested quantization needs 4-bit
        if hyperparameters.get("fp16") and hyperparameters.get("bf16"):
            raise SettingsError([("fp16/bf16", "choose one of fp16 and bf16")])
        precision = "bf16" if hyperparameters.get("bf16") else "fp16" if hyperparameters.get("fp16") else None
        if precision:
            options["precision"] = precision
        return options

    def train(self, dataset: Any, hyperparameters: Mapping[str, Any] | None = None, *, output_name: str = "",
              description: str = "", allow_fallback: bool = False,
              progress_callback: Callable[[JobEvent], None] | None = None) -> dict[str, Any]:
        """Train through the gateway on this provider's trainer and follow the job to its end; the report:
        job_id, state, provider, backend (the trainer that ran it), fallback, model_name, model_path, error,
        warnings (the trainer's advice on these settings) and ignored_settings."""
        settings = dict(hyperparameters or {})
        options = self.validate_hyperparameters(settings)
        try:
            job = self.client.train(self.model_name, dataset, backend=self.backend, allow_fallback=allow_fallback,
                                    output_name=output_name, description=description, **options)
        except InvalidArgumentError as error:
            raise SettingsError([(FIELDS.get(f, f), why) for f, why in error.field_violations]
                                or [("settings", error.message)]) from None
        events = []
        for event in job.events():
            events.append(event)
            if progress_callback is not None:
                progress_callback(event)
        return _report(self, job.get(), events, sorted(set(settings) & IGNORED))


class HuggingFaceProvider(BaseProvider):
    """ModelForge's default provider: transformers + peft + TRL, here Forgeway's trl trainer."""

    provider_name = "huggingface"
    backend = "trl"


class UnslothProvider(BaseProvider):
    """ModelForge's Unsloth provider (text generation only), here Forgeway's unsloth trainer."""

    provider_name = "unsloth"
    backend = "unsloth"
    supported_tasks = ("text-generation",)


class ProviderRegistry:
    """ModelForge's registry of providers, answering availability from the gateway's Capabilities."""

    def __init__(self, client: Client | None = None, target: str | None = None):
        self.client = client or Client(target)
        self._providers: dict[str, type[BaseProvider]] = {}
        for provider in (HuggingFaceProvider, UnslothProvider):
            self.register(provider)

    def register(self, provider_class: type[BaseProvider]) -> None:
        """Add a provider class (a BaseProvider naming its trainer service in `backend`)."""
        if not (isinstance(provider_class, type) and issubclass(provider_class, BaseProvider)):
            raise TypeError(f"{provider_class!r} is not a BaseProvider subclass")
        self._providers[provider_class.get_provider_name()] = provider_class

    def get(self, provider_name: str) -> type[BaseProvider] | None:
        return self._providers.get(provider_name)

    def is_available(self, provider_name: str) -> bool:
        provider = self.get(provider_name)
        return provider is not None and _availability(self.client.capabilities(), provider.backend)[0]

    def list_all(self) -> list[dict[str, Any]]:
        """Every registered provider: name, available, supported_tasks (ModelForge's keys), plus the reason it is
        unavailable and the Forgeway trainer service behind it."""
        caps = self.client.capabilities()
        rows = []
        for name, provider in self._providers.items():
            available, reason = _availability(caps, provider.backend)
            rows.append({"name": name, "available": available, "supported_tasks": provider.get_supported_tasks(),
                         "reason": reason, "backend": provider.backend})
        return rows

    def list_available(self) -> list[str]:
        return [row["name"] for row in self.list_all() if row["available"]]

    def create_provider(self, provider_name: str, model_name: str, task: str, compute_specs: str) -> BaseProvider:
        """A provider instance; ValueError when the name is not registered or its trainer is not available."""
        provider = self.get(provider_name)
        if provider is None:
            raise ValueError(f"Provider '{provider_name}' not found")
        if not self.is_available(provider_name):
            raise ValueError(f"Provider '{provider_name}' is not available. Please install required dependencies.")
        return provider(model_name, task, compute_specs, client=self.client)


def _availability(caps: Capabilities, backend: str) -> tuple[bool, str]:
    """Whether a `backend` trainer behind this endpoint (or the endpoint itself) is available, and why not."""
    found = [e.capabilities for e in caps.endpoints if e.capabilities.backend == backend]
    if caps.backend == backend:
        found.append(caps)
    if not found:
        return False, f"no {backend} trainer behind this gateway"
    if any(c.available for c in found):
        return True, ""
    return False, "; ".join(dict.fromkeys(c.reason or "unavailable" for c in found))


def _strategy(name: str) -> str:
    if name not in STRATEGIES:
        raise SettingsError([("strategy", f"Invalid strategy: {name}. Must be one of {list(STRATEGIES)}")])
    return STRATEGIES[name]


def _quantization(settings: Mapping[str, Any]) -> str:
    """ModelForge's quantization settings as a Forgeway quantization name ("" for none)."""
    chosen = settings.get("quantization")
    four_bit = chosen == "4bit" or (chosen is None and settings.get("use_4bit"))
    eight_bit = chosen == "8bit" or (chosen is None and settings.get("use_8bit"))
    if settings.get("strategy") == "qlora" or four_bit:
        return str(settings.get("bnb_4bit_quant_type") or "nf4")
    return "int8" if eight_bit else ""


def _report(provider: BaseProvider, job: Job, events: list[JobEvent], ignored: list[str]) -> dict[str, Any]:
    fallback = next((e.fallback for e in events if e.fallback is not None), None)
    return {
        "job_id": job.id,
        "state": job.state,
        "provider": provider.get_provider_name(),
        "backend": job.backend,
        "fallback": fallback.__dict__ if fallback else None,
        "model_name": job.artifact.model_name if job.artifact else None,
        "model_path": job.artifact.path if job.artifact else None,
        "error": job.error or None,
        "warnings": [e.message for e in events if e.kind == "log" and e.level == "warning"],
        "ignored_settings": ignored,
    }
