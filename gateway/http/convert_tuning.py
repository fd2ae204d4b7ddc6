"""OpenAI fine-tuning shapes <-> the contract: job request -> TrainRequest; Job, JobEvent, Dataset -> OpenAI objects."""

from __future__ import annotations

import re
import secrets

from google.protobuf import json_format

from forgeway.core.enums import BACKEND, EXPORT_FORMAT, FINISHED_STATES, JOB_STATE, METHOD, QUANTIZATION, TASK
from forgeway.v1 import datasets_pb2, jobs_pb2, train_pb2

from .schemas_tuning import FineTuningJobRequest, Hyperparameters

ALGORITHM_PARAMS = ("counterfact", "gbmpo", "pace", "mirror", "meta_es")
METHOD_PARAMS = ("loss_type", "num_generations", "max_prompt_length", "max_completion_length", "reward_model")


def tuned_model_name(base: str, suffix: str | None) -> str:
    """OpenAI names tuned models ft:<base>:<org>:<suffix>:<id>; the model store wants a plain directory name."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", base.rstrip("/").rsplit("/", 1)[-1]).strip("-.") or "model"
    return f"ft-{stem[:64]}-{suffix}-{secrets.token_hex(3)}"


def train_request(body: FineTuningJobRequest, base_learning_rate: float) -> train_pb2.TrainRequest:
    hp: Hyperparameters = body.effective_hyperparameters
    request = train_pb2.TrainRequest(
        base_model=body.model,
        method=METHOD.value(body.method_type, "method.type"),
        dataset=train_pb2.DatasetSource(dataset_id=body.training_file),
        backend=BACKEND.value(body.backend or "auto"),
    )
    if body.validation_file:
        request.eval_dataset.dataset_id = body.validation_file
    if body.allow_fallback is not None:
        request.allow_fallback = body.allow_fallback
    if body.task:
        request.task = TASK.value(body.task)
    h = request.hyperparameters
    h.SetInParent()
    if isinstance(hp.n_epochs, int):
        h.epochs = hp.n_epochs
    if isinstance(hp.batch_size, int):
        h.batch_size = hp.batch_size
    if isinstance(hp.learning_rate_multiplier, float | int):
        h.learning_rate = hp.learning_rate_multiplier * base_learning_rate
    for name in ("learning_rate", "max_steps", "gradient_accumulation_steps", "max_seq_length", "warmup_ratio"):
        if getattr(hp, name) is not None:
            setattr(h, name, getattr(hp, name))
    if hp.lr_scheduler:
        h.lr_scheduler = hp.lr_scheduler
    if body.seed is not None:
        h.seed = body.seed
    m = request.method_params
    m.SetInParent()
    if isinstance(hp.beta, float | int):
        m.beta = hp.beta
    for name in METHOD_PARAMS:
        if getattr(hp, name) is not None:
            setattr(m, name, getattr(hp, name))
    for fn in hp.reward_functions or []:
        m.reward_functions.add(name=fn.name, weight=fn.weight or 0.0)
    for name in ALGORITHM_PARAMS:
        if getattr(hp, name) is not None:
            json_format.ParseDict(getattr(hp, name), getattr(m, name))  # checked by the schema
            getattr(m, name).SetInParent()
    if body.lora is not None:
        request.lora.CopyFrom(train_pb2.LoraParams(r=body.lora.r, alpha=body.lora.alpha, dropout=body.lora.dropout,
                                                   target_modules=body.lora.target_modules))
    if body.quantization:
        request.quantization.CopyFrom(train_pb2.QuantizationParams(
            quantization=QUANTIZATION.value(body.quantization), double_quant=bool(body.double_quant)))
    request.output.SetInParent()
    if body.suffix:
        request.output.model_name = tuned_model_name(body.model, body.suffix)
        request.output.suffix = body.suffix
    request.output.formats.extend(EXPORT_FORMAT.value(f) for f in body.export or [])
    return request


_TRAIN_PARAM = {
    "base_model": "model", "dataset": "training_file", "eval_dataset": "validation_file", "method": "method.type",
    "hyperparameters.epochs": "hyperparameters.n_epochs", "output.model_name": "suffix", "output": "export",
    "hyperparameters.learning_rate": "hyperparameters.learning_rate_multiplier", "quantization": "quantization",
}


def train_param(field: str) -> str | None:
    """How a TrainRequest field named in an error reads as an OpenAI job parameter."""
    for prefix, param in sorted(_TRAIN_PARAM.items(), key=lambda kv: -len(kv[0])):
        if field == prefix or field.startswith(prefix + "."):
            return param
    if field.startswith("method_params."):
        return "hyperparameters." + field.removeprefix("method_params.")
    return field or None


def seconds(timestamp) -> int:
    return int(timestamp.seconds)


def status(state: int) -> str:
    """A job state as OpenAI's job status (a job not yet recorded reads validating_files)."""
    return JOB_STATE.name(state) or "validating_files"


