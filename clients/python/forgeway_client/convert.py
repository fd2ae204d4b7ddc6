"""Protos -> the SDK's dataclasses (and enum values <-> lowercase names)."""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper

from forgeway.v1 import (
    capabilities_pb2, common_pb2, datasets_pb2, generate_pb2, jobs_pb2, models_pb2, train_pb2,
)

from . import types

TASKS = {common_pb2.TASK_TEXT_GENERATION: "text-generation", common_pb2.TASK_SUMMARIZATION: "summarization",
         common_pb2.TASK_EXTRACTIVE_QUESTION_ANSWERING: "extractive-question-answering"}
QUANTIZATIONS = {common_pb2.QUANTIZATION_NONE: "none", common_pb2.QUANTIZATION_4BIT_NF4: "nf4",
                 common_pb2.QUANTIZATION_4BIT_FP4: "fp4", common_pb2.QUANTIZATION_8BIT: "int8",
                 common_pb2.QUANTIZATION_GGUF: "gguf"}


def enum_name(enum: EnumTypeWrapper, value: int, prefix: str) -> str:
    """JOB_STATE_SUCCEEDED -> "succeeded"; the zero value (UNSPECIFIED) and unknown numbers -> ""."""
    if not value:
        return ""
    try:
        return enum.Name(value).removeprefix(prefix).lower()
    except ValueError:
        return ""


def enum_value(enum: EnumTypeWrapper, name: str, prefix: str) -> int | None:
    """ "online-dpo" / "ONLINE_DPO" -> TRAINING_METHOD_ONLINE_DPO; None when there is no such value."""
    key = prefix + name.strip().upper().replace("-", "_")
    return enum.Value(key) if key in enum.keys() and not key.endswith("UNSPECIFIED") else None


def task_name(value: int) -> str:
    return TASKS.get(value, "")


def task_value(name: str) -> int | None:
    return next((v for v, n in TASKS.items() if n == name.strip().lower().replace("_", "-")), None)


def timestamp(message) -> datetime | None:
    if not message.seconds and not message.nanos:
        return None
    return message.ToDatetime(tzinfo=UTC)


def _logprobs(items) -> tuple[types.TokenLogprob, ...]:
    return tuple(types.TokenLogprob(t.token, t.logprob, tuple((a.token, a.logprob) for a in t.top_logprobs))
                 for t in items)


def generation(msg: generate_pb2.GenerateResponse) -> types.Generation:
    choices = tuple(
        types.Choice(
            index=c.index, text=c.text,
            finish_reason=enum_name(generate_pb2.FinishReason, c.finish_reason, "FINISH_REASON_"),
            logprobs=_logprobs(c.logprobs),
            answer_span=types.AnswerSpan(c.answer_span.start, c.answer_span.end, c.answer_span.score)
            if c.HasField("answer_span") else None,
        )
        for c in msg.choices
    )
    return types.Generation(
        model=msg.model, choices=choices,
        usage=types.Usage(msg.usage.prompt_tokens, msg.usage.completion_tokens, msg.usage.total_tokens),
        timings=types.Timings(msg.timings.queue_ms, msg.timings.time_to_first_token_ms, msg.timings.total_ms),
        served_by=msg.served_by,
    )


def delta(msg: generate_pb2.GenerateDelta) -> types.Delta:
    return types.Delta(msg.index, msg.text, _logprobs(msg.logprobs))


def model(msg: models_pb2.ModelInfo) -> types.Model:
    return types.Model(
        name=msg.name, task=task_name(msg.task), context_length=msg.context_length,
        quantization=QUANTIZATIONS.get(msg.quantization, ""), adapters=tuple(msg.adapters), loaded=msg.loaded,
        backend=msg.backend, source=msg.source, aliases=tuple(msg.aliases), chat=msg.chat,
    )


def method_name(value: int) -> str:
    return enum_name(train_pb2.TrainingMethod, value, "TRAINING_METHOD_")


