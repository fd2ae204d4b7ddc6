"""PluginService in the SDK: the gateway's plugin pipelines per model, listed and changed at run time."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from forgeway.core.enums import PLUGIN_KIND
from forgeway.core.structs import struct_to_dict
from forgeway.v1 import plugins_pb2, plugins_pb2_grpc

from .connection import DEFAULT

if TYPE_CHECKING:
    from .client import Client


@dataclass
class PluginInfo:
    """A plugin the gateway can run."""

    name: str
    kind: str  # preprocessing, postprocessing or tools
    description: str = ""
    source: str = ""  # "builtin" or an installed entry point's "module:attr"
    options: list[str] = field(default_factory=list)


@dataclass
class PluginEntry:
    """A plugin in one model's pipeline ("*": every model without a pipeline of its own)."""

    model: str
    name: str
    kind: str
    enabled: bool
    options: dict[str, Any] = field(default_factory=dict)
    position: int = 0


@dataclass
class PluginListing:
    """The pipelines' entries and the plugins that can be registered."""

    entries: list[PluginEntry]
    available: list[PluginInfo]


def _entry(entry: plugins_pb2.PluginEntry) -> PluginEntry:
    return PluginEntry(entry.model, entry.name, PLUGIN_KIND.name(entry.kind), entry.enabled,
                       struct_to_dict(entry.options), entry.position)


def _struct_fields(request, options: dict[str, Any] | None) -> None:
    if options is not None:
        request.options.SetInParent()
        request.options.update(options)


class Plugins:
    """PluginService (gateway only): list, register, enable, disable, reconfigure and unregister plugins."""

    def __init__(self, client: Client):
        self._client = client
        self._stub = plugins_pb2_grpc.PluginServiceStub(client._channel)

    def list(self, model: str = "", *, timeout: Any = DEFAULT) -> PluginListing:
        """Every pipeline's entries (or one model's: "*" for the default pipeline) and the available plugins."""
        response = self._client._unary(self._stub.ListPlugins, plugins_pb2.ListPluginsRequest(model=model), timeout)
        return PluginListing(
            [_entry(e) for e in response.entries],
            [PluginInfo(i.name, PLUGIN_KIND.name(i.kind), i.description, i.source, list(i.options))
             for i in response.available])

    def register(self, name: str, options: dict[str, Any] | None = None, *, model: str = "*",
                 enabled: bool = True, timeout: Any = DEFAULT) -> PluginEntry:
        """Add a built-in or installed plugin at the end of a model's pipeline."""
        request = plugins_pb2.RegisterPluginRequest(model=model, name=name, enabled=enabled)
        _struct_fields(request, options)
        return _entry(self._client._unary(self._stub.RegisterPlugin, request, timeout).entry)

    def update(self, name: str, *, model: str = "*", enabled: bool | None = None,
               options: dict[str, Any] | None = None, timeout: Any = DEFAULT) -> PluginEntry:
        """Enable or disable a plugin, or replace its options (whatever is None stays as it is)."""
        request = plugins_pb2.UpdatePluginRequest(model=model, name=name)
        if enabled is not None:
            request.enabled = enabled
        _struct_fields(request, options)
        return _entry(self._client._unary(self._stub.UpdatePlugin, request, timeout).entry)

    def enable(self, name: str, *, model: str = "*", timeout: Any = DEFAULT) -> PluginEntry:
        return self.update(name, model=model, enabled=True, timeout=timeout)

    def disable(self, name: str, *, model: str = "*", timeout: Any = DEFAULT) -> PluginEntry:
        return self.update(name, model=model, enabled=False, timeout=timeout)

    def unregister(self, name: str, *, model: str = "*", timeout: Any = DEFAULT) -> None:
        request = plugins_pb2.UnregisterPluginRequest(model=model, name=name)
        self._client._unary(self._stub.UnregisterPlugin, request, timeout)