def multiplier(job: jobs_pb2.Job, base_learning_rate: float) -> float | None:
    """The learning-rate multiplier asked for, read back from the job's 32-bit learning rate: rounded to the seven
    digits a float32 holds, so 0.1 reads 0.1, not 0.10000000149."""
    return float(f"{job.learning_rate / base_learning_rate:.7g}") if job.HasField("learning_rate") else None


def job_object(job: jobs_pb2.Job, base_learning_rate: float) -> dict:
    """A Job as OpenAI's fine_tuning.job; hyperparameters the request left unset read null."""
    method = "supervised" if job.method in ("sft", "") else job.method
    progress = job.progress

    def asked(name: str):
        return getattr(job, name) if job.HasField(name) else None
    return {
        "id": job.id,
        "object": "fine_tuning.job",
        "created_at": seconds(job.created),
        "finished_at": seconds(job.updated) if job.state in FINISHED_STATES else None,
        "model": job.base_model,
        "fine_tuned_model": job.artifact.model_name or None,
        "organization_id": "forgeway",
        "status": status(job.state),
        "hyperparameters": {
            "n_epochs": _whole(asked("epochs")), "batch_size": asked("batch_size"),
            "learning_rate_multiplier": multiplier(job, base_learning_rate),
        },
        "training_file": job.dataset or None,
        "validation_file": job.eval_dataset or None,
        "result_files": [],
        "trained_tokens": None,
        "error": ({"code": "training_failed", "message": job.error or "training failed", "param": None}
                  if job.state == jobs_pb2.JOB_STATE_FAILED else None),
        "seed": asked("seed"),
        "estimated_finish": None,
        "integrations": [],
        "metadata": None,
        "method": {"type": method},
        "user_provided_suffix": job.suffix or None,
        "backend": job.backend,
        "progress": {"step": progress.step, "total_steps": progress.total_steps, "epoch": progress.epoch,
                     "loss": progress.loss if progress.HasField("loss") else None},
    }


def _whole(epochs: float | None) -> float | int | None:
    """n_epochs as OpenAI gives it: an integer when it is one."""
    return int(epochs) if epochs is not None and float(epochs).is_integer() else epochs


def event_id(job_id: str, sequence: int) -> str:
    return f"ftevent-{job_id}-{sequence}"


def sequence_of(event_id_: str, job_id: str) -> int | None:
    prefix = f"ftevent-{job_id}-"
    tail = event_id_.removeprefix(prefix)
    return int(tail) if event_id_.startswith(prefix) and tail.isdigit() else None


def event_object(event: jobs_pb2.JobEvent) -> dict:
    """A JobEvent as OpenAI's fine_tuning.job.event: progress as a metrics event, everything else as a message."""
    kind = event.WhichOneof("kind")
    level, kind_out, data = "info", "message", {}
    if kind == "state":
        state = status(event.state.state)
        message = f"Job {state}" + (f": {event.state.message}" if event.state.message else "")
        level = "error" if event.state.state == jobs_pb2.JOB_STATE_FAILED else "info"
    elif kind == "progress":
        p = event.progress
        kind_out = "metrics"
        data = {"step": p.step, "total_steps": p.total_steps, "epoch": p.epoch}
        if p.HasField("loss"):
            data["train_loss"] = p.loss
        if p.HasField("learning_rate"):
            data["learning_rate"] = p.learning_rate
        data.update(dict(p.metrics))
        message = f"Step {p.step}/{p.total_steps}" + (f": training loss={p.loss:.4f}" if p.HasField("loss") else "")
    elif kind == "log":
        level = {"warning": "warn", "error": "error"}.get(event.log.level, "info")
        message = event.log.text
    elif kind == "checkpoint":
        message = f"Checkpoint saved at step {event.checkpoint.step}"
        data = {"step": event.checkpoint.step}
    elif kind == "fallback":
        level = "warn"
        f = event.fallback
        message = f"{f.requested} unavailable: {f.reason}; using {f.used}"
    elif kind == "artifact":
        message = f"New fine-tuned model created: {event.artifact.model_name}"
        data = {"model": event.artifact.model_name, "format": event.artifact.format}
    else:
        message = "event"
    return {"id": event_id(event.job_id, event.sequence), "object": "fine_tuning.job.event",
            "created_at": seconds(event.time), "level": level, "message": message, "data": data, "type": kind_out}


def file_object(dataset: datasets_pb2.Dataset) -> dict:
    return {
        "id": dataset.id,
        "object": "file",
        "bytes": dataset.size_bytes,
        "created_at": seconds(dataset.created),
        "filename": dataset.filename,
        "purpose": dataset.purpose or "fine-tune",
        "status": "processed",
        "status_details": None,
        "expires_at": None,
        "rows": dataset.rows,
        "sha256": dataset.sha256,
    }
