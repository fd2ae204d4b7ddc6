"""OpenAI fine-tuning shapes <-> the contract: job request -> TrainRequest; Job, JobEvent, Dataset -> OpenAI objects."""

from __future__ import annotations

import re
import secrets

from forgeway.v1 import common_pb2, datasets_pb2, jobs_pb2, train_pb2

from .schemas_tuning import FineTuningJobRequest, Hyperparameters

METHOD = {
    "supervised": train_pb2.TRAINING_METHOD_SFT, "sft": train_pb2.TRAINING_METHOD_SFT,
    "dpo": train_pb2.TRAINING_METHOD_DPO, "grpo": train_pb2.TRAINING_METHOD_GRPO,
    "kto": train_pb2.TRAINING_METHOD_KTO, "orpo": train_pb2.TRAINING_METHOD_ORPO,
    "cpo": train_pb2.TRAINING_METHOD_CPO, "rloo": train_pb2.TRAINING_METHOD_RLOO,
    "online_dpo": train_pb2.TRAINING_METHOD_ONLINE_DPO, "reward": train_pb2.TRAINING_METHOD_REWARD,
}
BACKEND = {"auto": train_pb2.TRAINING_BACKEND_UNSPECIFIED, "trl": train_pb2.TRAINING_BACKEND_TRL,
           "unsloth": train_pb2.TRAINING_BACKEND_UNSLOTH}
QUANTIZATION = {"nf4": common_pb2.QUANTIZATION_4BIT_NF4, "fp4": common_pb2.QUANTIZATION_4BIT_FP4,
                "int8": common_pb2.QUANTIZATION_8BIT}
TASK = {"text-generation": common_pb2.TASK_TEXT_GENERATION, "summarization": common_pb2.TASK_SUMMARIZATION,
        "extractive-question-answering": common_pb2.TASK_EXTRACTIVE_QUESTION_ANSWERING}
EXPORT = {"adapter": train_pb2.EXPORT_FORMAT_ADAPTER, "merged": train_pb2.EXPORT_FORMAT_MERGED,
          "gguf": train_pb2.EXPORT_FORMAT_GGUF}
STATUS = {
    jobs_pb2.JOB_STATE_UNSPECIFIED: "validating_files",
    jobs_pb2.JOB_STATE_QUEUED: "queued",
    jobs_pb2.JOB_STATE_RUNNING: "running",
    jobs_pb2.JOB_STATE_SUCCEEDED: "succeeded",
    jobs_pb2.JOB_STATE_FAILED: "failed",
    jobs_pb2.JOB_STATE_CANCELLED: "cancelled",
}
FINISHED = {jobs_pb2.JOB_STATE_SUCCEEDED, jobs_pb2.JOB_STATE_FAILED, jobs_pb2.JOB_STATE_CANCELLED}
METHOD_PARAMS = ("loss_type", "num_generations", "max_prompt_length", "max_completion_length", "reward_model")


def tuned_model_name(base: str, suffix: str | None) -> str:
    """OpenAI names tuned models ft:<base>:<org>:<suffix>:<id>; the model store wants a plain directory name."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", base.rstrip("/").rsplit("/", 1)[-1]).strip("-.") or "model"
    return f"ft-{stem[:64]}-{suffix}-{secrets.token_hex(3)}"


def train_request(body: FineTuningJobRequest, base_learning_rate: float) -> train_pb2.TrainRequest:
    hp: Hyperparameters = body.effective_hyperparameters
    request = train_pb2.TrainRequest(
        base_model=body.model,
        method=METHOD[body.method_type],
        dataset=train_pb2.DatasetSource(dataset_id=body.training_file),
        backend=BACKEND[body.backend or "auto"],
    )
    if body.validation_file:
        request.eval_dataset.dataset_id = body.validation_file
    if body.allow_fallback is not None:
        request.allow_fallback = body.allow_fallback
    if body.task:
        request.task = TASK[body.task]
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
    if body.lora is not None:
        request.lora.CopyFrom(train_pb2.LoraParams(r=body.lora.r, alpha=body.lora.alpha, dropout=body.lora.dropout,
                                                   target_modules=body.lora.target_modules))
    if body.quantization:
        request.quantization.CopyFrom(train_pb2.QuantizationParams(
            quantization=QUANTIZATION[body.quantization], double_quant=bool(body.double_quant)))
    request.output.SetInParent()
    if body.suffix:
        request.output.model_name = tuned_model_name(body.model, body.suffix)
    request.output.formats.extend(EXPORT[f] for f in body.export or [])
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
        "finished_at": seconds(job.updated) if job.state in FINISHED else None,
        "model": job.base_model,
        "fine_tuned_model": job.artifact.model_name or None,
        "organization_id": "forgeway",
        "status": STATUS.get(job.state, "validating_files"),
        "hyperparameters": {
            "n_epochs": asked("epochs"), "batch_size": asked("batch_size"),
            "learning_rate_multiplier": (job.learning_rate / base_learning_rate
                                         if job.HasField("learning_rate") else None),
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
        "user_provided_suffix": None,
        "backend": job.backend,
        "progress": {"step": progress.step, "total_steps": progress.total_steps, "epoch": progress.epoch,
                     "loss": progress.loss if progress.HasField("loss") else None},
    }


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
        state = STATUS.get(event.state.state, "validating_files")
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
