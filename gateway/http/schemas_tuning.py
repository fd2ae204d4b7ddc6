"""Request bodies of /v1/fine_tuning/jobs (OpenAI's shape, with Forgeway's methods and knobs) and file shapes."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from forgeway.core.enums import BACKEND, EXPORT_FORMAT, METHOD, TRAINING_QUANTIZATIONS
from forgeway.core.generation import TRAINED_TASKS

from .schemas import UINT32, Strict, Text, invalid, reject_unsupported, unsupported

Auto = Literal["auto"]
# OpenAI's method types, then the other TRL methods Forgeway runs ("sft" is another name for "supervised").
OPENAI_METHODS = ("supervised", "dpo")
METHODS = (*OPENAI_METHODS, *(m for m in METHOD.names if m not in OPENAI_METHODS))
# Names from the core's enum tables (a tuple subscript makes the same Literal as listing the names).
MethodType = Literal[METHODS]
BackendName = Literal[tuple(BACKEND.names)]
QuantizationName = Literal[tuple(q for q in TRAINING_QUANTIZATIONS if q != "none")]
TaskName = Literal[tuple(t.value for t in TRAINED_TASKS)]
ExportName = Literal[tuple(EXPORT_FORMAT.names)]


class RewardFunction(Strict):
    name: Text = Field(min_length=1, description="A registered reward function.")
    weight: float | None = Field(None, ge=0, le=1e6)


class Hyperparameters(Strict):
    """OpenAI's hyperparameters ("auto" leaves the trainer's default), then Forgeway's extras."""

    n_epochs: Annotated[int, Field(ge=1, le=1000)] | Auto | None = None
    batch_size: Annotated[int, Field(ge=1, le=65536)] | Auto | None = None
    learning_rate_multiplier: Annotated[float, Field(gt=0, le=1e4)] | Auto | None = None
    beta: Annotated[float, Field(ge=0, le=1e4)] | Auto | None = Field(
        None, description="dpo, kto, orpo, cpo, grpo: preference strength.")
    learning_rate: float | None = Field(None, gt=0, le=10, description="Forgeway extra: absolute learning rate.")
    max_steps: int | None = Field(None, ge=1, le=UINT32, description="Forgeway extra: overrides n_epochs.")
    gradient_accumulation_steps: int | None = Field(None, ge=1, le=65536)
    max_seq_length: int | None = Field(None, ge=1, le=UINT32)
    warmup_ratio: float | None = Field(None, ge=0, lt=1)
    lr_scheduler: Text | None = Field(None, max_length=64)
    loss_type: Text | None = Field(None, max_length=64, description="Loss variant as TRL names it.")
    num_generations: int | None = Field(None, ge=1, le=1024, description="grpo, rloo: completions per prompt.")
    max_prompt_length: int | None = Field(None, ge=1, le=UINT32)
    max_completion_length: int | None = Field(None, ge=1, le=UINT32)
    reward_functions: list[RewardFunction] | None = Field(None, max_length=32)
    reward_model: Text | None = Field(None, max_length=1024)
    # AlignTune's algorithms' knobs, as MethodParams' messages name them (counterfact_grpo, gbmpo, pace, nmgrpo, metaes).
    counterfact: dict[str, float] | None = Field(None, description="counterfact_grpo: boost_factor, min_weight, "
                                                 "answer_weight.")
    gbmpo: dict[str, float | str] | None = Field(None, description="gbmpo: divergence, divergence_coefficient.")
    pace: dict[str, float | bool] | None = Field(None, description="pace: prior_alpha, prior_beta, kl_half_life, "
                                                 "rho_min, rho_max, curriculum, curriculum_floor.")
    mirror: dict[str, float] | None = Field(None, description="nmgrpo, metaes: coefficient, hidden_units, seed.")
    meta_es: dict[str, float] | None = Field(None, description="metaes: population, sigma, meta_learning_rate, "
                                             "generations, inner_steps.")

    @model_validator(mode="after")
    def _algorithm_knobs(self):
        from google.protobuf import json_format

        from forgeway.v1 import train_pb2

        for name in ("counterfact", "gbmpo", "pace", "mirror", "meta_es"):
            if getattr(self, name) is not None:
                message = getattr(train_pb2.MethodParams(), name)
                known = {f.name for f in message.DESCRIPTOR.fields}
                unknown = [k for k in getattr(self, name) if k not in known]
                if unknown:
                    raise invalid(f"hyperparameters.{name}", f"unknown knob {ascii(unknown[0])}; allowed: "
                                  f"{', '.join(sorted(known))}")
                try:
                    json_format.ParseDict(getattr(self, name), message)
                except json_format.ParseError as exc:
                    raise invalid(f"hyperparameters.{name}", str(exc).splitlines()[0]) from None
        return self

    @model_validator(mode="after")
    def _one_rate(self):
        if self.learning_rate is not None and self.learning_rate_multiplier not in (None, "auto"):
            raise invalid("learning_rate", "set learning_rate or learning_rate_multiplier, not both")
        return self


class MethodSettings(Strict):
    hyperparameters: Hyperparameters | None = None


