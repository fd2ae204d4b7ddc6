from forgeway.v1 import common_pb2 as _common_pb2
from forgeway.v1 import models_pb2 as _models_pb2
from forgeway.v1 import train_pb2 as _train_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Availability(_message.Message):
    __slots__ = ("available", "reason")
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    available: bool
    reason: str
    def __init__(self, available: _Optional[bool] = ..., reason: _Optional[str] = ...) -> None: ...

class GenerationFeatures(_message.Message):
    __slots__ = ("streaming", "logprobs", "json_schema", "grammar", "stop", "seed", "multiple_choices", "adapters", "sampling_params", "tools", "reasoning")
    STREAMING_FIELD_NUMBER: _ClassVar[int]
    LOGPROBS_FIELD_NUMBER: _ClassVar[int]
    JSON_SCHEMA_FIELD_NUMBER: _ClassVar[int]
    GRAMMAR_FIELD_NUMBER: _ClassVar[int]
    STOP_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    MULTIPLE_CHOICES_FIELD_NUMBER: _ClassVar[int]
    ADAPTERS_FIELD_NUMBER: _ClassVar[int]
    SAMPLING_PARAMS_FIELD_NUMBER: _ClassVar[int]
    TOOLS_FIELD_NUMBER: _ClassVar[int]
    REASONING_FIELD_NUMBER: _ClassVar[int]
    streaming: bool
    logprobs: bool
    json_schema: bool
    grammar: bool
    stop: bool
    seed: bool
    multiple_choices: bool
    adapters: bool
    sampling_params: _containers.RepeatedScalarFieldContainer[str]
    tools: bool
    reasoning: bool
    def __init__(self, streaming: _Optional[bool] = ..., logprobs: _Optional[bool] = ..., json_schema: _Optional[bool] = ..., grammar: _Optional[bool] = ..., stop: _Optional[bool] = ..., seed: _Optional[bool] = ..., multiple_choices: _Optional[bool] = ..., adapters: _Optional[bool] = ..., sampling_params: _Optional[_Iterable[str]] = ..., tools: _Optional[bool] = ..., reasoning: _Optional[bool] = ...) -> None: ...

class TrainingFeatures(_message.Message):
    __slots__ = ("methods", "tasks", "lora", "quantizations", "export_formats")
    METHODS_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    LORA_FIELD_NUMBER: _ClassVar[int]
    QUANTIZATIONS_FIELD_NUMBER: _ClassVar[int]
    EXPORT_FORMATS_FIELD_NUMBER: _ClassVar[int]
    methods: _containers.RepeatedScalarFieldContainer[_train_pb2.TrainingMethod]
    tasks: _containers.RepeatedScalarFieldContainer[_common_pb2.Task]
    lora: bool
    quantizations: _containers.RepeatedScalarFieldContainer[_common_pb2.Quantization]
    export_formats: _containers.RepeatedScalarFieldContainer[_train_pb2.ExportFormat]
    def __init__(self, methods: _Optional[_Iterable[_Union[_train_pb2.TrainingMethod, str]]] = ..., tasks: _Optional[_Iterable[_Union[_common_pb2.Task, str]]] = ..., lora: _Optional[bool] = ..., quantizations: _Optional[_Iterable[_Union[_common_pb2.Quantization, str]]] = ..., export_formats: _Optional[_Iterable[_Union[_train_pb2.ExportFormat, str]]] = ...) -> None: ...

class Hardware(_message.Message):
    __slots__ = ("device", "accelerator", "accelerator_memory_total", "accelerator_memory_free", "ram_total", "ram_available", "cpu_cores", "profile", "recommendation", "disk_free", "disk_total", "accelerator_count", "driver_version", "cuda_version", "recommendations")
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    ACCELERATOR_FIELD_NUMBER: _ClassVar[int]
    ACCELERATOR_MEMORY_TOTAL_FIELD_NUMBER: _ClassVar[int]
    ACCELERATOR_MEMORY_FREE_FIELD_NUMBER: _ClassVar[int]
    RAM_TOTAL_FIELD_NUMBER: _ClassVar[int]
    RAM_AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    CPU_CORES_FIELD_NUMBER: _ClassVar[int]
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    RECOMMENDATION_FIELD_NUMBER: _ClassVar[int]
    DISK_FREE_FIELD_NUMBER: _ClassVar[int]
    DISK_TOTAL_FIELD_NUMBER: _ClassVar[int]
    ACCELERATOR_COUNT_FIELD_NUMBER: _ClassVar[int]
    DRIVER_VERSION_FIELD_NUMBER: _ClassVar[int]
    CUDA_VERSION_FIELD_NUMBER: _ClassVar[int]
    RECOMMENDATIONS_FIELD_NUMBER: _ClassVar[int]
    device: str
    accelerator: str
    accelerator_memory_total: int
    accelerator_memory_free: int
    ram_total: int
    ram_available: int
    cpu_cores: int
    profile: str
    recommendation: str
    disk_free: int
    disk_total: int
    accelerator_count: int
    driver_version: str
    cuda_version: str
    recommendations: _containers.RepeatedCompositeFieldContainer[Recommendation]
    def __init__(self, device: _Optional[str] = ..., accelerator: _Optional[str] = ..., accelerator_memory_total: _Optional[int] = ..., accelerator_memory_free: _Optional[int] = ..., ram_total: _Optional[int] = ..., ram_available: _Optional[int] = ..., cpu_cores: _Optional[int] = ..., profile: _Optional[str] = ..., recommendation: _Optional[str] = ..., disk_free: _Optional[int] = ..., disk_total: _Optional[int] = ..., accelerator_count: _Optional[int] = ..., driver_version: _Optional[str] = ..., cuda_version: _Optional[str] = ..., recommendations: _Optional[_Iterable[_Union[Recommendation, _Mapping]]] = ...) -> None: ...