def capabilities(msg: capabilities_pb2.CapabilitiesResponse) -> types.Capabilities:
    gen, training, hw, load = msg.generation, msg.training, msg.hardware, msg.load
    return types.Capabilities(
        backend=msg.backend, version=msg.version, instance_id=msg.instance_id,
        available=msg.availability.available, reason=msg.availability.reason, rpcs=tuple(msg.rpcs),
        models=tuple(model(m) for m in msg.models),
        generation=types.GenerationFeatures(
            gen.streaming, gen.logprobs, gen.json_schema, gen.grammar, gen.stop, gen.seed, gen.multiple_choices,
            gen.adapters, tuple(gen.sampling_params)),
        training=types.TrainingFeatures(
            methods=tuple(method_name(m) for m in training.methods),
            tasks=tuple(task_name(t) for t in training.tasks), lora=training.lora,
            quantizations=tuple(QUANTIZATIONS.get(q, "") for q in training.quantizations),
            export_formats=tuple(enum_name(train_pb2.ExportFormat, f, "EXPORT_FORMAT_")
                                 for f in training.export_formats)),
        hardware=types.Hardware(hw.device, hw.accelerator, hw.accelerator_memory_total, hw.accelerator_memory_free,
                                hw.ram_total, hw.ram_available, hw.cpu_cores, hw.profile, hw.recommendation),
        load=types.Load(load.in_flight, load.queue_depth, load.max_concurrency, load.max_queue),
        library_versions=dict(msg.library_versions),
        endpoints=tuple(types.EndpointStatus(e.address, e.health, e.breaker, capabilities(e.capabilities))
                        for e in msg.endpoints),
    )


def backend_rows(caps: types.Capabilities, health: str = "SERVING", address: str = "") -> list[types.BackendStatus]:
    """One row per endpoint behind a gateway, or one row for a backend asked directly."""
    def row(address: str, c: types.Capabilities, health: str, breaker: str) -> types.BackendStatus:
        return types.BackendStatus(address=address, backend=c.backend, available=c.available, reason=c.reason,
                                   health=health, breaker=breaker, load=c.load,
                                   models=tuple(m.name for m in c.models), methods=c.training.methods,
                                   instance_id=c.instance_id)

    if caps.backend == "gateway":
        return [row(e.address, e.capabilities, e.health, e.breaker) for e in caps.endpoints]
    return [row(address, caps, health, "")]


def progress(msg: jobs_pb2.Progress) -> types.Progress:
    def opt(name: str) -> float | None:
        return getattr(msg, name) if msg.HasField(name) else None

    return types.Progress(
        step=msg.step, total_steps=msg.total_steps, epoch=msg.epoch, loss=opt("loss"),
        learning_rate=opt("learning_rate"), grad_norm=opt("grad_norm"), metrics=dict(msg.metrics),
        tokens_per_second=opt("tokens_per_second"), eta_seconds=opt("eta_seconds"),
    )


def artifact(msg: jobs_pb2.Artifact) -> types.Artifact:
    return types.Artifact(msg.model_name, msg.path, msg.format)


def state_name(value: int) -> str:
    return enum_name(jobs_pb2.JobState, value, "JOB_STATE_")


def job_event(msg: jobs_pb2.JobEvent) -> types.JobEvent:
    kind = msg.WhichOneof("kind") or ""
    fields: dict = {}
    if kind == "state":
        fields = {"state": state_name(msg.state.state), "message": msg.state.message}
    elif kind == "progress":
        fields = {"progress": progress(msg.progress)}
    elif kind == "log":
        fields = {"level": msg.log.level, "message": msg.log.text}
    elif kind == "checkpoint":
        fields = {"checkpoint": types.Checkpoint(msg.checkpoint.step, msg.checkpoint.path)}
    elif kind == "fallback":
        fields = {"fallback": types.Fallback(msg.fallback.requested, msg.fallback.used, msg.fallback.reason),
                  "message": msg.fallback.reason}
    elif kind == "artifact":
        fields = {"artifact": artifact(msg.artifact)}
    return types.JobEvent(job_id=msg.job_id, sequence=msg.sequence, kind=kind, time=timestamp(msg.time), **fields)


def job(msg: jobs_pb2.Job) -> types.Job:
    return types.Job(
        id=msg.id, state=state_name(msg.state), backend=msg.backend, base_model=msg.base_model, method=msg.method,
        created=timestamp(msg.created), updated=timestamp(msg.updated), error=msg.error,
        progress=progress(msg.progress) if msg.HasField("progress") else None,
        artifact=artifact(msg.artifact) if msg.HasField("artifact") else None, last_sequence=msg.last_sequence,
    )


def dataset(msg: datasets_pb2.Dataset) -> types.Dataset:
    return types.Dataset(
        id=msg.id, filename=msg.filename, format=enum_name(datasets_pb2.DatasetFormat, msg.format, "DATASET_FORMAT_"),
        size_bytes=msg.size_bytes, sha256=msg.sha256, rows=msg.rows, created=timestamp(msg.created),
        purpose=msg.purpose,
    )