class Method(Strict):
    """{"type": T, T: {"hyperparameters": {...}}}, as OpenAI nests it."""

    type: MethodType
    supervised: MethodSettings | None = None
    dpo: MethodSettings | None = None
    sft: MethodSettings | None = None
    grpo: MethodSettings | None = None
    kto: MethodSettings | None = None
    orpo: MethodSettings | None = None
    cpo: MethodSettings | None = None
    rloo: MethodSettings | None = None
    online_dpo: MethodSettings | None = None
    reward: MethodSettings | None = None
    counterfact_grpo: MethodSettings | None = None
    gbmpo: MethodSettings | None = None
    pace: MethodSettings | None = None
    nmgrpo: MethodSettings | None = None
    metaes: MethodSettings | None = None

    @field_validator("type", mode="before")
    @classmethod
    def _removed(cls, value: Any) -> Any:
        if isinstance(value, str) and (why := METHOD.why_removed(value)):
            raise invalid("method.type", f"{value!r}: {why}")
        return value

    @model_validator(mode="before")
    @classmethod
    def _reinforcement(cls, data: Any) -> Any:
        if isinstance(data, dict) and (data.get("type") == "reinforcement" or data.get("reinforcement") is not None):
            raise unsupported("type", "reinforcement fine-tuning with graders (use method type grpo)")
        return data

    @model_validator(mode="after")
    def _matching_block(self):
        for name in METHODS:
            if name != self.type and getattr(self, name) is not None:
                raise invalid(name, f"settings for {name} given, but the method type is {self.type}")
        return self

    @property
    def hyperparameters(self) -> Hyperparameters | None:
        block = getattr(self, self.type)
        return block.hyperparameters if block else None


class Lora(Strict):
    """Forgeway extra: train a LoRA adapter instead of full weights."""

    r: int = Field(16, ge=1, le=4096)
    alpha: int = Field(32, ge=1, le=65536)
    dropout: float = Field(0.0, ge=0, lt=1)
    target_modules: list[Text] = Field(default_factory=list, max_length=256)


class FineTuningJobRequest(Strict):
    """POST /v1/fine_tuning/jobs."""

    model: Text = Field(min_length=1, max_length=1024, description="Base model: a served name, hub id or path.")
    training_file: Text = Field(min_length=1, max_length=256, description="A file id from POST /v1/files.")
    validation_file: Text | None = Field(None, min_length=1, max_length=256)
    hyperparameters: Hyperparameters | None = Field(None, description="Deprecated in OpenAI: use method.")
    suffix: Text | None = Field(None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")
    seed: int | None = Field(None, ge=0, le=2**64 - 1)
    method: Method | None = None
    backend: BackendName | None = Field(None, description="Forgeway extra: preferred trainer.")
    allow_fallback: bool | None = Field(None, description="Forgeway extra: use another trainer if it is unavailable.")
    lora: Lora | None = None
    quantization: QuantizationName | None = Field(None, description="Forgeway extra: QLoRA loading.")
    double_quant: bool | None = None
    task: TaskName | None = None
    export: list[ExportName] | None = Field(None, max_length=3)

    @model_validator(mode="before")
    @classmethod
    def _reject_unsupported(cls, data: Any) -> Any:
        return reject_unsupported(data, {"integrations": "training integrations (wandb)",
                                         "metadata": "job metadata"})

    @model_validator(mode="after")
    def _one_place_for_hyperparameters(self):
        if self.hyperparameters is not None and self.method is not None and self.method.hyperparameters is not None:
            raise invalid("hyperparameters", "give hyperparameters in method, not both places")
        return self

    @property
    def method_type(self) -> str:
        return self.method.type if self.method else "supervised"

    @property
    def effective_hyperparameters(self) -> Hyperparameters:
        return (self.method.hyperparameters if self.method else None) or self.hyperparameters or Hyperparameters()


class FileObject(BaseModel):
    """An uploaded file (a stored dataset); Forgeway adds rows and sha256."""

    id: str
    object: Literal["file"]
    bytes: int
    created_at: int
    filename: str
    purpose: str
    status: Literal["uploaded", "processed", "error"]
    status_details: str | None
    expires_at: int | None
    rows: int
    sha256: str


class FileList(BaseModel):
    object: Literal["list"]
    data: list[FileObject]
    has_more: bool


class JobError(BaseModel):
    code: str
    message: str
    param: str | None


class JobProgress(BaseModel):
    step: int
    total_steps: int
    epoch: float
    loss: float | None


class FineTuningJob(BaseModel):
    """A job as OpenAI's fine_tuning.job; Forgeway adds backend and progress. Fields the contract's Job does not
    record (training_file, hyperparameters, seed) are null."""

    id: str
    object: Literal["fine_tuning.job"]
    created_at: int
    finished_at: int | None
    model: str
    fine_tuned_model: str | None
    organization_id: str
    status: Literal["validating_files", "queued", "running", "succeeded", "failed", "cancelled"]
    hyperparameters: dict[str, Any]
    training_file: str | None
    validation_file: str | None
    result_files: list[str]
    trained_tokens: int | None
    error: JobError | None
    seed: int | None
    estimated_finish: int | None
    integrations: list[Any]
    metadata: dict[str, str] | None
    method: dict[str, Any]
    user_provided_suffix: str | None
    backend: str
    progress: JobProgress


class JobList(BaseModel):
    object: Literal["list"]
    data: list[FineTuningJob]
    has_more: bool


class JobEvent(BaseModel):
    id: str
    object: Literal["fine_tuning.job.event"]
    created_at: int
    level: Literal["info", "warn", "error"]
    message: str
    data: dict[str, Any]
    type: Literal["message", "metrics"]


class JobEventList(BaseModel):
    object: Literal["list"]
    data: list[JobEvent]
    has_more: bool
