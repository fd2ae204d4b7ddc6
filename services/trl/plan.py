"""RunPlan: a TrainSpec checked against this service before any model loads: method or task, base model, datasets,
rewards, precision, hyperparameter defaults for the hardware, output names and formats."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import datasets
from transformers import SchedulerType

from forgeway.core.errors import InvalidArgument, Unsupported
from forgeway.core.generation import Task
from forgeway.core.profiles import advice
from forgeway.services.training.spec import TrainSpec

from .datasets import LoadedDataset, read_dataset
from .export import gguf_exporter, plan_formats
from .loading import BaseModel, Precision, check_cached, precision_for
from .methods import METHODS, Method, check_knobs, method_fields
from .rewards import ALIGNTUNE_DEFAULTS, Reward
from .tasks import TASKS, TaskPlan


@dataclass
class RunPlan:
    spec: TrainSpec
    method: Method
    task: TaskPlan | None
    base: BaseModel
    precision: Precision
    train: LoadedDataset
    evaluation: LoadedDataset | None
    rewards: list[Reward] = field(default_factory=list)
    reward_model: BaseModel | None = None
    formats: list[str] = field(default_factory=list)
    batch_size: int = 2
    accumulation: int = 1
    max_seq_length: int | None = None
    notes: list[str] = field(default_factory=list)  # lines for the job's log: what the plan chose for the request

    @property
    def model_class(self) -> str:
        return self.task.model_class if self.task else self.method.model_class

    @property
    def pipeline_task(self) -> str:
        return self.task.pipeline_task if self.task else self.method.pipeline_task

    @property
    def perplexity(self) -> bool:
        return self.task.perplexity if self.task else self.method.name == "sft"


def make_plan(engine, spec: TrainSpec, profile: str) -> RunPlan:
    """Check everything that can be checked without loading a model; raise the request's errors (all knob
    violations at once)."""
    method = METHODS[spec.method]
    task = TASKS.get(spec.task)
    errors = _task_errors(spec, task) if task else check_knobs(spec, method) + method.check_algorithm(spec.algorithm)
    if spec.lr_scheduler and spec.lr_scheduler not in {s.value for s in SchedulerType}:
        errors.append(("hyperparameters.lr_scheduler", f"unknown schedule {spec.lr_scheduler!r}; allowed: "
                       f"{', '.join(s.value for s in SchedulerType)}"))
    formats = plan_formats(spec.export_formats, spec.lora is not None)
    errors += _format_errors(formats, spec, method, task)
    if errors:
        (where, why), *more = errors
        raise InvalidArgument(where, why, more=more)
    precision = precision_for(spec.precision)
    if spec.quantization != "none" and "bitsandbytes" not in engine.library_versions():
        raise Unsupported(f"quantization {spec.quantization}", "trl", "bitsandbytes is not installed")
    if spec.output_name:
        engine.models.path(spec.output_name)  # validates the name
        taken = [n for n in _names(spec.output_name, formats) if engine.models.exists(n)]
        if taken:
            raise InvalidArgument("output.model_name", f"a model named {taken[0]!r} already exists in the store")
    base = resolve_model(engine, spec.base_model, "base_model")
    if base.adapter and "adapter" in formats:
        raise Unsupported("output.formats adapter", "trl", f"{spec.base_model} is itself an adapter; export "
                          "'merged' to train on top of it")
    # where the request leaves them unset: the hardware profile's recommendation for the task (forgeway.core.profiles)
    recommended = advice(profile).recommendation(spec.task).settings
    batch = spec.batch_size or recommended.batch_size
    accumulation = spec.gradient_accumulation_steps or recommended.gradient_accumulation_steps
    max_seq = spec.max_seq_length or (recommended.max_seq_length if method.max_length or task else None)
    accepted = (task.format,) if task else method.formats
    who = f"task {spec.task.value}" if task else f"method {method.name}"
    train = read_dataset(engine, spec.dataset, "dataset", accepted, who)
    evaluation = read_dataset(engine, spec.eval_dataset, "eval_dataset", (train.format,), who, min_rows=1) \
        if spec.eval_dataset else None
    if evaluation and "split_generated" in evaluation.provenance and _same_source(spec.dataset, spec.eval_dataset):
        # the eval split was generated from this very source: train on the generated train part, not on all of it
        train = read_dataset(engine, spec.dataset, "dataset", accepted, who, generate=True)
    plan = RunPlan(spec, method, task, base, precision, train, evaluation, formats=formats, batch_size=batch,
                   accumulation=accumulation, max_seq_length=max_seq)
    if task is None and method.rewards:
        requested = spec.reward_functions
        if not requested and not spec.reward_model and method.default_rewards:
            requested = ALIGNTUNE_DEFAULTS
            plan.notes.append("no reward given: AlignTune's default set: "
                              + ", ".join(f"{name} ({weight:g})" for name, weight in requested))
        plan.rewards = engine.rewards.resolve(requested, train.rows.column_names, confine=engine.allowed)
        if spec.reward_model:
            plan.reward_model = resolve_model(engine, spec.reward_model, "method_params.reward_model")
    if spec.max_prompt_length is not None and "prompt" not in train.rows.column_names:
        raise InvalidArgument("method_params.max_prompt_length", f"the {train.format} dataset has no prompt column")
    if task is None and "num_generations" in method.knobs:
        # TRL's own check, made here: building a TrainingArguments resets accelerate's global state, which would
        # break the job training meanwhile, so no TRL config is built before the job runs
        generations = method_fields(spec, method, batch, accumulation)["num_generations"]
        if (batch * accumulation) % generations:
            raise InvalidArgument("method_params.num_generations", f"batch_size x gradient_accumulation_steps "
                                  f"({batch * accumulation}) must be a multiple of num_generations ({generations})")
    return plan


def resolve_model(engine, name: str, field_name: str) -> BaseModel:
    """A model-store name, allowed local path or cached/reachable hub id; NOT_FOUND otherwise."""
    resolved = engine.resolve_base_model(name)
    if not Path(resolved).exists():  # neither in the store nor a local path: a hub id
        check_cached(name, engine.models.names())
    return BaseModel.from_store(name, resolved)


def common_args(plan: RunPlan, output_dir: str, settings) -> dict:
    """TrainingArguments fields every method and task shares."""
    spec = plan.spec
    evaluate = plan.evaluation is not None or settings.eval_fraction > 0
    args = dict(
        output_dir=str(output_dir), per_device_train_batch_size=plan.batch_size,
        per_device_eval_batch_size=plan.batch_size, gradient_accumulation_steps=plan.accumulation,
        logging_steps=settings.log_every_steps, report_to="none", disable_tqdm=True,
        save_strategy="steps" if spec.save_steps else "no", save_steps=spec.save_steps or 500,
        eval_strategy="steps" if evaluate and settings.eval_steps else "no", eval_steps=settings.eval_steps or None,
        seed=spec.seed if spec.seed is not None else 42, **plan.precision.trainer_args(),
    )
    if spec.max_steps is not None:
        args["max_steps"] = spec.max_steps
    if spec.epochs is not None:
        args["num_train_epochs"] = spec.epochs
    if spec.learning_rate is not None:
        args["learning_rate"] = spec.learning_rate
    if spec.lr_scheduler:
        args["lr_scheduler_type"] = spec.lr_scheduler
    if spec.warmup_ratio is not None:
        args["warmup_steps"] = spec.warmup_ratio  # transformers reads a value below 1 as a ratio
    return args


def _same_source(one, other) -> bool:
    return (one.kind, one.value, one.rows, one.config_name) == (other.kind, other.value, other.rows, other.config_name)


def _task_errors(spec: TrainSpec, task: TaskPlan) -> list[tuple[str, str]]:
    errors = []
    if spec.method != "sft":
        errors.append(("method", f"task {task.task.value} trains with sft only, not {spec.method}"))
    knobs = {"beta": spec.beta, "loss_type": spec.loss_type or None, "num_generations": spec.num_generations,
             "max_prompt_length": spec.max_prompt_length, "reward_functions": spec.reward_functions or None,
             "reward_model": spec.reward_model or None}
    if task.task is not Task.SUMMARIZATION:
        knobs["max_completion_length"] = spec.max_completion_length
    errors += [(f"method_params.{k}", f"task {task.task.value} does not take {k.replace('_', ' ')}")
               for k, v in knobs.items() if v is not None]
    if spec.quantization != "none":
        errors.append(("quantization", f"task {task.task.value} trains without quantization"))
    return errors


def _format_errors(formats: list[str], spec: TrainSpec, method: Method, task: TaskPlan | None) -> list:
    errors = []
    if "adapter" in formats and spec.lora is None:
        errors.append(("output.formats", "an adapter export needs LoRA settings (lora)"))
    if "gguf" in formats and (task is not None or method.name == "reward"):
        errors.append(("output.formats", "GGUF export is for text-generation models"))
    elif "gguf" in formats and gguf_exporter() is None:
        errors.append(("output.formats", "GGUF export needs the llama.cpp service's exporter "
                       "(forgeway.services.llamacpp.export), not installed here"))
    return errors


def _names(name: str, formats: list[str]) -> list[str]:
    return [name if i == 0 else f"{name}-{fmt}" for i, fmt in enumerate(formats)]


def carve_eval(rows: datasets.Dataset, fraction: float, seed: int) -> tuple[datasets.Dataset, datasets.Dataset]:
    """Split an eval set off the training rows (at least one row each)."""
    count = max(1, round(len(rows) * fraction))
    if count >= len(rows):
        raise InvalidArgument("dataset", f"{len(rows)} rows are too few to carve an eval fraction of {fraction}")
    parts = rows.train_test_split(test_size=count, seed=seed)
    return parts["train"], parts["test"]