class Recommendation(_message.Message):
    __slots__ = ("task", "model", "alternatives", "hyperparameters", "lora", "quantization")
    TASK_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ALTERNATIVES_FIELD_NUMBER: _ClassVar[int]
    HYPERPARAMETERS_FIELD_NUMBER: _ClassVar[int]
    LORA_FIELD_NUMBER: _ClassVar[int]
    QUANTIZATION_FIELD_NUMBER: _ClassVar[int]
    task: _common_pb2.Task
    model: str
    alternatives: _containers.RepeatedScalarFieldContainer[str]
    hyperparameters: _train_pb2.Hyperparameters
    lora: _train_pb2.LoraParams
    quantization: _train_pb2.QuantizationParams
    def __init__(self, task: _Optional[_Union[_common_pb2.Task, str]] = ..., model: _Optional[str] = ..., alternatives: _Optional[_Iterable[str]] = ..., hyperparameters: _Optional[_Union[_train_pb2.Hyperparameters, _Mapping]] = ..., lora: _Optional[_Union[_train_pb2.LoraParams, _Mapping]] = ..., quantization: _Optional[_Union[_train_pb2.QuantizationParams, _Mapping]] = ...) -> None: ...

class Load(_message.Message):
    __slots__ = ("in_flight", "queue_depth", "max_concurrency", "max_queue")
    IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    QUEUE_DEPTH_FIELD_NUMBER: _ClassVar[int]
    MAX_CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    MAX_QUEUE_FIELD_NUMBER: _ClassVar[int]
    in_flight: int
    queue_depth: int
    max_concurrency: int
    max_queue: int
    def __init__(self, in_flight: _Optional[int] = ..., queue_depth: _Optional[int] = ..., max_concurrency: _Optional[int] = ..., max_queue: _Optional[int] = ...) -> None: ...

class EndpointStatus(_message.Message):
    __slots__ = ("address", "health", "breaker", "capabilities")
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    HEALTH_FIELD_NUMBER: _ClassVar[int]
    BREAKER_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    address: str
    health: str
    breaker: str
    capabilities: CapabilitiesResponse
    def __init__(self, address: _Optional[str] = ..., health: _Optional[str] = ..., breaker: _Optional[str] = ..., capabilities: _Optional[_Union[CapabilitiesResponse, _Mapping]] = ...) -> None: ...

class CapabilitiesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CapabilitiesResponse(_message.Message):
    __slots__ = ("backend", "version", "instance_id", "availability", "rpcs", "models", "generation", "training", "hardware", "load", "library_versions", "endpoints")
    class LibraryVersionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    AVAILABILITY_FIELD_NUMBER: _ClassVar[int]
    RPCS_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    TRAINING_FIELD_NUMBER: _ClassVar[int]
    HARDWARE_FIELD_NUMBER: _ClassVar[int]
    LOAD_FIELD_NUMBER: _ClassVar[int]
    LIBRARY_VERSIONS_FIELD_NUMBER: _ClassVar[int]
    ENDPOINTS_FIELD_NUMBER: _ClassVar[int]
    backend: str
    version: str
    instance_id: str
    availability: Availability
    rpcs: _containers.RepeatedScalarFieldContainer[str]
    models: _containers.RepeatedCompositeFieldContainer[_models_pb2.ModelInfo]
    generation: GenerationFeatures
    training: TrainingFeatures
    hardware: Hardware
    load: Load
    library_versions: _containers.ScalarMap[str, str]
    endpoints: _containers.RepeatedCompositeFieldContainer[EndpointStatus]
    def __init__(self, backend: _Optional[str] = ..., version: _Optional[str] = ..., instance_id: _Optional[str] = ..., availability: _Optional[_Union[Availability, _Mapping]] = ..., rpcs: _Optional[_Iterable[str]] = ..., models: _Optional[_Iterable[_Union[_models_pb2.ModelInfo, _Mapping]]] = ..., generation: _Optional[_Union[GenerationFeatures, _Mapping]] = ..., training: _Optional[_Union[TrainingFeatures, _Mapping]] = ..., hardware: _Optional[_Union[Hardware, _Mapping]] = ..., load: _Optional[_Union[Load, _Mapping]] = ..., library_versions: _Optional[_Mapping[str, str]] = ..., endpoints: _Optional[_Iterable[_Union[EndpointStatus, _Mapping]]] = ...) -> None: ...
