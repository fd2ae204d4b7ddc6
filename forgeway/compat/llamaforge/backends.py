"""LlamaForge's backends: the interface, the one that serves through Forgeway, and the registry of custom ones."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from forgeway.client import Client

from .config import SERVED, GENERATION


class Model:
    """A configured model: name, path, and its config (backend, parameters, metadata)."""

    def __init__(self, name: str, path: str | None = None, config: dict[str, Any] | None = None):
        self.name, self.path, self.config = name, path, dict(config or {})

    @property
    def parameters(self) -> dict[str, Any]:
        return dict(self.config.get("parameters") or {})

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "path": self.path, **self.config}


class BaseBackend:
    """LlamaForge's backend interface, for custom in-process backends registered with register_backend()."""

    name = "base"

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


class ForgewayBackend(BaseBackend):
    """A model served by Forgeway under `served_name`: generation goes through the SDK."""

    def __init__(self, client: Client, kind: str, served_name: str, loaded_here: bool):
        self.client, self.name, self.served_name, self.loaded_here = client, kind, served_name, loaded_here

    def load_model(self, model_path: str, parameters: dict | None = None) -> None:
        raise NotImplementedError("load through LlamaForge.load_model")

    def generate(self, prompt: str, parameters: dict | None = None) -> str:
        return self.client.generate(self.served_name, prompt, **_sampling(parameters or {})).text

    def generate_stream(self, prompt: str, parameters: dict | None = None) -> Iterator[str]:
        with self.client.stream(self.served_name, prompt, **_sampling(parameters or {})) as stream:
            for delta in stream:
                yield delta.text

    def is_model_loaded(self) -> bool:
        return any(m.name == self.served_name and m.loaded for m in self.client.models.list())

    def unload_model(self) -> None:
        if self.loaded_here:
            self.client.models.unload(self.served_name)


_BACKENDS: dict[str, type[BaseBackend]] = {}  # custom in-process backends, as LlamaForge's registry


def register_backend(name: str, backend_class: type[BaseBackend]) -> None:
    """Register a custom backend class under a name usable as add_model(..., backend=name)."""
    if not (isinstance(backend_class, type) and issubclass(backend_class, BaseBackend)):
        raise TypeError("a backend is a BaseBackend subclass")
    _BACKENDS[name] = backend_class


def get_backend(name: str) -> type[BaseBackend] | None:
    return _BACKENDS.get(name)


def list_backends() -> list[str]:
    return ["llama.cpp", "huggingface", "openai", SERVED, *_BACKENDS]


def _sampling(parameters: dict[str, Any]) -> dict[str, Any]:
    """LlamaForge generation parameters -> SDK keyword arguments; unknown ones are refused, not dropped."""
    unknown = sorted(set(parameters) - set(GENERATION))
    if unknown:
        raise ValueError(f"unknown generation parameters: {', '.join(unknown)} (known: {', '.join(GENERATION)})")
    return {GENERATION[k]: v for k, v in parameters.items() if v is not None}
