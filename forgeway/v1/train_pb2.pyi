from forgeway.v1 import common_pb2 as _common_pb2
from forgeway.v1 import jobs_pb2 as _jobs_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TrainingMethod(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TRAINING_METHOD_UNSPECIFIED: _ClassVar[TrainingMethod]
    TRAINING_METHOD_SFT: _ClassVar[TrainingMethod]
    TRAINING_METHOD_DPO: _ClassVar[TrainingMethod]
    TRAINING_METHOD_GRPO: _ClassVar[TrainingMethod]
    TRAINING_METHOD_KTO: _ClassVar[TrainingMethod]
    TRAINING_METHOD_ORPO: _ClassVar[TrainingMethod]
    TRAINING_METHOD_CPO: _ClassVar[TrainingMethod]
    TRAINING_METHOD_RLOO: _ClassVar[TrainingMethod]
    TRAINING_METHOD_ONLINE_DPO: _ClassVar[TrainingMethod]
    TRAINING_METHOD_REWARD: _ClassVar[TrainingMethod]
    TRAINING_METHOD_COUNTERFACT_GRPO: _ClassVar[TrainingMethod]
    TRAINING_METHOD_GBMPO: _ClassVar[TrainingMethod]
    TRAINING_METHOD_PACE: _ClassVar[TrainingMethod]
    TRAINING_METHOD_NMGRPO: _ClassVar[TrainingMethod]
    TRAINING_METHOD_METAES: _ClassVar[TrainingMethod]

class TrainingBackend(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TRAINING_BACKEND_UNSPECIFIED: _ClassVar[TrainingBackend]
    TRAINING_BACKEND_TRL: _ClassVar[TrainingBackend]
    TRAINING_BACKEND_UNSLOTH: _ClassVar[TrainingBackend]

class Precision(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PRECISION_UNSPECIFIED: _ClassVar[Precision]
    PRECISION_FP32: _ClassVar[Precision]
    PRECISION_FP16: _ClassVar[Precision]
    PRECISION_BF16: _ClassVar[Precision]

class ExportFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EXPORT_FORMAT_UNSPECIFIED: _ClassVar[ExportFormat]
    EXPORT_FORMAT_ADAPTER: _ClassVar[ExportFormat]
    EXPORT_FORMAT_MERGED: _ClassVar[ExportFormat]
    EXPORT_FORMAT_GGUF: _ClassVar[ExportFormat]
TRAINING_METHOD_UNSPECIFIED: TrainingMethod
TRAINING_METHOD_SFT: TrainingMethod
TRAINING_METHOD_DPO: TrainingMethod
TRAINING_METHOD_GRPO: TrainingMethod
TRAINING_METHOD_KTO: TrainingMethod
TRAINING_METHOD_ORPO: TrainingMethod
TRAINING_METHOD_CPO: TrainingMethod
TRAINING_METHOD_RLOO: TrainingMethod
TRAINING_METHOD_ONLINE_DPO: TrainingMethod
TRAINING_METHOD_REWARD: TrainingMethod
TRAINING_METHOD_COUNTERFACT_GRPO: TrainingMethod
TRAINING_METHOD_GBMPO: TrainingMethod
TRAINING_METHOD_PACE: TrainingMethod
TRAINING_METHOD_NMGRPO: TrainingMethod
TRAINING_METHOD_METAES: TrainingMethod
TRAINING_BACKEND_UNSPECIFIED: TrainingBackend
TRAINING_BACKEND_TRL: TrainingBackend
TRAINING_BACKEND_UNSLOTH: TrainingBackend
PRECISION_UNSPECIFIED: Precision
PRECISION_FP32: Precision
PRECISION_FP16: Precision
PRECISION_BF16: Precision
EXPORT_FORMAT_UNSPECIFIED: ExportFormat
EXPORT_FORMAT_ADAPTER: ExportFormat
EXPORT_FORMAT_MERGED: ExportFormat
EXPORT_FORMAT_GGUF: ExportFormat

class InlineRows(_message.Message):
    __slots__ = ("rows",)
    ROWS_FIELD_NUMBER: _ClassVar[int]
    rows: _containers.RepeatedCompositeFieldContainer[_struct_pb2.Struct]
    def __init__(self, rows: _Optional[_Iterable[_Union[_struct_pb2.Struct, _Mapping]]] = ...) -> None: ...

class DatasetSource(_message.Message):
    __slots__ = ("path", "hub_name", "dataset_id", "inline", "column_mapping", "split", "percent", "max_samples", "config_name")
    class ColumnMappingEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    PATH_FIELD_NUMBER: _ClassVar[int]
    HUB_NAME_FIELD_NUMBER: _ClassVar[int]
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    INLINE_FIELD_NUMBER: _ClassVar[int]
    COLUMN_MAPPING_FIELD_NUMBER: _ClassVar[int]
    SPLIT_FIELD_NUMBER: _ClassVar[int]
    PERCENT_FIELD_NUMBER: _ClassVar[int]
    MAX_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    CONFIG_NAME_FIELD_NUMBER: _ClassVar[int]
    path: str
    hub_name: str
    dataset_id: str
    inline: InlineRows
    column_mapping: _containers.ScalarMap[str, str]
    split: str
    percent: float
    max_samples: int
    config_name: str
    def __init__(self, path: _Optional[str] = ..., hub_name: _Optional[str] = ..., dataset_id: _Optional[str] = ..., inline: _Optional[_Union[InlineRows, _Mapping]] = ..., column_mapping: _Optional[_Mapping[str, str]] = ..., split: _Optional[str] = ..., percent: _Optional[float] = ..., max_samples: _Optional[int] = ..., config_name: _Optional[str] = ...) -> None: ...

class Hyperparameters(_message.Message):
    __slots__ = ("epochs", "max_steps", "batch_size", "gradient_accumulation_steps", "learning_rate", "lr_scheduler", "warmup_ratio", "max_seq_length", "seed", "precision", "save_steps")
    EPOCHS_FIELD_NUMBER: _ClassVar[int]
    MAX_STEPS_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    GRADIENT_ACCUMULATION_STEPS_FIELD_NUMBER: _ClassVar[int]
    LEARNING_RATE_FIELD_NUMBER: _ClassVar[int]
    LR_SCHEDULER_FIELD_NUMBER: _ClassVar[int]
    WARMUP_RATIO_FIELD_NUMBER: _ClassVar[int]
    MAX_SEQ_LENGTH_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    PRECISION_FIELD_NUMBER: _ClassVar[int]
    SAVE_STEPS_FIELD_NUMBER: _ClassVar[int]
    epochs: float
    max_steps: int
    batch_size: int
    gradient_accumulation_steps: int
    learning_rate: float
    lr_scheduler: str
    warmup_ratio: float
    max_seq_length: int
    seed: int
    precision: Precision
    save_steps: int
    def __init__(self, epochs: _Optional[float] = ..., max_steps: _Optional[int] = ..., batch_size: _Optional[int] = ..., gradient_accumulation_steps: _Optional[int] = ..., learning_rate: _Optional[float] = ..., lr_scheduler: _Optional[str] = ..., warmup_ratio: _Optional[float] = ..., max_seq_length: _Optional[int] = ..., seed: _Optional[int] = ..., precision: _Optional[_Union[Precision, str]] = ..., save_steps: _Optional[int] = ...) -> None: ...

class LoraParams(_message.Message):
    __slots__ = ("r", "alpha", "dropout", "target_modules")
    R_FIELD_NUMBER: _ClassVar[int]
    ALPHA_FIELD_NUMBER: _ClassVar[int]
    DROPOUT_FIELD_NUMBER: _ClassVar[int]
    TARGET_MODULES_FIELD_NUMBER: _ClassVar[int]
    r: int
    alpha: int
    dropout: float
    target_modules: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, r: _Optional[int] = ..., alpha: _Optional[int] = ..., dropout: _Optional[float] = ..., target_modules: _Optional[_Iterable[str]] = ...) -> None: ...

class QuantizationParams(_message.Message):
    __slots__ = ("quantization", "double_quant")
    QUANTIZATION_FIELD_NUMBER: _ClassVar[int]
    DOUBLE_QUANT_FIELD_NUMBER: _ClassVar[int]
    quantization: _common_pb2.Quantization
    double_quant: bool
    def __init__(self, quantization: _Optional[_Union[_common_pb2.Quantization, str]] = ..., double_quant: _Optional[bool] = ...) -> None: ...

class RewardFunction(_message.Message):
    __slots__ = ("name", "weight")
    NAME_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    name: str
    weight: float
    def __init__(self, name: _Optional[str] = ..., weight: _Optional[float] = ...) -> None: ...

class MethodParams(_message.Message):
    __slots__ = ("beta", "loss_type", "num_generations", "max_prompt_length", "max_completion_length", "reward_functions", "reward_model", "counterfact", "gbmpo", "pace", "mirror", "meta_es")
    BETA_FIELD_NUMBER: _ClassVar[int]
    LOSS_TYPE_FIELD_NUMBER: _ClassVar[int]
    NUM_GENERATIONS_FIELD_NUMBER: _ClassVar[int]
    MAX_PROMPT_LENGTH_FIELD_NUMBER: _ClassVar[int]
    MAX_COMPLETION_LENGTH_FIELD_NUMBER: _ClassVar[int]
    REWARD_FUNCTIONS_FIELD_NUMBER: _ClassVar[int]
    REWARD_MODEL_FIELD_NUMBER: _ClassVar[int]
    COUNTERFACT_FIELD_NUMBER: _ClassVar[int]
    GBMPO_FIELD_NUMBER: _ClassVar[int]
    PACE_FIELD_NUMBER: _ClassVar[int]
    MIRROR_FIELD_NUMBER: _ClassVar[int]
    META_ES_FIELD_NUMBER: _ClassVar[int]
    beta: float
    loss_type: str
    num_generations: int
    max_prompt_length: int
    max_completion_length: int
    reward_functions: _containers.RepeatedCompositeFieldContainer[RewardFunction]
    reward_model: str
    counterfact: CounterfactParams
    gbmpo: GbmpoParams
    pace: PaceParams
    mirror: MirrorParams
    meta_es: MetaEsParams
    def __init__(self, beta: _Optional[float] = ..., loss_type: _Optional[str] = ..., num_generations: _Optional[int] = ..., max_prompt_length: _Optional[int] = ..., max_completion_length: _Optional[int] = ..., reward_functions: _Optional[_Iterable[_Union[RewardFunction, _Mapping]]] = ..., reward_model: _Optional[str] = ..., counterfact: _Optional[_Union[CounterfactParams, _Mapping]] = ..., gbmpo: _Optional[_Union[GbmpoParams, _Mapping]] = ..., pace: _Optional[_Union[PaceParams, _Mapping]] = ..., mirror: _Optional[_Union[MirrorParams, _Mapping]] = ..., meta_es: _Optional[_Union[MetaEsParams, _Mapping]] = ...) -> None: ...

class CounterfactParams(_message.Message):
    __slots__ = ("boost_factor", "min_weight", "answer_weight")
    BOOST_FACTOR_FIELD_NUMBER: _ClassVar[int]
    MIN_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    ANSWER_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    boost_factor: float
    min_weight: float
    answer_weight: float
    def __init__(self, boost_factor: _Optional[float] = ..., min_weight: _Optional[float] = ..., answer_weight: _Optional[float] = ...) -> None: ...

class GbmpoParams(_message.Message):
    __slots__ = ("divergence", "divergence_coefficient")
    DIVERGENCE_FIELD_NUMBER: _ClassVar[int]
    DIVERGENCE_COEFFICIENT_FIELD_NUMBER: _ClassVar[int]
    divergence: str
    divergence_coefficient: float
    def __init__(self, divergence: _Optional[str] = ..., divergence_coefficient: _Optional[float] = ...) -> None: ...

class PaceParams(_message.Message):
    __slots__ = ("prior_alpha", "prior_beta", "kl_half_life", "rho_min", "rho_max", "curriculum", "curriculum_floor")
    PRIOR_ALPHA_FIELD_NUMBER: _ClassVar[int]
    PRIOR_BETA_FIELD_NUMBER: _ClassVar[int]
    KL_HALF_LIFE_FIELD_NUMBER: _ClassVar[int]
    RHO_MIN_FIELD_NUMBER: _ClassVar[int]
    RHO_MAX_FIELD_NUMBER: _ClassVar[int]
    CURRICULUM_FIELD_NUMBER: _ClassVar[int]
    CURRICULUM_FLOOR_FIELD_NUMBER: _ClassVar[int]
    prior_alpha: float
    prior_beta: float
    kl_half_life: float
    rho_min: float
    rho_max: float
    curriculum: bool
    curriculum_floor: float
    def __init__(self, prior_alpha: _Optional[float] = ..., prior_beta: _Optional[float] = ..., kl_half_life: _Optional[float] = ..., rho_min: _Optional[float] = ..., rho_max: _Optional[float] = ..., curriculum: _Optional[bool] = ..., curriculum_floor: _Optional[float] = ...) -> None: ...

class MirrorParams(_message.Message):
    __slots__ = ("coefficient", "hidden_units", "seed")
    COEFFICIENT_FIELD_NUMBER: _ClassVar[int]
    HIDDEN_UNITS_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    coefficient: float
    hidden_units: int
    seed: int
    def __init__(self, coefficient: _Optional[float] = ..., hidden_units: _Optional[int] = ..., seed: _Optional[int] = ...) -> None: ...

class MetaEsParams(_message.Message):
    __slots__ = ("population", "sigma", "meta_learning_rate", "generations", "inner_steps")
    POPULATION_FIELD_NUMBER: _ClassVar[int]
    SIGMA_FIELD_NUMBER: _ClassVar[int]
    META_LEARNING_RATE_FIELD_NUMBER: _ClassVar[int]
    GENERATIONS_FIELD_NUMBER: _ClassVar[int]
    INNER_STEPS_FIELD_NUMBER: _ClassVar[int]
    population: int
    sigma: float
    meta_learning_rate: float
    generations: int
    inner_steps: int
    def __init__(self, population: _Optional[int] = ..., sigma: _Optional[float] = ..., meta_learning_rate: _Optional[float] = ..., generations: _Optional[int] = ..., inner_steps: _Optional[int] = ...) -> None: ...

class CheckpointRef(_message.Message):
    __slots__ = ("job_id", "checkpoint")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    checkpoint: str
    def __init__(self, job_id: _Optional[str] = ..., checkpoint: _Optional[str] = ...) -> None: ...

class TrainOutput(_message.Message):
    __slots__ = ("model_name", "formats", "suffix", "description", "keep_checkpoint")
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    FORMATS_FIELD_NUMBER: _ClassVar[int]
    SUFFIX_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    KEEP_CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    formats: _containers.RepeatedScalarFieldContainer[ExportFormat]
    suffix: str
    description: str
    keep_checkpoint: bool
    def __init__(self, model_name: _Optional[str] = ..., formats: _Optional[_Iterable[_Union[ExportFormat, str]]] = ..., suffix: _Optional[str] = ..., description: _Optional[str] = ..., keep_checkpoint: _Optional[bool] = ...) -> None: ...

class TrainRequest(_message.Message):
    __slots__ = ("base_model", "method", "task", "dataset", "eval_dataset", "hyperparameters", "lora", "quantization", "method_params", "output", "backend", "allow_fallback", "resume_from")
    BASE_MODEL_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    EVAL_DATASET_FIELD_NUMBER: _ClassVar[int]
    HYPERPARAMETERS_FIELD_NUMBER: _ClassVar[int]
    LORA_FIELD_NUMBER: _ClassVar[int]
    QUANTIZATION_FIELD_NUMBER: _ClassVar[int]
    METHOD_PARAMS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    ALLOW_FALLBACK_FIELD_NUMBER: _ClassVar[int]
    RESUME_FROM_FIELD_NUMBER: _ClassVar[int]
    base_model: str
    method: TrainingMethod
    task: _common_pb2.Task
    dataset: DatasetSource
    eval_dataset: DatasetSource
    hyperparameters: Hyperparameters
    lora: LoraParams
    quantization: QuantizationParams
    method_params: MethodParams
    output: TrainOutput
    backend: TrainingBackend
    allow_fallback: bool
    resume_from: CheckpointRef
    def __init__(self, base_model: _Optional[str] = ..., method: _Optional[_Union[TrainingMethod, str]] = ..., task: _Optional[_Union[_common_pb2.Task, str]] = ..., dataset: _Optional[_Union[DatasetSource, _Mapping]] = ..., eval_dataset: _Optional[_Union[DatasetSource, _Mapping]] = ..., hyperparameters: _Optional[_Union[Hyperparameters, _Mapping]] = ..., lora: _Optional[_Union[LoraParams, _Mapping]] = ..., quantization: _Optional[_Union[QuantizationParams, _Mapping]] = ..., method_params: _Optional[_Union[MethodParams, _Mapping]] = ..., output: _Optional[_Union[TrainOutput, _Mapping]] = ..., backend: _Optional[_Union[TrainingBackend, str]] = ..., allow_fallback: _Optional[bool] = ..., resume_from: _Optional[_Union[CheckpointRef, _Mapping]] = ...) -> None: ...

class TrainResponse(_message.Message):
    __slots__ = ("event",)
    EVENT_FIELD_NUMBER: _ClassVar[int]
    event: _jobs_pb2.JobEvent
    def __init__(self, event: _Optional[_Union[_jobs_pb2.JobEvent, _Mapping]] = ...) -> None: ...

class CreateJobRequest(_message.Message):
    __slots__ = ("train", "validate_only")
    TRAIN_FIELD_NUMBER: _ClassVar[int]
    VALIDATE_ONLY_FIELD_NUMBER: _ClassVar[int]
    train: TrainRequest
    validate_only: bool
    def __init__(self, train: _Optional[_Union[TrainRequest, _Mapping]] = ..., validate_only: _Optional[bool] = ...) -> None: ...

class CreateJobResponse(_message.Message):
    __slots__ = ("job", "advice")
    JOB_FIELD_NUMBER: _ClassVar[int]
    ADVICE_FIELD_NUMBER: _ClassVar[int]
    job: _jobs_pb2.Job
    advice: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, job: _Optional[_Union[_jobs_pb2.Job, _Mapping]] = ..., advice: _Optional[_Iterable[str]] = ...) -> None: ...
