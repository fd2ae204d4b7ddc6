"""Lazy registry of services by name, plus the `forgeway.backends` entry-point group for out-of-tree ones."""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

ENTRY_POINT_GROUP = "forgeway.backends"

# name -> "module:Class"; nothing is imported until a name is asked for, so `serve llamacpp` never imports torch.
BUILTIN: dict[str, str] = {
    "echo": "forgeway.services.echo.engine:EchoEngine",
    "hf": "forgeway.services.hf.engine:HFEngine",
    "gateway": "forgeway.gateway.service:GatewayService",
    "llamacpp": "forgeway.services.llamacpp.engine:LlamaCppEngine",
    "openai": "forgeway.services.openai_proxy.engine:OpenAIProxyEngine",
    "trl": "forgeway.services.trl.engine:TRLEngine",
    "unsloth": "forgeway.services.unsloth.engine:UnslothEngine",
}


class UnknownService(LookupError):
    pass


def available() -> dict[str, str]:
    """Every registered service name and its import target; entry points may add names, not replace built-ins."""
    targets = {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}
    return {**targets, **BUILTIN}


def load(name: str) -> type:
    """Import and return the class registered under name."""
    targets = available()
    if name not in targets:
        raise UnknownService(f"unknown service {name!r}; known: {', '.join(sorted(targets))}")
    module_name, _, attr = targets[name].partition(":")
    return getattr(importlib.import_module(module_name), attr)
