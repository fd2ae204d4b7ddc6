"""PluginService at the gateway: the plugin pipelines per model, listed and changed at run time.

A change builds the whole new set of pipelines before it replaces the old one, so a bad option changes nothing and
requests already running keep the pipeline they started with. Changes live in this gateway's memory (see
GatewayState.apply for what a config reload does to them).
"""

from __future__ import annotations

import inspect
import logging
from typing import Any

from forgeway.core.enums import PLUGIN_KIND
from forgeway.core.errors import FailedPrecondition, InvalidArgument, NotFound
from forgeway.core.structs import struct_to_dict
from forgeway.v1 import plugins_pb2, plugins_pb2_grpc

from .plugin_base import OptionError
from .plugins import BUILTIN, Plugins, available, instantiate, kind_of, plugin_class
from .settings import PluginConfig
from .state import GatewayState

log = logging.getLogger("forgeway.gateway.plugins")

DEFAULT_MODEL = "*"


def entry_to_proto(model: str, position: int, config: PluginConfig) -> plugins_pb2.PluginEntry:
    entry = plugins_pb2.PluginEntry(model=model, name=config.name, enabled=config.enabled, position=position,
                                    kind=PLUGIN_KIND.to_value.get(kind_of(plugin_class(config.name)), 0))
    entry.options.update(config.options)  # every entry was built once, so its class loads
    return entry


def info_to_proto(name: str, target: Any) -> plugins_pb2.PluginInfo:
    source = "builtin" if name in BUILTIN else getattr(target, "value", "")
    try:
        cls = plugin_class(name)
    except Exception as exc:  # an installed entry point that cannot be imported is listed, saying why
        return plugins_pb2.PluginInfo(name=name, source=source, description=f"cannot be loaded: {exc}")
    doc = (cls.__doc__ or "").strip().split("\n\n")[0]
    return plugins_pb2.PluginInfo(
        name=name, kind=PLUGIN_KIND.to_value.get(kind_of(cls), 0), description=" ".join(doc.split()), source=source,
        options=[option for option, p in inspect.signature(cls).parameters.items()
                 if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)],
    )


class GatewayPlugins(plugins_pb2_grpc.PluginServiceServicer):
    """List and change the pipelines; reading needs any valid key, changing one that may manage models."""

    def __init__(self, state: GatewayState):
        self.state = state

    def _manager(self, context) -> None:
        self.state.keys.authenticate(context.invocation_metadata()).check_train("manage plugins")

    async def ListPlugins(self, request, context):
        self.state.keys.authenticate(context.invocation_metadata())
        configs = self.state.plugins.configs
        models = [request.model] if request.model else sorted(configs)
        return plugins_pb2.ListPluginsResponse(
            entries=[entry_to_proto(m, i, c) for m in models for i, c in enumerate(configs.get(m, []))],
            available=[info_to_proto(name, target) for name, target in sorted(available().items())],
        )

    async def RegisterPlugin(self, request, context):
        self._manager(context)
        model, name = request.model or DEFAULT_MODEL, request.name
        if not name:
            raise InvalidArgument("name", "required: a built-in or installed plugin's name")
        if name not in available():
            raise NotFound("plugin", name, sorted(available()))
        entries = self.state.plugins.configs.get(model, [])
        if any(c.name == name for c in entries):
            raise FailedPrecondition(f"plugin {name!r} is already in the pipeline of {model!r}: change it with "
                                     "UpdatePlugin, or register it for another model")
        enabled = request.enabled if request.HasField("enabled") else True
        config = _checked(name, struct_to_dict(request.options) if request.HasField("options") else {}, enabled)
        self._replace(model, [*entries, config])
        log.info("plugin %s registered for %s (%s)", name, model, "enabled" if enabled else "disabled")
        return plugins_pb2.RegisterPluginResponse(entry=entry_to_proto(model, len(entries), config))

    async def UpdatePlugin(self, request, context):
        self._manager(context)
        model, entries, position = self._find(request.model, request.name)
        old = entries[position]
        enabled = request.enabled if request.HasField("enabled") else old.enabled
        options = struct_to_dict(request.options) if request.HasField("options") else old.options
        config = _checked(old.name, options, enabled)
        self._replace(model, [*entries[:position], config, *entries[position + 1:]])
        log.info("plugin %s of %s updated (%s)", old.name, model, "enabled" if enabled else "disabled")
        return plugins_pb2.UpdatePluginResponse(entry=entry_to_proto(model, position, config))

    async def UnregisterPlugin(self, request, context):
        self._manager(context)
        model, entries, position = self._find(request.model, request.name)
        self._replace(model, [*entries[:position], *entries[position + 1:]])
        log.info("plugin %s unregistered from %s", request.name, model)
        return plugins_pb2.UnregisterPluginResponse()

    def _find(self, model: str, name: str) -> tuple[str, list[PluginConfig], int]:
        model = model or DEFAULT_MODEL
        if not name:
            raise InvalidArgument("name", "required")
        entries = self.state.plugins.configs.get(model, [])
        positions = [i for i, c in enumerate(entries) if c.name == name]
        if not positions:
            raise NotFound("plugin", name, [c.name for c in entries])
        if len(positions) > 1:
            raise FailedPrecondition(f"the pipeline of {model!r} has {len(positions)} {name!r} entries (from the "
                                     "config file): change them there")
        return model, entries, positions[0]

    def _replace(self, model: str, entries: list[PluginConfig]) -> None:
        configs = {**self.state.plugins.configs, model: entries}
        if not entries:
            del configs[model]
        self.state.plugins = Plugins(configs)


def _checked(name: str, options: dict[str, Any], enabled: bool) -> PluginConfig:
    """The entry, once the plugin has been built from its options; INVALID_ARGUMENT naming the option otherwise."""
    try:
        instantiate(name, options)
    except OptionError as error:
        raise InvalidArgument(f"options.{error.option}", error.description) from None
    except ValueError as error:
        raise InvalidArgument("options", str(error)) from None
    return PluginConfig(name=name, options=options, enabled=enabled)
