from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PluginKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PLUGIN_KIND_UNSPECIFIED: _ClassVar[PluginKind]
    PLUGIN_KIND_PREPROCESSING: _ClassVar[PluginKind]
    PLUGIN_KIND_POSTPROCESSING: _ClassVar[PluginKind]
    PLUGIN_KIND_TOOLS: _ClassVar[PluginKind]
PLUGIN_KIND_UNSPECIFIED: PluginKind
PLUGIN_KIND_PREPROCESSING: PluginKind
PLUGIN_KIND_POSTPROCESSING: PluginKind
PLUGIN_KIND_TOOLS: PluginKind

class PluginInfo(_message.Message):
    __slots__ = ("name", "kind", "description", "source", "options")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    name: str
    kind: PluginKind
    description: str
    source: str
    options: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., kind: _Optional[_Union[PluginKind, str]] = ..., description: _Optional[str] = ..., source: _Optional[str] = ..., options: _Optional[_Iterable[str]] = ...) -> None: ...

class PluginEntry(_message.Message):
    __slots__ = ("model", "name", "kind", "enabled", "options", "position")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    model: str
    name: str
    kind: PluginKind
    enabled: bool
    options: _struct_pb2.Struct
    position: int
    def __init__(self, model: _Optional[str] = ..., name: _Optional[str] = ..., kind: _Optional[_Union[PluginKind, str]] = ..., enabled: _Optional[bool] = ..., options: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., position: _Optional[int] = ...) -> None: ...

class ListPluginsRequest(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: str
    def __init__(self, model: _Optional[str] = ...) -> None: ...

class ListPluginsResponse(_message.Message):
    __slots__ = ("entries", "available")
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[PluginEntry]
    available: _containers.RepeatedCompositeFieldContainer[PluginInfo]
    def __init__(self, entries: _Optional[_Iterable[_Union[PluginEntry, _Mapping]]] = ..., available: _Optional[_Iterable[_Union[PluginInfo, _Mapping]]] = ...) -> None: ...

class RegisterPluginRequest(_message.Message):
    __slots__ = ("model", "name", "options", "enabled")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    model: str
    name: str
    options: _struct_pb2.Struct
    enabled: bool
    def __init__(self, model: _Optional[str] = ..., name: _Optional[str] = ..., options: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., enabled: _Optional[bool] = ...) -> None: ...

class RegisterPluginResponse(_message.Message):
    __slots__ = ("entry",)
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    entry: PluginEntry
    def __init__(self, entry: _Optional[_Union[PluginEntry, _Mapping]] = ...) -> None: ...

class UpdatePluginRequest(_message.Message):
    __slots__ = ("model", "name", "enabled", "options")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    model: str
    name: str
    enabled: bool
    options: _struct_pb2.Struct
    def __init__(self, model: _Optional[str] = ..., name: _Optional[str] = ..., enabled: _Optional[bool] = ..., options: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class UpdatePluginResponse(_message.Message):
    __slots__ = ("entry",)
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    entry: PluginEntry
    def __init__(self, entry: _Optional[_Union[PluginEntry, _Mapping]] = ...) -> None: ...

class UnregisterPluginRequest(_message.Message):
    __slots__ = ("model", "name")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    model: str
    name: str
    def __init__(self, model: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class UnregisterPluginResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
