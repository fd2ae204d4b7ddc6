"""The Train page's logic apart from its widgets: providers and hardware from the gateway's Capabilities, the
recommended settings, the form's values as a TrainRequest, and the trainer's violations sorted by section."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from forgeway.core.enums import BACKEND, METHOD, QUANTIZATION, TASK, TRAINING_QUANTIZATIONS
from forgeway.core.modelstore import PROVIDER_OF_TRAINER
from forgeway.v1 import capabilities_pb2, common_pb2, train_pb2

# ModelForge's tasks, as Forgeway names them, with the labels the page shows.
TASKS = (("Text generation", "text-generation"), ("Summarization", "summarization"),
         ("Extractive question answering", "extractive-question-answering"))
# ModelForge's providers (its vocabulary) -> the Forgeway trainer service that trains for each.
TRAINER_OF_PROVIDER = {provider: trainer for trainer, provider in PROVIDER_OF_TRAINER.items()}
FALLBACK_TRAINER = "trl"
# The settings form: field -> (TrainRequest field path, whole number). The path is what the trainer's violations name.
SETTINGS = {
    "epochs": ("hyperparameters.epochs", False),
    "max_steps": ("hyperparameters.max_steps", True),
    "batch_size": ("hyperparameters.batch_size", True),
    "gradient_accumulation_steps": ("hyperparameters.gradient_accumulation_steps", True),
    "learning_rate": ("hyperparameters.learning_rate", False),
    "max_seq_length": ("hyperparameters.max_seq_length", True),
    "lora_r": ("lora.r", True),
    "lora_alpha": ("lora.alpha", True),
    "lora_dropout": ("lora.dropout", False),
}
UINT32_MAX = 2**32 - 1


@dataclass(frozen=True)
class Provider:
    """A ModelForge provider as the gateway sees its trainer now."""

    name: str
    trainer: str
    available: bool
    reason: str
    methods: tuple[str, ...] = ()
    quantizations: tuple[str, ...] = ()
    hardware: capabilities_pb2.Hardware | None = None

    def describe(self) -> str:
        if self.available:
            return f"**{self.name}** (the {self.trainer} trainer): available"
        fallback = "" if self.trainer == FALLBACK_TRAINER else \
            f"; a job asking for {self.name} falls back to {FALLBACK_TRAINER}, so pick huggingface"
        return f"**{self.name}** (the {self.trainer} trainer): unavailable: {self.reason}{fallback}"


def providers(caps: capabilities_pb2.CapabilitiesResponse) -> dict[str, Provider]:
    """Every ModelForge provider with its trainer's availability (with the reason when not) from the gateway."""
    found = {}
    for name, trainer in TRAINER_OF_PROVIDER.items():
        endpoints = [e for e in caps.endpoints if e.capabilities.backend == trainer]
        usable = [e for e in endpoints if e.health == "SERVING" and e.breaker != "open"
                  and e.capabilities.availability.available]
        if usable:
            reason = "available"
        elif endpoints:
            reason = "; ".join(_why_not(e) for e in endpoints)
        else:
            reason = f"no {trainer} trainer behind this gateway"
        chosen = (usable or endpoints or [None])[0]
        training = chosen.capabilities.training if chosen else capabilities_pb2.TrainingFeatures()
        found[name] = Provider(
            name, trainer, bool(usable), reason,
            methods=tuple(METHOD.name(m) for m in training.methods if METHOD.known(m)),
            quantizations=tuple(q for q in (QUANTIZATION.name(v) for v in training.quantizations)
                                if q in TRAINING_QUANTIZATIONS),
            hardware=chosen.capabilities.hardware if chosen and chosen.capabilities.HasField("hardware") else None,
        )
    return found


def _why_not(endpoint: capabilities_pb2.EndpointStatus) -> str:
    if endpoint.health != "SERVING":
        return f"{endpoint.address} is {endpoint.health or 'UNKNOWN'}"
    if endpoint.breaker == "open":
        return f"{endpoint.address}: circuit breaker open"
    return f"{endpoint.address}: {endpoint.capabilities.availability.reason or 'not available'}"


def methods_for(provider: Provider, task: str) -> list[str]:
    """The methods the provider's trainer runs for a task: the trainers train summarization and extractive QA with SFT
    only (services/trl/plan.py); text generation with every method the trainer lists."""
    if task != "text-generation":
        return [m for m in provider.methods if m == "sft"]
    return list(provider.methods)


