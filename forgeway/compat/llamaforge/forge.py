"""LlamaForge's entry point, through Forgeway."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from forgeway.client import APIError, Client

from .backends import BackendInstance, get_backend, is_custom
from .backends.forgeway import ForgewayBackend, served_name
from .config import LOCAL_MODEL_SUFFIXES, Config, canonical_backend
from .model import Model
from .parameters import GENERATION, normalised
from .plugins import PluginCalls

log = logging.getLogger("forgeway.compat.llamaforge")


class LlamaForge(PluginCalls):
    """LlamaForge's entry point: configured models, loaded on Forgeway's backends (or a custom backend registered in
    this process), and generation from the current one with the configuration's generation defaults."""

    def __init__(self, config_path: str | Path | None = None, model_name: str | None = None,
                 backend_name: str | None = None, *, client: Client | None = None, target: str | None = None,
                 profile: str | None = None):
        self.config = Config(config_path, profile)
        self._client, self._target = client, target
        self.current_model: Model | None = None
        self.backend: Any = None
        self.last_error: Exception | None = None
        self._calls: BackendInstance | None = None
        if model_name or self.config.get("default_model"):
            self.load_model(model_name or self.config.get("default_model"), backend_name)

    @property
    def client(self) -> Client:
        """The Forgeway endpoint: the client given, else `target`, else FORGEWAY_TARGET (made on first use)."""
        if self._client is None:
            self._client = Client(self._target)
        return self._client

    def add_model(self, name: str, path: str, backend: str | None = None, parameters: dict | None = None,
                  metadata: dict | None = None) -> dict[str, Any]:
        """Add a model to the configuration (save it with config.save()); the backend, when not given, is inferred
        from the path. ValueError if the name is taken."""
        if name in (self.config.get("models") or {}):
            raise ValueError(f"name: a model named {name!r} already exists")
        return self.config.add_model(name, path, backend, parameters, metadata)

    def remove_model(self, name: str) -> bool:
        return self.config.remove_model(name)

    def list_models(self) -> list[str]:
        """Configured models, model files in the model directories, then the models the endpoint serves."""
        names = self.config.list_models()
        for folder in self.config.get("model_directories") or []:
            folder = Path(folder).expanduser()
            if folder.is_dir():
                names += sorted(p.name for p in folder.iterdir() if p.is_file() and p.name not in names
                                and p.name.lower().endswith(LOCAL_MODEL_SUFFIXES))
        try:
            served = self.client.models.list()
        except APIError as error:  # LlamaForge lists its configuration without any server
            log.warning("Cannot list the models Forgeway serves: %s", error)
            return names
        return names + [m.name for m in served if m.name not in names]

    def get_model_info(self, model_name: str) -> dict[str, Any]:
        return self.config.get_model(model_name) or {"name": model_name}

    def load_model(self, model_name: str, backend_name: str | None = None, parameters: dict | None = None) -> bool:
        """Make `model_name` the current model: a configured model (loaded on its backend unless Forgeway serves it
        already), a model Forgeway serves, or a model file or folder (backend inferred from the path). `parameters`
        override the configured ones. False, with the reason logged and kept in `last_error`, on failure."""
        try:
            model, backend = self._load(model_name, backend_name, parameters or {})
        except Exception as error:  # LlamaForge's contract: a failed load returns False and logs why
            self.last_error = error
            log.error("Error loading model %r: %s", model_name, error)
            return False
        previous = self.backend
        if isinstance(previous, ForgewayBackend) and isinstance(backend, ForgewayBackend) \
                and previous.served_name == backend.served_name:
            backend.loaded_here = previous.loaded_here  # the same served model: keep it, and who loaded it
        elif not self.unload_model():
            return False
        self.current_model, self.backend, self._calls, self.last_error = model, backend, BackendInstance(backend), None
        log.info("Loaded model %r with %s backend", model_name, model.backend_type)
        return True

    def _load(self, model_name: str, backend_name: str | None, overrides: dict) -> tuple[Model, Any]:
        info = self.config.get_model(model_name) or {}
        path = info.get("path") or model_name
        chosen = backend_name or info.get("backend")
        if not chosen and not info:
            if model_name in {m.name for m in self.client.models.list() if m.loaded}:
                served = ForgewayBackend(self.client)
                served.adopt(model_name)
                return Model(model_name, model_name, {"backend": "forgeway"}), served
            remote = self.config.infer_backend(model_name) in ("huggingface", "openai")  # a hub id, an OpenAI model
            if not remote and not os.path.exists(model_name):
                raise ValueError(f"model: {model_name!r} not found in the configuration, the file system or the "
                                 f"models Forgeway serves")
        chosen = canonical_backend(chosen or self.config.infer_backend(path))
        parameters = {**self.config.backend_parameters(chosen), **(info.get("parameters") or {}), **overrides}
        if chosen == "openai" and "api_key" not in parameters and self.config.get("api_keys.openai"):
            parameters["api_key"] = self.config.get("api_keys.openai")
        model = Model(model_name, path, {**info, "backend": chosen, "parameters": parameters})
        backend_class = get_backend(chosen)
        if is_custom(chosen):
            backend = backend_class()
            BackendInstance(backend).load(model)
            return model, backend
        backend = backend_class(self.client)
        backend.load_model(path, parameters, name=model_name if info else served_name(path))
        return model, backend

    def unload_model(self) -> bool:
        if self.backend is None:
            return True
        try:
            self._calls.unload()
        except Exception as error:  # as load_model: False, logged, kept
            self.last_error = error
            log.error("Error unloading model: %s", error)
            return False
        self.current_model = self.backend = self._calls = None
        return True

    def generate(self, prompt: str, **kwargs: Any) -> str:
        """Generated text. Parameters: the call's, over the model's configured ones, over the configuration's
        `generation` defaults (those the serving backend honours)."""
        return self._ready().generate(prompt, self._parameters(kwargs))

    def generate_stream(self, prompt: str, **kwargs: Any) -> Iterator[str]:
        calls = self._ready()
        yield from calls.stream(prompt, self._parameters(kwargs))

    def _ready(self) -> BackendInstance:
        if self._calls is None or self.current_model is None:
            raise ValueError("No model loaded")
        return self._calls

    def _parameters(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        defaults = normalised(self.config.generation_defaults())
        if isinstance(self.backend, ForgewayBackend):
            defaults = self.backend.supported(defaults)
        configured = normalised({k: v for k, v in self.current_model.parameters.items() if k in GENERATION})
        return {**defaults, **configured, **normalised(kwargs)}
