"""LlamaForge's Python API (`LlamaForge`, `Config`, `BaseBackend`, `register_backend`) serving models through Forgeway.

The configuration file keeps LlamaForge's shape (JSON, default ~/.llamaforge/config.json: "models" by name with
path, backend, parameters and metadata; "default_model"; "default_backend"). Connection: `LlamaForge(client=...)`
or `target="host:port"`, else FORGEWAY_TARGET.

Mapping, LlamaForge -> Forgeway:

| LlamaForge | Forgeway |
|---|---|
| add_model(name, path, backend, parameters) + config.save() | the config file only (as LlamaForge) |
| backend "llama.cpp" / "llama_cpp", "huggingface" / "hf", "openai" / "openai_api" | backend kind llamacpp, hf, openai |
| backend "forgeway" (or a name the endpoint already serves) | no load: the served model is used as it is |
| load_model(name) | ModelService.LoadModel(name, source=path, options=load parameters + backend) unless already served |
| load parameters (n_ctx, n_gpu_layers, n_batch, n_threads, ...; context_length -> n_ctx) | LoadModel options |
| generation parameters (temperature, top_p, top_k, min_p, max_tokens / max_new_tokens, stop, seed, repeat_penalty, presence/frequency_penalty) | sampling of every Generate, per-call kwargs over the model's parameters |
| generate(prompt, **kwargs) / generate_stream(prompt, **kwargs) | Generate / GenerateStream |
| unload_model() | UnloadModel, for models this object loaded |
| register_backend(name, cls) with a BaseBackend subclass | runs in this process, not through Forgeway (as in LlamaForge) |

load_model returns False and logs the reason on failure (LlamaForge's contract); `last_error` keeps the typed error.
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from forgeway.client import APIError, Client

log = logging.getLogger("forgeway.compat.llamaforge")

DEFAULT_CONFIG = Path("~/.llamaforge/config.json")
KINDS = {"llama.cpp": "llamacpp", "llama_cpp": "llamacpp", "llamacpp": "llamacpp", "huggingface": "hf", "hf": "hf",
         "transformers": "hf", "openai": "openai", "openai_api": "openai"}
SERVED = "forgeway"
GENERATION = {"temperature": "temperature", "top_p": "top_p", "top_k": "top_k", "min_p": "min_p",
              "max_tokens": "max_tokens", "max_new_tokens": "max_tokens", "stop": "stop", "seed": "seed",
              "repeat_penalty": "repetition_penalty", "repetition_penalty": "repetition_penalty",
              "presence_penalty": "presence_penalty", "frequency_penalty": "frequency_penalty"}
LOAD_RENAMES = {"context_length": "n_ctx"}
LOCAL_ONLY = {"api_key", "device", "torch_dtype"}  # LlamaForge parameters Forgeway services take from their own config


class Config:
    """LlamaForge's configuration file: get/set/get_all, add_model/remove_model, save/load."""

    def __init__(self, config_path: str | Path | None = None):
        self.config_path = Path(config_path or DEFAULT_CONFIG).expanduser()
        self.data: dict[str, Any] = {"models": {}, "default_model": "", "default_backend": "llama.cpp"}
        if self.config_path.is_file():
            self.load()

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def set(self, key: str, value: Any) -> None:
        self.data[key] = value

    def get_all(self) -> dict[str, Any]:
        return copy.deepcopy(self.data)

    def add_model(self, name: str, path: str, backend: str = "llama.cpp", parameters: dict | None = None,
                  metadata: dict | None = None) -> None:
        self.data.setdefault("models", {})[name] = {"path": str(path), "backend": backend,
                                                    "parameters": dict(parameters or {}),
                                                    "metadata": dict(metadata or {})}

    def remove_model(self, name: str) -> bool:
        return self.data.get("models", {}).pop(name, None) is not None

    def save(self, path: str | Path | None = None) -> None:
        target = Path(path).expanduser() if path else self.config_path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(self.data, indent=2) + "\n")

    def load(self, path: str | Path | None = None) -> None:
        self.data = json.loads((Path(path).expanduser() if path else self.config_path).read_text())
        self.data.setdefault("models", {})


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


def _sampling(parameters: dict[str, Any]) -> dict[str, Any]:
    """LlamaForge generation parameters -> SDK keyword arguments; unknown ones are refused, not dropped."""
    unknown = sorted(set(parameters) - set(GENERATION))
    if unknown:
        raise ValueError(f"unknown generation parameters: {', '.join(unknown)} (known: {', '.join(GENERATION)})")
    return {GENERATION[k]: v for k, v in parameters.items() if v is not None}


def _load_options(parameters: dict[str, Any]) -> dict[str, Any]:
    """The load-time parameters (everything that is not a generation parameter) as LoadModel options."""
    return {LOAD_RENAMES.get(k, k): v for k, v in parameters.items() if k not in GENERATION and k not in LOCAL_ONLY}
