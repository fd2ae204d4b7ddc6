"""TrainSpec: a validated training request, independent of transport; every violation is listed at once."""

from __future__ import annotations

from dataclasses import dataclass, field

from google.protobuf import json_format

from forgeway.core.enums import BACKEND, EXPORT_FORMAT, METHOD, PRECISION, QUANTIZATION, TRAINING_QUANTIZATIONS
from forgeway.core.errors import InvalidArgument
from forgeway.core.generation import TRAINED_TASKS, Task
from forgeway.v1 import common_pb2, train_pb2

# transformers' learning-rate schedules (SchedulerType) a request may name; "" means the trainer's default.
LR_SCHEDULERS = ("linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
                 "inverse_sqrt", "reduce_lr_on_plateau", "cosine_with_min_lr", "cosine_warmup_with_min_lr",
                 "warmup_stable_decay")
FOUR_BIT = ("nf4", "fp4")
# ModelForge's advice, kept as warnings: the largest batch size per device each hardware profile handles (its
# HardwareService.validate_batch_size; a CPU-only machine counts as low end), more epochs than it allowed, and a
# learning rate above what it allowed ("higher learning rates cause exploding gradients").
BATCH_SIZE_BY_PROFILE = {"cpu": 2, "low_end": 2, "mid_range": 4}
MAX_ADVISED_EPOCHS = 30
MAX_ADVISED_LEARNING_RATE = 0.3
# MethodParams' per-algorithm messages (AlignTune's algorithms).
ALGORITHM_PARAMS = ("counterfact", "gbmpo", "pace", "mirror", "meta_es")


@dataclass(frozen=True)
class DatasetSpec:
    kind: str  # path, hub, upload, inline
    value: str = ""
    rows: tuple[dict, ...] = ()
    column_mapping: dict[str, str] = field(default_factory=dict)
    split: str = "train"
    percent: float | None = None
    max_samples: int | None = None
    config_name: str = ""

    @classmethod
    def from_proto(cls, msg: train_pb2.DatasetSource, where: str, errors: list[tuple[str, str]]) -> DatasetSpec | None:
        kind = msg.WhichOneof("source")
        if kind is None:
            errors.append((f"{where}.source", "one of path, hub_name, dataset_id, inline is required"))
            return None
        if msg.HasField("percent") and not 0 < msg.percent <= 100:
            errors.append((f"{where}.percent", "must be in (0, 100]"))
        if msg.HasField("max_samples") and msg.max_samples < 1:
            errors.append((f"{where}.max_samples", "must be at least 1"))
        rows = tuple(json_format.MessageToDict(r) for r in msg.inline.rows) if kind == "inline" else ()
        if kind == "inline" and not rows:
            errors.append((f"{where}.inline.rows", "at least one row is required"))
        value = {"path": msg.path, "hub_name": msg.hub_name, "dataset_id": msg.dataset_id}.get(kind, "")
        if kind != "inline" and not value:
            errors.append((f"{where}.{kind}", "must not be empty"))
        return cls(
            kind={"hub_name": "hub", "dataset_id": "upload"}.get(kind, kind),
            value=value,
            rows=rows,
            column_mapping=dict(msg.column_mapping),
            split=msg.split or "train",
            percent=msg.percent if msg.HasField("percent") else None,
            max_samples=msg.max_samples if msg.HasField("max_samples") else None,
            config_name=msg.config_name,
        )


@dataclass(frozen=True)
class LoraSpec:
    r: int = 8
    alpha: int = 16
    dropout: float = 0.05
    target_modules: tuple[str, ...] = ()


