"""LlamaForge's plugin calls on the LlamaForge facade (a mixin): the gateway's pipelines through PluginService, the
calculator tool and the benchmark command in this process.

| LlamaForge | Forgeway |
|---|---|
| register_plugin(name, type, config) | PluginService.RegisterPlugin of a built-in or installed plugin, for `model` |
| enable_plugin / disable_plugin / set_plugin_config | PluginService.UpdatePlugin |
| unregister_plugin | PluginService.UnregisterPlugin |
| list_plugins() | PluginService.ListPlugins, plus the commands that run here |
| use_tool("calculator", expr) | forgeway.core.calculator.evaluate, here |
| run_command("benchmark", {...}) | forgeway.client.bench.benchmark against the current (or given) model |

LlamaForge runs a plugin class registered from Python in its own process; the gateway runs only plugins it can
import, so a class is refused here with that explanation: install it under the `forgeway.plugins` entry-point
group of the gateway's environment and register it by name. Calls that change the gateway return False on failure,
log why and keep the typed error in `last_error` (as load_model does).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from forgeway.client import APIError
from forgeway.client.bench import benchmark
from forgeway.core.calculator import CalculatorError, evaluate

if TYPE_CHECKING:
    from forgeway.client import Client

log = logging.getLogger("forgeway.compat.llamaforge")

KINDS = {"preprocessing", "postprocessing", "tools", "commands"}
COMMANDS = {"benchmark": "Benchmarks model performance on text generation tasks (here, through the gateway)"}
TOOLS = {"calculator": "Performs mathematical calculations from text input (here; in the gateway it answers "
                       "[calc: EXPR] in the output)"}


class PluginCalls:
    """The plugin methods of LlamaForge; the class mixing it in provides `client`, `current_model`, `last_error`."""

    client: Client
    current_model: Any
    last_error: Exception | None

    def register_plugin(self, name: Any, plugin_type: str | None = None, config: dict[str, Any] | None = None, *,
                        model: str = "*", enabled: bool = True) -> bool:
        """Add a plugin to the gateway's pipeline of `model` ("*": every model without its own)."""
        if isinstance(name, type) or not isinstance(name, str):
            raise TypeError(f"{name!r} is a Python object: the gateway runs plugins it can import, so install it in "
                            "the `forgeway.plugins` entry-point group of the gateway's environment and register it "
                            "by its entry-point name")
        if plugin_type is not None and plugin_type not in KINDS:
            raise ValueError(f"plugin_type: must be one of {', '.join(sorted(KINDS))}, not {plugin_type!r}")
        if plugin_type == "commands" or name in COMMANDS:
            raise ValueError(f"{name!r}: commands run in the client (run_command), not in the gateway's pipeline")
        if plugin_type is not None:
            kinds = {i.name: i.kind for i in self.client.plugins.list().available}
            if name in kinds and kinds[name] != plugin_type:
                raise ValueError(f"plugin_type: {name!r} is a {kinds[name]} plugin, not {plugin_type}")
        return self._change(lambda: self.client.plugins.register(name, config or {}, model=model, enabled=enabled),
                            f"register plugin {name!r}")

    def enable_plugin(self, name: str, *, model: str = "*") -> bool:
        return self._change(lambda: self.client.plugins.enable(name, model=model), f"enable plugin {name!r}")

    def disable_plugin(self, name: str, *, model: str = "*") -> bool:
        return self._change(lambda: self.client.plugins.disable(name, model=model), f"disable plugin {name!r}")

    def set_plugin_config(self, name: str, config: dict[str, Any], *, model: str = "*") -> bool:
        """Replace a registered plugin's options (all of them)."""
        return self._change(lambda: self.client.plugins.update(name, model=model, options=config),
                            f"configure plugin {name!r}")

    def unregister_plugin(self, name: str, *, model: str = "*") -> bool:
        return self._change(lambda: self.client.plugins.unregister(name, model=model), f"unregister plugin {name!r}")

    def list_plugins(self, model: str = "") -> list[dict[str, Any]]:
        """The gateway's pipelines (every model's, or one), each entry as {name, type, model, enabled, config,
        position}, then the commands that run here."""
        listing = self.client.plugins.list(model)
        rows = [{"name": e.name, "type": e.kind, "model": e.model, "enabled": e.enabled, "config": e.options,
                 "position": e.position} for e in listing.entries]
        return rows + [{"name": name, "type": "commands", "model": "", "enabled": True, "config": {},
                        "position": i} for i, name in enumerate(COMMANDS)]

    def available_plugins(self) -> list[dict[str, Any]]:
        """Every plugin the gateway can run, and the commands that run here: {name, type, description, options}."""
        listing = self.client.plugins.list()
        return [{"name": i.name, "type": i.kind, "description": i.description, "options": i.options}
                for i in listing.available] + [{"name": n, "type": "commands", "description": d, "options": []}
                                               for n, d in COMMANDS.items()]

    def use_tool(self, tool_name: str, data: Any) -> Any:
        """LlamaForge's use_tool: the calculator's value of `data`, or its "Error evaluating expression: ..." text."""
        if tool_name not in TOOLS:
            raise ValueError(f"Tool '{tool_name}' not found (tools: {', '.join(TOOLS)})")
        try:
            return evaluate(str(data))
        except CalculatorError as error:
            return f"Error evaluating expression: {error.reason}"

    def run_command(self, command_name: str, data: Any) -> Any:
        """LlamaForge's run_command: "benchmark" with {prompts, iterations, max_tokens, model, warmup} returns its
        results, or {"error": ...}."""
        if command_name not in COMMANDS:
            raise ValueError(f"Command '{command_name}' not found (commands: {', '.join(COMMANDS)})")
        data = dict(data or {})
        model = data.get("model") or (self.current_model.name if self.current_model is not None else None)
        if not model:
            return {"error": "No model loaded"}
        try:
            return benchmark(self.client, model, data.get("prompts") or ["Hello, how are you?"],
                             iterations=int(data.get("iterations", 3)), max_tokens=int(data.get("max_tokens", 100)),
                             warmup=bool(data.get("warmup", True)))
        except (APIError, ValueError) as error:
            return {"error": str(error)}

    def _change(self, call, what: str) -> bool:
        try:
            call()
        except APIError as error:
            self.last_error = error
            log.error("Cannot %s: %s", what, error)
            return False
        self.last_error = None
        return True
