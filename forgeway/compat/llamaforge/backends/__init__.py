"""LlamaForge's backend registry: the three built-in backends (served by Forgeway) and custom ones registered here.

Built-ins are named lazily ("module:Class"), so importing this package (as the custom-backend service does, for
`base`) never imports the SDK.
"""

from __future__ import annotations

import importlib
from typing import Any

from ..config import canonical_backend
from .base import BackendInstance, BaseBackend, check_backend_class

BUILTIN = {
    "llama.cpp": "forgeway.compat.llamaforge.backends.llama_cpp:LlamaCppBackend",
    "huggingface": "forgeway.compat.llamaforge.backends.huggingface:HuggingFaceBackend",
    "openai": "forgeway.compat.llamaforge.backends.openai_api:OpenAIBackend",
}
_CUSTOM: dict[str, type] = {}  # name -> a custom backend class, run in the caller's process (as LlamaForge does)
_LAZY = {"ForgewayBackend": "forgeway", "LlamaCppBackend": "llama_cpp", "HuggingFaceBackend": "huggingface",
         "OpenAIBackend": "openai_api"}

__all__ = ["BUILTIN", "BackendInstance", "BaseBackend", "ForgewayBackend", "HuggingFaceBackend", "LlamaCppBackend",
           "OpenAIBackend", "get_backend", "is_custom", "list_backends", "register_backend"]


def register_backend(name: str, backend_class: type) -> None:
    """Register a custom backend class under a name usable as add_model(..., backend=name)."""
    if not name:
        raise ValueError("name: required")
    if canonical_backend(name) in BUILTIN:
        raise ValueError(f"name: {name!r} is a built-in backend (custom names: anything but {', '.join(BUILTIN)})")
    _CUSTOM[name] = check_backend_class(backend_class)


def get_backend(name: str) -> type:
    """The backend class registered under `name` (LlamaForge's spellings llama_cpp, hf, openai_api accepted)."""
    if name in _CUSTOM:
        return _CUSTOM[name]
    target = BUILTIN.get(canonical_backend(name))
    if target is None:
        raise ValueError(f"Backend {name!r} not available (known: {', '.join(list_backends())})")
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def is_custom(name: str) -> bool:
    return name in _CUSTOM


def list_backends() -> list[str]:
    return [*BUILTIN, *_CUSTOM]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
