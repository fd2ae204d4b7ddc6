"""LlamaForge's backend interface, and a backend object called the way its class declares.

LlamaForge documents `load_model(model_path, parameters=None)` / `generate(prompt, parameters=None)`, while its code
(llamaforge/backends/base.py) declares `load_model(model: Model)` / `generate(prompt, **kwargs)` with `name` and
`get_model_info()`; a custom backend written either way works here. This module imports nothing of Forgeway's
transport: the custom-backend service imports it too.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from typing import Any

from ..model import Model


class BaseBackend:
    """The interface of a LlamaForge backend; subclass it and override load_model, generate, generate_stream and
    is_model_loaded (unload_model and get_model_info are optional). Either signature style is accepted."""

    name = "custom"

    def load_model(self, model_path: str, parameters: dict | None = None) -> None:
        raise NotImplementedError

    def generate(self, prompt: str, parameters: dict | None = None) -> str:
        raise NotImplementedError

    def generate_stream(self, prompt: str, parameters: dict | None = None) -> Iterator[str]:
        raise NotImplementedError

    def is_model_loaded(self) -> bool:
        raise NotImplementedError

    def unload_model(self) -> None:
        pass

    def get_model_info(self) -> dict[str, Any]:
        raise NotImplementedError


def check_backend_class(backend_class: object) -> type:
    """The class itself, or TypeError when it is not a class with load_model and generate methods."""
    if not isinstance(backend_class, type) or not all(
            callable(getattr(backend_class, m, None)) for m in ("load_model", "generate")):
        raise TypeError(f"backend_class: {backend_class!r} is not a backend class (a BaseBackend subclass with "
                        "load_model and generate)")
    return backend_class


class BackendInstance:
    """A backend object, called in the style its methods declare: `load(model)`, `generate(prompt, parameters)`,
    `stream(prompt, parameters)`."""

    def __init__(self, backend: Any):
        self.backend = backend
        self._takes_model = _first_parameter(backend.load_model) == "model" or _annotated_model(backend.load_model)

    @property
    def name(self) -> str:
        return str(getattr(self.backend, "name", "") or type(self.backend).__name__)

    def load(self, model: Model) -> None:
        if self._takes_model:
            self.backend.load_model(model)
        else:
            self.backend.load_model(model.path, model.parameters)

    def generate(self, prompt: str, parameters: dict[str, Any]) -> str:
        return _call(self.backend.generate, prompt, parameters)

    def stream(self, prompt: str, parameters: dict[str, Any]) -> Iterator[str]:
        return iter(_call(self.backend.generate_stream, prompt, parameters))

    def unload(self) -> None:
        unload = getattr(self.backend, "unload_model", None)
        if callable(unload):
            unload()


def _call(method: Callable[..., Any], prompt: str, parameters: dict[str, Any]) -> Any:
    """generate(prompt, **kwargs) for LlamaForge's code style, generate(prompt, parameters) for its documented one."""
    signature = _signature(method)
    if signature is not None and "parameters" not in signature.parameters and any(
            p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values()):
        return method(prompt, **parameters)
    return method(prompt, parameters)


def _signature(method: Callable[..., Any]) -> inspect.Signature | None:
    try:
        return inspect.signature(method)
    except (TypeError, ValueError):
        return None


def _first_parameter(method: Callable[..., Any]) -> str:
    signature = _signature(method)
    names = list(signature.parameters) if signature is not None else []
    return names[0] if names else ""


def _annotated_model(method: Callable[..., Any]) -> bool:
    signature = _signature(method)
    if signature is None or not signature.parameters:
        return False
    annotation = next(iter(signature.parameters.values())).annotation
    return annotation == "Model" or getattr(annotation, "__name__", "") == "Model"
