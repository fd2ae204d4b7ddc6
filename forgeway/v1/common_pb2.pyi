from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from typing import ClassVar as _ClassVar

DESCRIPTOR: _descriptor.FileDescriptor

class Task(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TASK_UNSPECIFIED: _ClassVar[Task]
    TASK_TEXT_GENERATION: _ClassVar[Task]
    TASK_SUMMARIZATION: _ClassVar[Task]
    TASK_EXTRACTIVE_QUESTION_ANSWERING: _ClassVar[Task]
    TASK_EMBEDDING: _ClassVar[Task]
    TASK_RERANK: _ClassVar[Task]

class Quantization(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    QUANTIZATION_UNSPECIFIED: _ClassVar[Quantization]
    QUANTIZATION_NONE: _ClassVar[Quantization]
    QUANTIZATION_4BIT_NF4: _ClassVar[Quantization]
    QUANTIZATION_4BIT_FP4: _ClassVar[Quantization]
    QUANTIZATION_8BIT: _ClassVar[Quantization]
    QUANTIZATION_GGUF: _ClassVar[Quantization]
TASK_UNSPECIFIED: Task
TASK_TEXT_GENERATION: Task
TASK_SUMMARIZATION: Task
TASK_EXTRACTIVE_QUESTION_ANSWERING: Task
TASK_EMBEDDING: Task
TASK_RERANK: Task
QUANTIZATION_UNSPECIFIED: Quantization
QUANTIZATION_NONE: Quantization
QUANTIZATION_4BIT_NF4: Quantization
QUANTIZATION_4BIT_FP4: Quantization
QUANTIZATION_8BIT: Quantization
QUANTIZATION_GGUF: Quantization
