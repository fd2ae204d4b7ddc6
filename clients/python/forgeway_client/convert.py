"""Protos -> the SDK's dataclasses; enum values get their names from forgeway.core.enums."""

from __future__ import annotations

from datetime import UTC, datetime

from forgeway.core.enums import DATASET_FORMAT, EXPORT_FORMAT, FINISH_REASON, JOB_STATE, METHOD, QUANTIZATION, TASK
from forgeway.v1 import capabilities_pb2, datasets_pb2, embed_pb2, generate_pb2, jobs_pb2, models_pb2

from . import types
from .embeddings import Embedding, EmbeddingResult, RankedDocument, RerankResult


def quantization_name(value: int) -> str:
    """A quantization's name; "" when the server left it unspecified (the table's default would say "none")."""
    return QUANTIZATION.to_name.get(value, "")


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
            finish_reason=FINISH_REASON.name(c.finish_reason),
            logprobs=_logprobs(c.logprobs),
            answer_span=types.AnswerSpan(c.answer_span.start, c.answer_span.end, c.answer_span.score)
            if c.HasField("answer_span") else None,
            tool_calls=tuple(types.ToolCall(t.id, t.name, t.arguments) for t in c.tool_calls),
            reasoning=c.reasoning,
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
    return types.Delta(msg.index, msg.text, _logprobs(msg.logprobs),
                       tuple(types.ToolCallDelta(t.index, t.id, t.name, t.arguments) for t in msg.tool_calls),
                       msg.reasoning)


def model(msg: models_pb2.ModelInfo) -> types.Model:
    return types.Model(
        name=msg.name, task=TASK.name(msg.task), context_length=msg.context_length,
        quantization=quantization_name(msg.quantization), adapters=tuple(msg.adapters), loaded=msg.loaded,
        backend=msg.backend, source=msg.source, aliases=tuple(msg.aliases), chat=msg.chat,
        dimensions=msg.dimensions, matryoshka_dimensions=tuple(msg.matryoshka_dimensions), pooling=msg.pooling,
        description=msg.description, created=timestamp(msg.created) if msg.HasField("created") else None,
        base_model=msg.base_model, provider=msg.provider, trained_by=msg.trained_by,
    )


def _embed_usage(msg: embed_pb2.EmbedUsage) -> types.Usage:
    return types.Usage(prompt_tokens=msg.prompt_tokens, total_tokens=msg.total_tokens)


def embedding_result(msg: embed_pb2.EmbedResponse) -> EmbeddingResult:
    ordered = sorted(msg.embeddings, key=lambda e: e.index)
    return EmbeddingResult(
        model=msg.model, embeddings=tuple(Embedding(e.index, list(e.values), e.tokens, e.truncated) for e in ordered),
        usage=_embed_usage(msg.usage), served_by=msg.served_by, dimensions=msg.dimensions,
    )


def rerank_result(msg: embed_pb2.RerankResponse) -> RerankResult:
    return RerankResult(
        model=msg.model, results=tuple(RankedDocument(r.index, r.relevance_score, r.document) for r in msg.results),
        usage=_embed_usage(msg.usage), served_by=msg.served_by,
    )


def capabilities(msg: capabilities_pb2.CapabilitiesResponse) -> types.Capabilities:
    gen, training, hw, load = msg.generation, msg.training, msg.hardware, msg.load
    return types.Capabilities(
        backend=msg.backend, version=msg.version, instance_id=msg.instance_id,
        available=msg.availability.available, reason=msg.availability.reason, rpcs=tuple(msg.rpcs),
        models=tuple(model(m) for m in msg.models),
        generation=types.GenerationFeatures(
            gen.streaming, gen.logprobs, gen.json_schema, gen.grammar, gen.stop, gen.seed, gen.multiple_choices,
            gen.adapters, tuple(gen.sampling_params), gen.tools, gen.reasoning),
        training=types.TrainingFeatures(
            methods=tuple(METHOD.name(m) for m in training.methods),
            tasks=tuple(TASK.name(t) for t in training.tasks), lora=training.lora,
            quantizations=tuple(quantization_name(q) for q in training.quantizations),
            export_formats=tuple(EXPORT_FORMAT.name(f) for f in training.export_formats)),
        hardware=hardware(hw),
        load=types.Load(load.in_flight, load.queue_depth, load.max_concurrency, load.max_queue),
        library_versions=dict(msg.library_versions),
        endpoints=tuple(types.EndpointStatus(e.address, e.health, e.breaker, capabilities(e.capabilities))
                        for e in msg.endpoints),
    )


def hardware(hw: capabilities_pb2.Hardware) -> types.Hardware:
    return types.Hardware(
        hw.device, hw.accelerator, hw.accelerator_memory_total, hw.accelerator_memory_free, hw.ram_total,
        hw.ram_available, hw.cpu_cores, hw.profile, hw.recommendation, disk_free=hw.disk_free,
        disk_total=hw.disk_total, accelerator_count=hw.accelerator_count, driver_version=hw.driver_version,
        cuda_version=hw.cuda_version, recommendations=tuple(recommendation(r) for r in hw.recommendations))


def recommendation(msg: capabilities_pb2.Recommendation) -> types.Recommendation:
    hp, lora = msg.hyperparameters, msg.lora
    return types.Recommendation(
        task=TASK.name(msg.task), model=msg.model, alternatives=tuple(msg.alternatives),
        quantization=quantization_name(msg.quantization.quantization), epochs=hp.epochs, batch_size=hp.batch_size,
        gradient_accumulation_steps=hp.gradient_accumulation_steps, learning_rate=round(hp.learning_rate, 10),
        warmup_ratio=round(hp.warmup_ratio, 6), max_seq_length=hp.max_seq_length, lora_r=lora.r,
        lora_alpha=lora.alpha, lora_dropout=round(lora.dropout, 6))


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


def job_event(msg: jobs_pb2.JobEvent) -> types.JobEvent:
    kind = msg.WhichOneof("kind") or ""
    fields: dict = {}
    if kind == "state":
        fields = {"state": JOB_STATE.name(msg.state.state), "message": msg.state.message}
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
        id=msg.id, state=JOB_STATE.name(msg.state), backend=msg.backend, base_model=msg.base_model, method=msg.method,
        created=timestamp(msg.created), updated=timestamp(msg.updated), error=msg.error,
        progress=progress(msg.progress) if msg.HasField("progress") else None,
        artifact=artifact(msg.artifact) if msg.HasField("artifact") else None, last_sequence=msg.last_sequence,
        suffix=msg.suffix,
    )


def dataset(msg: datasets_pb2.Dataset) -> types.Dataset:
    return types.Dataset(
        id=msg.id, filename=msg.filename, format=DATASET_FORMAT.name(msg.format),
        size_bytes=msg.size_bytes, sha256=msg.sha256, rows=msg.rows, created=timestamp(msg.created),
        purpose=msg.purpose,
    )
