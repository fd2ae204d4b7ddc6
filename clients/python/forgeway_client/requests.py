"""Request builders: keyword arguments -> forgeway.v1 request protos, shared by Client and AsyncClient."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.protobuf import json_format, struct_pb2

from forgeway.core.enums import BACKEND, EXPORT_FORMAT, JOB_STATE, METHOD, PRECISION, QUANTIZATION, TASK, EnumTable
from forgeway.core.errors import InvalidArgument
from forgeway.v1 import common_pb2, generate_pb2, models_pb2, train_pb2

from .errors import invalid_argument
from .tools import ToolLike, chat_message, tool, tool_choice as choice_of

DATA_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")
DATASET_ID = re.compile(r"ds-[0-9a-f]{16}")

MessageLike = Mapping[str, Any] | tuple[str, str]


@dataclass(frozen=True)
class DatasetSource:
    """Where training examples come from: exactly one of path (on the trainer's machine), hub_name, dataset_id
    (an upload) or rows (inline), with an optional column mapping and selection."""

    path: str | None = None
    hub_name: str | None = None
    dataset_id: str | None = None
    rows: Sequence[Mapping[str, Any]] | None = None
    column_mapping: Mapping[str, str] = field(default_factory=dict)
    split: str = ""
    percent: float | None = None
    max_samples: int | None = None
    config_name: str = ""

    @classmethod
    def of(cls, value: DatasetSource | str | Path | Sequence[Mapping[str, Any]] | Any) -> DatasetSource:
        """Shorthands: a list of dicts is inline rows; "ds-<16 hex>" an upload; a Path, or a string that looks like
        a path (absolute, ./, ../, ~, or a .jsonl/.json/.csv/.parquet name) a path; any other string a hub name."""
        if isinstance(value, DatasetSource):
            return value
        if hasattr(value, "sha256") and hasattr(value, "id"):  # a Dataset returned by upload_dataset
            return cls(dataset_id=value.id)
        if isinstance(value, Path):
            return cls(path=str(value))
        if isinstance(value, str):
            if DATASET_ID.fullmatch(value):
                return cls(dataset_id=value)
            if value.startswith(("/", "./", "../", "~")) or value.lower().endswith(DATA_SUFFIXES):
                return cls(path=value)
            return cls(hub_name=value)
        if isinstance(value, Sequence) and all(isinstance(row, Mapping) for row in value):
            return cls(rows=list(value))
        raise invalid_argument("dataset", f"expected a path, hub name, dataset id or a list of rows, not "
                                          f"{type(value).__name__}")

    def to_proto(self) -> train_pb2.DatasetSource:
        given = [n for n in ("path", "hub_name", "dataset_id", "rows") if getattr(self, n) is not None]
        if len(given) != 1:
            raise invalid_argument("dataset.source", "give exactly one of path, hub_name, dataset_id, rows")
        msg = train_pb2.DatasetSource(column_mapping=dict(self.column_mapping), split=self.split,
                                      config_name=self.config_name)
        if self.rows is not None:
            for row in self.rows:
                struct = struct_pb2.Struct()
                struct.update(dict(row))
                msg.inline.rows.append(struct)
        else:
            setattr(msg, given[0], getattr(self, given[0]))
        if self.percent is not None:
            msg.percent = self.percent
        if self.max_samples is not None:
            msg.max_samples = self.max_samples
        return msg


@dataclass(frozen=True)
class LoRA:
    """Train a LoRA adapter: rank, alpha, dropout and target modules (empty: every attention and MLP projection)."""

    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: tuple[str, ...] = ()

    def to_proto(self) -> train_pb2.LoraParams:
        return train_pb2.LoraParams(r=self.r, alpha=self.alpha, dropout=self.dropout,
                                    target_modules=list(self.target_modules))


def message(item: MessageLike | Any, index: int = 0) -> generate_pb2.Message:
    """A Message from a mapping (role, content, and tool_calls / tool_call_id / reasoning where they apply), a
    (role, content) pair, or an object with role and content."""
    if isinstance(item, Mapping):
        return chat_message(item, index)
    if isinstance(item, tuple) and len(item) == 2:
        return generate_pb2.Message(role=item[0], content=item[1])
    if hasattr(item, "role") and hasattr(item, "content"):
        return generate_pb2.Message(role=item.role, content=item.content)
    raise invalid_argument("messages", f"a message is a {{'role', 'content'}} mapping or a (role, content) pair, "
                                       f"not {type(item).__name__}")


def generate_request(
    model: str, prompt: str | None = None, *, messages: Iterable[MessageLike] | None = None,
    document: str | None = None, context: str | None = None, question: str | None = None, task: str | None = None,
    n: int | None = None, max_tokens: int | None = None, temperature: float | None = None, top_p: float | None = None,
    top_k: int | None = None, min_p: float | None = None, repetition_penalty: float | None = None,
    presence_penalty: float | None = None, frequency_penalty: float | None = None, seed: int | None = None,
    stop: str | Sequence[str] | None = None, json_schema: str | Mapping[str, Any] | None = None,
    json_object: bool = False, grammar: str | None = None, logprobs: bool = False, top_logprobs: int = 0,
    adapter: str = "", backend: str = "", priority: int = 0, tools: Iterable[ToolLike] = (),
    tool_choice: str | Mapping[str, Any] | Callable[..., Any] | None = None, parallel_tool_calls: bool | None = None,
    thinking: bool | None = None,
) -> generate_pb2.GenerateRequest:
    """A GenerateRequest; ranges are checked by the server (one source of truth), shapes here. Tools are OpenAI tool
    dicts or Python functions; tool_choice "none", "auto", "required" or a function's name."""
    if not model:
        raise invalid_argument("model", "required")
    request = generate_pb2.GenerateRequest(model=model, n=n or 0, logprobs=logprobs, top_logprobs=top_logprobs,
                                           adapter=adapter, backend=backend, priority=priority)
    if prompt is not None:
        request.prompt = prompt
    if messages is not None:
        request.messages.extend(message(m, i) for i, m in enumerate(messages))
    if document is not None:
        request.summarize.document = document
    if question is not None or context is not None:
        request.question_answer.CopyFrom(generate_pb2.QuestionAnswerInput(context=context or "",
                                                                          question=question or ""))
    if task:
        request.task = named(TASK, task, "task")
    sampling = {"max_tokens": max_tokens, "temperature": temperature, "top_p": top_p, "top_k": top_k, "min_p": min_p,
                "repetition_penalty": repetition_penalty, "presence_penalty": presence_penalty,
                "frequency_penalty": frequency_penalty, "seed": seed}
    for name, value in sampling.items():
        if value is not None:
            setattr(request.sampling, name, value)
    if stop:
        request.sampling.stop.extend([stop] if isinstance(stop, str) else list(stop))
    if json_schema is not None:
        request.structured_output.json_schema = json_schema if isinstance(json_schema, str) else json.dumps(json_schema)
    elif json_object:
        request.structured_output.json_object = True
    elif grammar is not None:
        request.structured_output.grammar = grammar
    request.tools.extend(tool(t, i) for i, t in enumerate(tools))
    if tool_choice is not None:
        request.tool_choice.CopyFrom(choice_of(tool_choice))
    if parallel_tool_calls is not None:
        request.parallel_tool_calls = parallel_tool_calls
    if thinking is not None:
        request.thinking = thinking
    return request


def named(table: EnumTable, name: str, field_name: str) -> int:
    """A name as the user typed it -> its wire value; an unknown or removed name is refused before sending."""
    try:
        return table.value(name, field_name)
    except InvalidArgument as error:
        raise invalid_argument(*error.violations[0]) from None


def _rewards(items: Iterable[str | tuple[str, float] | Mapping[str, Any]]) -> list[train_pb2.RewardFunction]:
    rewards = []
    for item in items:
        if isinstance(item, str):  # "name" or "name:argument" ("length:200"); weights come as (name, weight)
            rewards.append(train_pb2.RewardFunction(name=item))
        elif isinstance(item, Mapping):
            rewards.append(train_pb2.RewardFunction(name=item["name"], weight=float(item.get("weight", 0))))
        else:
            rewards.append(train_pb2.RewardFunction(name=item[0], weight=float(item[1])))
    return rewards


def train_request(
    base_model: str, dataset: DatasetSource | str | Path | Sequence[Mapping[str, Any]], *, method: str = "sft",
    task: str | None = None, eval_dataset: Any = None, column_mapping: Mapping[str, str] | None = None,
    split: str | None = None, percent: float | None = None, max_samples: int | None = None,
    epochs: float | None = None, max_steps: int | None = None, batch_size: int | None = None,
    gradient_accumulation_steps: int | None = None, learning_rate: float | None = None, lr_scheduler: str = "",
    warmup_ratio: float | None = None, max_seq_length: int | None = None, seed: int | None = None,
    precision: str | None = None, save_steps: int | None = None, lora: LoRA | Mapping[str, Any] | bool | None = None,
    quantization: str | None = None, double_quant: bool = False, beta: float | None = None, loss_type: str = "",
    num_generations: int | None = None, max_prompt_length: int | None = None,
    max_completion_length: int | None = None, reward_functions: Iterable[Any] = (), reward_model: str = "",
    output_name: str = "", export: Iterable[str] = (), backend: str = "auto", allow_fallback: bool | None = None,
    description: str = "", config_name: str | None = None, counterfact: Mapping[str, Any] | None = None,
    gbmpo: Mapping[str, Any] | None = None, pace: Mapping[str, Any] | None = None,
    mirror: Mapping[str, Any] | None = None, meta_es: Mapping[str, Any] | None = None,
    resume_from: str | tuple[str, str] | None = None, keep_checkpoint: bool = False,
) -> train_pb2.TrainRequest:
    """A TrainRequest from keyword arguments (names as in the contract; enums by lowercase name).

    AlignTune's algorithms take their knobs as dicts named like MethodParams' fields (`gbmpo={"divergence": "l2kl"}`,
    `pace={"rho_min": 0.9}`); `resume_from` is a job id (its latest checkpoint) or (job id, checkpoint name)."""
    if not base_model:
        raise invalid_argument("base_model", "required")
    request = train_pb2.TrainRequest(base_model=base_model, method=named(METHOD, method, "method"))
    source = DatasetSource.of(dataset)
    overrides = {k: v for k, v in {"column_mapping": column_mapping, "split": split, "percent": percent,
                                     "max_samples": max_samples, "config_name": config_name}.items() if v is not None}
    request.dataset.CopyFrom(DatasetSource(**{**source.__dict__, **overrides}).to_proto())
    if eval_dataset is not None:
        request.eval_dataset.CopyFrom(DatasetSource.of(eval_dataset).to_proto())
    if task:
        request.task = named(TASK, task, "task")
    hyper = {"epochs": epochs, "max_steps": max_steps, "batch_size": batch_size,
             "gradient_accumulation_steps": gradient_accumulation_steps, "learning_rate": learning_rate,
             "warmup_ratio": warmup_ratio, "max_seq_length": max_seq_length, "seed": seed, "save_steps": save_steps}
    for name, value in hyper.items():
        if value is not None:
            setattr(request.hyperparameters, name, value)
    request.hyperparameters.lr_scheduler = lr_scheduler
    if precision:
        request.hyperparameters.precision = named(PRECISION, precision, "precision")
    if lora:
        spec = lora if isinstance(lora, LoRA) else LoRA() if lora is True else LoRA(**dict(lora))
        request.lora.CopyFrom(spec.to_proto())
    quant = named(QUANTIZATION, quantization, "quantization") if quantization else common_pb2.QUANTIZATION_NONE
    if quant != common_pb2.QUANTIZATION_NONE:  # which ones can train is the trainer's call (TRAINING_QUANTIZATIONS)
        request.quantization.CopyFrom(train_pb2.QuantizationParams(quantization=quant, double_quant=double_quant))
    params = request.method_params
    for name, value in {"beta": beta, "num_generations": num_generations, "max_prompt_length": max_prompt_length,
                        "max_completion_length": max_completion_length}.items():
        if value is not None:
            setattr(params, name, value)
    params.loss_type, params.reward_model = loss_type, reward_model
    params.reward_functions.extend(_rewards(reward_functions))
    for name, knobs in {"counterfact": counterfact, "gbmpo": gbmpo, "pace": pace, "mirror": mirror,
                        "meta_es": meta_es}.items():
        if knobs is not None:
            try:
                json_format.ParseDict(dict(knobs), getattr(params, name))
            except json_format.ParseError as exc:
                raise invalid_argument(f"method_params.{name}", str(exc).splitlines()[0]) from None
            getattr(params, name).SetInParent()
    if resume_from:
        job_id, checkpoint = (resume_from, "") if isinstance(resume_from, str) else resume_from
        request.resume_from.CopyFrom(train_pb2.CheckpointRef(job_id=job_id, checkpoint=checkpoint))
    request.output.model_name = output_name
    request.output.description = description
    request.output.keep_checkpoint = keep_checkpoint
    request.output.formats.extend(named(EXPORT_FORMAT, f, "output.formats") for f in export)
    request.backend = named(BACKEND, backend, "backend")
    if allow_fallback is not None:
        request.allow_fallback = allow_fallback
    return request


def job_state(name: str | None) -> int:
    """ "running" -> JOB_STATE_RUNNING; None or "" -> unspecified (all states)."""
    if not name:
        return 0
    return named(JOB_STATE, name, "state")


def load_request(name: str, source: str, backend: str, task: str | None, quantization: str | None, base_model: str,
                 options: Mapping[str, Any] | None) -> models_pb2.LoadModelRequest:
    """A LoadModelRequest; `backend` travels as options["backend"], which the gateway routes by."""
    if not name:
        raise invalid_argument("name", "required")
    values = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in (options or {}).items()}
    if backend:
        values["backend"] = backend
    request = models_pb2.LoadModelRequest(name=name, source=source, base_model=base_model, options=values)
    if task:
        request.task = named(TASK, task, "task")
    if quantization:
        request.quantization = named(QUANTIZATION, quantization, "quantization")
    return request


def export_request(name: str, format: str, output_name: str, outtype: str) -> models_pb2.ExportModelRequest:
    """An ExportModelRequest: `format` by its name ("gguf"), `outtype` the GGUF matrix type ("" for the default)."""
    if not name:
        raise invalid_argument("name", "required")
    request = models_pb2.ExportModelRequest(name=name, format=named(EXPORT_FORMAT, format, "format"),
                                            output_name=output_name)
    if outtype:
        request.options["outtype"] = outtype
    return request