@dataclass(frozen=True)
class TrainSpec:
    base_model: str
    method: str
    task: Task
    dataset: DatasetSpec
    eval_dataset: DatasetSpec | None = None
    epochs: float | None = None
    max_steps: int | None = None
    batch_size: int | None = None
    gradient_accumulation_steps: int | None = None
    learning_rate: float | None = None
    lr_scheduler: str = ""
    warmup_ratio: float | None = None
    max_seq_length: int | None = None
    seed: int | None = None
    precision: str = "auto"
    save_steps: int | None = None
    lora: LoraSpec | None = None
    quantization: str = "none"
    double_quant: bool = False
    beta: float | None = None
    loss_type: str = ""
    num_generations: int | None = None
    max_prompt_length: int | None = None
    max_completion_length: int | None = None
    reward_functions: tuple[tuple[str, float], ...] = ()
    reward_model: str = ""
    output_name: str = ""
    description: str = ""
    export_formats: tuple[str, ...] = ()
    backend: str = "auto"
    allow_fallback: bool = True
    # AlignTune's algorithms' knobs as set in the request: method_params field ("counterfact", "gbmpo", "pace",
    # "mirror", "meta_es") -> {knob: value}; a method reads its own with defaults (services/trl/algorithms).
    algorithm: dict[str, dict] = field(default_factory=dict)
    resume_from: tuple[str, str] | None = None  # (job id, checkpoint name or "" for the latest)
    keep_checkpoint: bool = False

    @classmethod
    def from_proto(cls, msg: train_pb2.TrainRequest) -> TrainSpec:
        errors: list[tuple[str, str]] = []
        if not msg.base_model:
            errors.append(("base_model", "required"))
        if not METHOD.known(msg.method):
            errors.append(("method", f"unknown method {msg.method}; allowed: {', '.join(METHOD.names)}"))
        task = Task.from_proto(msg.task) if msg.task else Task.TEXT_GENERATION
        if task not in TRAINED_TASKS:
            errors.append(("task", f"cannot train task {task.value if task else msg.task}; allowed: "
                                   f"{', '.join(t.value for t in TRAINED_TASKS)}"))
        dataset = DatasetSpec.from_proto(msg.dataset, "dataset", errors)
        eval_dataset = DatasetSpec.from_proto(msg.eval_dataset, "eval_dataset", errors) if msg.HasField("eval_dataset") else None
        hp = msg.hyperparameters

        def opt(message, name: str):
            return getattr(message, name) if message.HasField(name) else None

        checks = [
            ("hyperparameters.epochs", opt(hp, "epochs") is not None and hp.epochs <= 0, "must be > 0"),
            ("hyperparameters.max_steps", opt(hp, "max_steps") is not None and hp.max_steps < 1, "must be at least 1"),
            ("hyperparameters.batch_size", opt(hp, "batch_size") is not None and hp.batch_size < 1, "must be at least 1"),
            ("hyperparameters.gradient_accumulation_steps",
             opt(hp, "gradient_accumulation_steps") is not None and hp.gradient_accumulation_steps < 1, "must be at least 1"),
            ("hyperparameters.learning_rate", opt(hp, "learning_rate") is not None and not 0 < hp.learning_rate < 1,
             "must be in (0, 1)"),
            ("hyperparameters.warmup_ratio", opt(hp, "warmup_ratio") is not None and not 0 <= hp.warmup_ratio < 1,
             "must be in [0, 1)"),
            ("hyperparameters.max_seq_length", opt(hp, "max_seq_length") is not None and hp.max_seq_length < 8,
             "must be at least 8"),
            ("hyperparameters.precision", not PRECISION.known(hp.precision), f"allowed: {', '.join(PRECISION.names)}"),
            ("hyperparameters.lr_scheduler", hp.lr_scheduler not in ("", *LR_SCHEDULERS),
             f"unknown schedule {hp.lr_scheduler!r}; allowed: {', '.join(LR_SCHEDULERS)}"),
        ]
        lora = None
        if msg.HasField("lora"):
            checks += [
                ("lora.r", not 1 <= msg.lora.r <= 256, "must be in [1, 256]"),
                ("lora.alpha", msg.lora.alpha > 1024, "must be at most 1024"),
                ("lora.dropout", not 0 <= msg.lora.dropout < 1, "must be in [0, 1)"),
            ]
            lora = LoraSpec(msg.lora.r, msg.lora.alpha or 2 * msg.lora.r, msg.lora.dropout, tuple(msg.lora.target_modules))
        quant = msg.quantization.quantization if msg.HasField("quantization") else 0
        # Unspecified trains unquantized; an unknown number has no name and is refused.
        quantization = QUANTIZATION.to_name.get(quant or common_pb2.QUANTIZATION_NONE, "")
        trainable = quantization in TRAINING_QUANTIZATIONS
        checks.append(("quantization.quantization", not trainable,
                       f"allowed for training: {', '.join(sorted(TRAINING_QUANTIZATIONS))}"))
        if trainable and quantization != "none" and lora is None:
            errors.append(("lora", "quantized training (QLoRA) needs LoRA settings"))
        if msg.quantization.double_quant and quantization not in FOUR_BIT:
            errors.append(("quantization.double_quant", f"nested quantization applies to 4-bit ({', '.join(FOUR_BIT)}) "
                                                        f"only, not {quantization or 'this quantization'}"))
        mp = msg.method_params
        checks += [
            ("method_params.beta", opt(mp, "beta") is not None and mp.beta <= 0, "must be > 0"),
            ("method_params.num_generations", opt(mp, "num_generations") is not None and mp.num_generations < 2,
             "must be at least 2"),
        ]
        if msg.HasField("resume_from") and not msg.resume_from.job_id:
            errors.append(("resume_from.job_id", "required to resume from a checkpoint"))
        for i, rf in enumerate(mp.reward_functions):
            checks.append((f"method_params.reward_functions[{i}].name", not rf.name, "required"))
        checks.append(("output.formats", not all(EXPORT_FORMAT.known(f) for f in msg.output.formats),
                       f"allowed: {', '.join(EXPORT_FORMAT.names)}"))
        checks.append(("backend", not BACKEND.known(msg.backend), f"allowed: {', '.join(BACKEND.names)}"))
        errors += [(name, why) for name, bad, why in checks if bad]
        if errors:
            (first_field, first_why), *more = errors
            raise InvalidArgument(first_field, first_why, more=more)
        return cls(
            base_model=msg.base_model,
            method=METHOD.name(msg.method),
            task=task,
            dataset=dataset,
            eval_dataset=eval_dataset,
            epochs=opt(hp, "epochs"),
            max_steps=opt(hp, "max_steps"),
            batch_size=opt(hp, "batch_size"),
            gradient_accumulation_steps=opt(hp, "gradient_accumulation_steps"),
            learning_rate=opt(hp, "learning_rate"),
            lr_scheduler=hp.lr_scheduler,
            warmup_ratio=opt(hp, "warmup_ratio"),
            max_seq_length=opt(hp, "max_seq_length"),
            seed=opt(hp, "seed"),
            precision=PRECISION.name(hp.precision),
            save_steps=opt(hp, "save_steps"),
            lora=lora,
            quantization=quantization,
            double_quant=msg.quantization.double_quant,
            beta=opt(mp, "beta"),
            loss_type=mp.loss_type,
            num_generations=opt(mp, "num_generations"),
            max_prompt_length=opt(mp, "max_prompt_length"),
            max_completion_length=opt(mp, "max_completion_length"),
            reward_functions=tuple((rf.name, rf.weight or 1.0) for rf in mp.reward_functions),
            reward_model=mp.reward_model,
            output_name=msg.output.model_name,
            description=msg.output.description,
            export_formats=tuple(EXPORT_FORMAT.name(f) for f in msg.output.formats),
            backend=BACKEND.name(msg.backend),
            allow_fallback=msg.allow_fallback if msg.HasField("allow_fallback") else True,
            algorithm={name: json_format.MessageToDict(getattr(mp, name), preserving_proto_field_name=True)
                       for name in ALGORITHM_PARAMS if mp.HasField(name)},
            resume_from=(msg.resume_from.job_id, msg.resume_from.checkpoint) if msg.HasField("resume_from") else None,
            keep_checkpoint=msg.output.keep_checkpoint,
        )

    def warnings(self, profile: str) -> list[tuple[str, str]]:
        """(field, advice) for settings that are valid but, by ModelForge's rules, likely to fail or train badly on a
        machine of this hardware profile; the trainer records them on the job as warning log lines."""
        advice = []
        limit = BATCH_SIZE_BY_PROFILE.get(profile)
        if limit is not None and self.batch_size is not None and self.batch_size > limit:
            advice.append(("hyperparameters.batch_size", f"{self.batch_size} may be too large for a {profile} machine "
                                                         f"(advised: at most {limit}); it may run out of memory"))
        if self.epochs is not None and self.max_steps is None and self.epochs > MAX_ADVISED_EPOCHS:
            advice.append(("hyperparameters.epochs", f"{self.epochs:g} epochs is more than {MAX_ADVISED_EPOCHS}; "
                                                     "the model will likely overfit"))
        if self.learning_rate is not None and self.learning_rate > MAX_ADVISED_LEARNING_RATE:
            advice.append(("hyperparameters.learning_rate", f"{self.learning_rate:g} is above "
                                                            f"{MAX_ADVISED_LEARNING_RATE}; gradients will likely explode"))
        return advice
