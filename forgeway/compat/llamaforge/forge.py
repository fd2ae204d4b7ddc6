"""LlamaForge's entry point, through Forgeway."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from forgeway.client import APIError, Client

from .backends import BaseBackend, ForgewayBackend, Model, get_backend, list_backends
from .config import GENERATION, KINDS, LOAD_RENAMES, LOCAL_ONLY, SERVED, Config

log = logging.getLogger("forgeway.compat.llamaforge")


class LlamaForge:
    """LlamaForge's entry point: manage configured models and generate from the loaded one, through Forgeway."""

    def __init__(self, config_path: str | Path | None = None, model_name: str | None = None,
                 backend_name: str | None = None, *, client: Client | None = None, target: str | None = None):
        self.config = Config(config_path)
        self.client = client or Client(target)
        self.current_model: Model | None = None
        self.backend: BaseBackend | None = None
        self.last_error: Exception | None = None
        if model_name or self.config.get("default_model"):
            self.load_model(model_name or self.config.get("default_model"), backend_name)

    def add_model(self, name: str, path: str, backend: str = "llama.cpp", parameters: dict | None = None,
                  metadata: dict | None = None) -> None:
        """Add a model to the configuration (save it with config.save()); ValueError if the name is taken."""
        if name in self.config.get("models", {}):
            raise ValueError(f"a model named {name!r} already exists")
        self.config.add_model(name, path, backend, parameters, metadata)

    def remove_model(self, name: str) -> bool:
        return self.config.remove_model(name)

    def list_models(self) -> list[str]:
        """Configured models, then the ones the endpoint serves."""
        names = list(self.config.get("models", {}))
        return names + [m.name for m in self.client.models.list() if m.name not in names]

    def get_model_info(self, model_name: str) -> dict[str, Any]:
        return self.config.get("models", {}).get(model_name, {"name": model_name})

    def load_model(self, model_name: str, backend_name: str | None = None) -> bool:
        """Make `model_name` the current model, loading it on a Forgeway backend unless it is served already."""
        info = self.config.get("models", {}).get(model_name, {})
        backend_name = backend_name or info.get("backend") or self.config.get("default_backend", "llama.cpp")
        model = Model(model_name, info.get("path", model_name), info)
        try:
            custom = get_backend(backend_name)
            if custom is not None:
                backend: BaseBackend = custom()
                backend.load_model(model.path, _load_options(model.parameters))
            else:
                backend = self._served(model, backend_name)
        except (APIError, ValueError, NotImplementedError, OSError, RuntimeError) as error:
            self.last_error = error
            log.error("Error loading model %r: %s", model_name, error)
            return False
        previous = self.backend
        if isinstance(previous, ForgewayBackend) and isinstance(backend, ForgewayBackend) \
                and previous.served_name == backend.served_name:
            backend.loaded_here = previous.loaded_here  # the same served model: keep it, and who loaded it
        elif not self.unload_model():
            return False
        self.current_model, self.backend, self.last_error = model, backend, None
        log.info("Loaded model %r with %s backend", model_name, backend.name)
        return True

    def _served(self, model: Model, backend_name: str) -> ForgewayBackend:
        served = {m.name: m for m in self.client.models.list()}
        if model.name in served and served[model.name].loaded:
            return ForgewayBackend(self.client, served[model.name].backend, model.name, loaded_here=False)
        if backend_name == SERVED:
            raise ValueError(f"model {model.name!r} is not served (served: {', '.join(served) or 'none'})")
        kind = KINDS.get(backend_name)
        if kind is None:
            raise ValueError(f"Backend {backend_name!r} not available (known: {', '.join(list_backends())})")
        loaded = self.client.models.load(model.name, model.path or "", backend=kind,
                                         options=_load_options(model.parameters))
        return ForgewayBackend(self.client, loaded.backend or kind, loaded.name, loaded_here=True)

    def unload_model(self) -> bool:
        if self.backend is None:
            return True
        try:
            self.backend.unload_model()
        except (APIError, RuntimeError) as error:
            self.last_error = error
            log.error("Error unloading model: %s", error)
            return False
        self.current_model = self.backend = None
        return True

    def generate(self, prompt: str, **kwargs: Any) -> str:
        """Generated text; the model's configured generation parameters, overridden by kwargs."""
        backend, parameters = self._ready(kwargs)
        return backend.generate(prompt, parameters)

    def generate_stream(self, prompt: str, **kwargs: Any) -> Iterator[str]:
        backend, parameters = self._ready(kwargs)
        yield from backend.generate_stream(prompt, parameters)

    def _ready(self, kwargs: dict[str, Any]) -> tuple[BaseBackend, dict[str, Any]]:
        if self.backend is None or self.current_model is None:
            raise ValueError("No model loaded")
        configured = {k: v for k, v in self.current_model.parameters.items() if k in GENERATION}
        return self.backend, {**configured, **kwargs}


def _load_options(parameters: dict[str, Any]) -> dict[str, Any]:
    """The load-time parameters (everything that is not a generation parameter) as LoadModel options."""
    return {LOAD_RENAMES.get(k, k): v for k, v in parameters.items() if k not in GENERATION and k not in LOCAL_ONLY}