def recommendation(hardware: capabilities_pb2.Hardware | None, task: str) -> capabilities_pb2.Recommendation | None:
    """The trainer's recommendation (ModelForge's, for its hardware profile) for a task."""
    if hardware is None:
        return None
    wanted = TASK.value(task)
    return next((r for r in hardware.recommendations if r.task == wanted), None)


def base_models(rec: capabilities_pb2.Recommendation | None, caps: capabilities_pb2.CapabilitiesResponse,
                task: str) -> list[str]:
    """Base model choices: the recommended model and its alternatives first, then the models the gateway knows of
    for the task (store entries the inference services list)."""
    wanted = TASK.value(task)
    names = [rec.model, *rec.alternatives] if rec is not None else []
    names += sorted(m.name for m in caps.models if m.task in (wanted, common_pb2.TASK_UNSPECIFIED))
    return list(dict.fromkeys(n for n in names if n))


def recommended_settings(rec: capabilities_pb2.Recommendation | None) -> dict[str, object]:
    """The settings form pre-filled from a recommendation (epochs, batch size, accumulation, learning rate, maximum
    sequence length, LoRA, quantization); without one, empty fields and the trainer's defaults."""
    if rec is None:
        return {name: None for name in SETTINGS} | {"use_lora": True, "quantization": "none"}
    hp, lora = rec.hyperparameters, rec.lora
    quantization = QUANTIZATION.name(rec.quantization.quantization) or "none"
    return {
        "epochs": round(hp.epochs, 4) if hp.HasField("epochs") else None,
        "max_steps": hp.max_steps if hp.HasField("max_steps") else None,
        "batch_size": hp.batch_size if hp.HasField("batch_size") else None,
        "gradient_accumulation_steps": hp.gradient_accumulation_steps if hp.HasField("gradient_accumulation_steps")
        else None,
        "learning_rate": float(f"{hp.learning_rate:.6g}") if hp.HasField("learning_rate") else None,
        "max_seq_length": hp.max_seq_length if hp.HasField("max_seq_length") else None,
        "use_lora": rec.HasField("lora"),
        "lora_r": lora.r or None, "lora_alpha": lora.alpha or None,
        "lora_dropout": float(f"{lora.dropout:.4g}") if rec.HasField("lora") else None,
        "quantization": quantization if quantization in TRAINING_QUANTIZATIONS else "none",
    }


@dataclass
class TrainForm:
    """What the page's fields hold."""

    task: str
    method: str
    provider: str
    base_model: str
    settings: Mapping[str, object]
    use_lora: bool = True
    quantization: str = "none"
    dataset_id: str = ""
    model_name: str = ""
    problems: list[tuple[str, str]] = field(default_factory=list)

    def request(self) -> train_pb2.TrainRequest:
        """The TrainRequest the form stands for. Values the wire cannot carry (a negative whole number) are listed in
        `problems` by field and left out; every other check is the trainer's."""
        req = train_pb2.TrainRequest(base_model=(self.base_model or "").strip(), task=TASK.value(self.task))
        req.method = METHOD.to_value.get(self.method or "", 0)
        req.backend = BACKEND.to_value[TRAINER_OF_PROVIDER.get(self.provider, FALLBACK_TRAINER)]
        self.problems = []
        for name, (path, whole) in SETTINGS.items():
            if name.startswith("lora_") and not self.use_lora:
                continue
            value = self.settings.get(name)
            if value is None:
                continue
            if whole and not (0 <= value <= UINT32_MAX and float(value).is_integer()):
                self.problems.append((path, f"must be a whole number from 0 to {UINT32_MAX}"))
                continue
            message, attr = path.split(".")
            setattr(getattr(req, message), attr, int(value) if whole else float(value))
        if self.use_lora and not req.HasField("lora"):
            req.lora.SetInParent()
        if self.quantization and self.quantization != "none":
            req.quantization.quantization = QUANTIZATION.value(self.quantization, "quantization.quantization")
        if self.dataset_id:
            req.dataset.dataset_id = self.dataset_id
        if self.model_name and self.model_name.strip():
            req.output.model_name = self.model_name.strip()
        return req


def split_violations(violations: list[tuple[str, str]], has_dataset: bool) -> tuple[list[str], list[str]]:
    """(settings lines, dataset lines) of a trainer's violations, "field: why" each; the missing dataset is not
    listed before one was uploaded (the dataset section asks for it)."""
    settings, dataset = [], []
    for where, why in violations:
        if where.startswith(("dataset", "eval_dataset")):
            if has_dataset or where != "dataset.source":
                dataset.append(f"{where}: {why}")
        else:
            settings.append(f"{where}: {why}")
    return settings, dataset
