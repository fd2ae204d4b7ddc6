import datetime

from forgeway.v1 import common_pb2 as _common_pb2
from forgeway.v1 import train_pb2 as _train_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ModelInfo(_message.Message):
    __slots__ = ("name", "task", "context_length", "quantization", "adapters", "loaded", "backend", "source", "aliases", "chat", "unsupported_features", "dimensions", "matryoshka_dimensions", "pooling", "description", "created", "base_model", "provider", "trained_by")
    class UnsupportedFeaturesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_LENGTH_FIELD_NUMBER: _ClassVar[int]
    QUANTIZATION_FIELD_NUMBER: _ClassVar[int]
    ADAPTERS_FIELD_NUMBER: _ClassVar[int]
    LOADED_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    ALIASES_FIELD_NUMBER: _ClassVar[int]
    CHAT_FIELD_NUMBER: _ClassVar[int]
    UNSUPPORTED_FEATURES_FIELD_NUMBER: _ClassVar[int]
    DIMENSIONS_FIELD_NUMBER: _ClassVar[int]
    MATRYOSHKA_DIMENSIONS_FIELD_NUMBER: _ClassVar[int]
    POOLING_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    BASE_MODEL_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    TRAINED_BY_FIELD_NUMBER: _ClassVar[int]
    name: str
    task: _common_pb2.Task
    context_length: int
    quantization: _common_pb2.Quantization
    adapters: _containers.RepeatedScalarFieldContainer[str]
    loaded: bool
    backend: str
    source: str
    aliases: _containers.RepeatedScalarFieldContainer[str]
    chat: bool
    unsupported_features: _containers.ScalarMap[str, str]
    dimensions: int
    matryoshka_dimensions: _containers.RepeatedScalarFieldContainer[int]
    pooling: str
    description: str
    created: _timestamp_pb2.Timestamp
    base_model: str
    provider: str
    trained_by: str
    def __init__(self, name: _Optional[str] = ..., task: _Optional[_Union[_common_pb2.Task, str]] = ..., context_length: _Optional[int] = ..., quantization: _Optional[_Union[_common_pb2.Quantization, str]] = ..., adapters: _Optional[_Iterable[str]] = ..., loaded: _Optional[bool] = ..., backend: _Optional[str] = ..., source: _Optional[str] = ..., aliases: _Optional[_Iterable[str]] = ..., chat: _Optional[bool] = ..., unsupported_features: _Optional[_Mapping[str, str]] = ..., dimensions: _Optional[int] = ..., matryoshka_dimensions: _Optional[_Iterable[int]] = ..., pooling: _Optional[str] = ..., description: _Optional[str] = ..., created: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., base_model: _Optional[str] = ..., provider: _Optional[str] = ..., trained_by: _Optional[str] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models",)
    MODELS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelInfo]
    def __init__(self, models: _Optional[_Iterable[_Union[ModelInfo, _Mapping]]] = ...) -> None: ...

class LoadModelRequest(_message.Message):
    __slots__ = ("name", "source", "task", "quantization", "base_model", "options")
    class OptionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    QUANTIZATION_FIELD_NUMBER: _ClassVar[int]
    BASE_MODEL_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    name: str
    source: str
    task: _common_pb2.Task
    quantization: _common_pb2.Quantization
    base_model: str
    options: _containers.ScalarMap[str, str]
    def __init__(self, name: _Optional[str] = ..., source: _Optional[str] = ..., task: _Optional[_Union[_common_pb2.Task, str]] = ..., quantization: _Optional[_Union[_common_pb2.Quantization, str]] = ..., base_model: _Optional[str] = ..., options: _Optional[_Mapping[str, str]] = ...) -> None: ...

class LoadModelResponse(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: ModelInfo
    def __init__(self, model: _Optional[_Union[ModelInfo, _Mapping]] = ...) -> None: ...

class UnloadModelRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class UnloadModelResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DeleteModelRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DeleteModelResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ExportModelRequest(_message.Message):
    __slots__ = ("name", "format", "output_name", "options")
    class OptionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_NAME_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    name: str
    format: _train_pb2.ExportFormat
    output_name: str
    options: _containers.ScalarMap[str, str]
    def __init__(self, name: _Optional[str] = ..., format: _Optional[_Union[_train_pb2.ExportFormat, str]] = ..., output_name: _Optional[str] = ..., options: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ExportModelResponse(_message.Message):
    __slots__ = ("model", "path", "size_bytes")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    model: ModelInfo
    path: str
    size_bytes: int
    def __init__(self, model: _Optional[_Union[ModelInfo, _Mapping]] = ..., path: _Optional[str] = ..., size_bytes: _Optional[int] = ...) -> None: ...

class DownloadModelRequest(_message.Message):
    __slots__ = ("name", "checkpoint")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    name: str
    checkpoint: _train_pb2.CheckpointRef
    def __init__(self, name: _Optional[str] = ..., checkpoint: _Optional[_Union[_train_pb2.CheckpointRef, _Mapping]] = ...) -> None: ...

class DownloadModelChunk(_message.Message):
    __slots__ = ("files", "path", "offset", "data")
    FILES_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    files: _containers.RepeatedCompositeFieldContainer[DownloadedFile]
    path: str
    offset: int
    data: bytes
    def __init__(self, files: _Optional[_Iterable[_Union[DownloadedFile, _Mapping]]] = ..., path: _Optional[str] = ..., offset: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...

class DownloadedFile(_message.Message):
    __slots__ = ("path", "size_bytes", "sha256")
    PATH_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    path: str
    size_bytes: int
    sha256: str
    def __init__(self, path: _Optional[str] = ..., size_bytes: _Optional[int] = ..., sha256: _Optional[str] = ...) -> None: ...

class EvaluateModelRequest(_message.Message):
    __slots__ = ("name", "dataset", "generate_samples", "max_new_tokens")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    GENERATE_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    MAX_NEW_TOKENS_FIELD_NUMBER: _ClassVar[int]
    name: str
    dataset: _train_pb2.DatasetSource
    generate_samples: int
    max_new_tokens: int
    def __init__(self, name: _Optional[str] = ..., dataset: _Optional[_Union[_train_pb2.DatasetSource, _Mapping]] = ..., generate_samples: _Optional[int] = ..., max_new_tokens: _Optional[int] = ...) -> None: ...

class EvaluateModelResponse(_message.Message):
    __slots__ = ("metrics", "examples")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    METRICS_FIELD_NUMBER: _ClassVar[int]
    EXAMPLES_FIELD_NUMBER: _ClassVar[int]
    metrics: _containers.ScalarMap[str, float]
    examples: int
    def __init__(self, metrics: _Optional[_Mapping[str, float]] = ..., examples: _Optional[int] = ...) -> None: ...
