"""LlamaForge's configuration file: JSON, dotted keys, its defaults, profiles and LLAMAFORGE_* overrides.

Where it lives: `config_path` when given, else LLAMAFORGE_CONFIG (or the API reference's LLAMAFORGE_CONFIG_PATH), else
FORGEWAY_HOME/llamaforge/config.json when FORGEWAY_HOME is set, else LlamaForge's own ~/.llamaforge/config.json (so
an existing LlamaForge setup keeps working). A missing file starts from LlamaForge's defaults; `save()` writes it.

Reading a key merges, in order of precedence, the environment (LLAMAFORGE_DEFAULT_MODEL -> default_model,
LLAMAFORGE_OPENAI_API_KEY -> api_keys.openai, LLAMAFORGE_MODELS_DIR -> models_dir and the first model directory),
the active profile, the file and the defaults (dicts merge key by key). Writing goes to the active profile when one
is active, else the file.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import re
from pathlib import Path
from typing import Any

log = logging.getLogger("forgeway.compat.llamaforge")

_MISSING = object()
BACKEND_NAMES = ("llama.cpp", "huggingface", "openai")  # the registry's names of the three built-in backends
# Spellings LlamaForge itself writes or accepts ("llama_cpp" is its default_backend, "openai_api" its module name).
BACKEND_ALIASES = {"llama_cpp": "llama.cpp", "llamacpp": "llama.cpp", "hf": "huggingface",
                   "transformers": "huggingface", "openai_api": "openai"}
LOCAL_MODEL_SUFFIXES = (".gguf", ".ggml", ".bin")
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def default_path() -> Path:
    """The configuration file used when none is named (see the module docstring)."""
    named = os.environ.get("LLAMAFORGE_CONFIG") or os.environ.get("LLAMAFORGE_CONFIG_PATH")
    if named:
        return Path(named).expanduser()
    return _home() / "config.json"


def _home() -> Path:
    forgeway_home = os.environ.get("FORGEWAY_HOME")
    return Path(forgeway_home).expanduser() / "llamaforge" if forgeway_home else Path("~/.llamaforge").expanduser()


def defaults() -> dict[str, Any]:
    """LlamaForge's default configuration (its DEFAULT_CONFIG, with the registry's backend name)."""
    return {
        "default_backend": "llama.cpp",
        "default_model": None,
        "models": {},
        "model_directories": [str(_home() / "models")],
        "plugins": [],
        "generation": {"max_tokens": 256, "temperature": 0.7, "top_p": 0.9, "top_k": 40, "repetition_penalty": 1.1},
        "server": {"host": "127.0.0.1", "port": 8000, "cors_origins": ["*"]},
        "tools": {},
        "commands": {},
        "profiles": {},
        "active_profile": None,
    }


def canonical_backend(name: str) -> str:
    """A backend name as the registry spells it (LlamaForge's other spellings accepted)."""
    return BACKEND_ALIASES.get(name, name)


class Config:
    """LlamaForge's configuration: get/set with dotted keys, models, profiles, init/load/save.

    `path` (also `config_path`) is the file; `config` the file's data as it stands (without environment overrides).
    """

    def __init__(self, config_path: str | Path | None = None, profile: str | None = None):
        self.config_path = Path(config_path).expanduser() if config_path else default_path()
        self.config_data: dict[str, Any] = defaults()
        if self.config_path.is_file():
            self.load()
        if profile:
            self.set_active_profile(profile)

    @classmethod
    def load_default(cls) -> Config:
        """The configuration at the default location (LLAMAFORGE_CONFIG, FORGEWAY_HOME or ~/.llamaforge)."""
        return cls()

    @property
    def path(self) -> Path:
        return self.config_path

    @property
    def config(self) -> dict[str, Any]:
        return self.config_data

    # --- reading and writing keys

    def get(self, key: str, default: Any = None) -> Any:
        """The value at a dotted key ("generation.temperature"): environment, active profile, file, defaults."""
        value = _lookup(self.get_all(), key)
        return default if value is _MISSING else value

    def set(self, key: str, value: Any) -> None:
        """Set a dotted key, creating the dicts on the way; in the active profile when one is active."""
        if not key:
            raise ValueError("key: required")
        target = self._profile_data() if self.get_active_profile() else self.config_data
        *parents, last = key.split(".")
        for part in parents:
            if not isinstance(target.get(part), dict):
                target[part] = {}
            target = target[part]
        target[last] = value

    def get_all(self) -> dict[str, Any]:
        """The whole configuration as `get` sees it: defaults, file, active profile and environment merged."""
        merged = defaults()
        for layer in (self.config_data, self._profile_data(), self._environment()):
            _merge(merged, layer)
        return merged

    def generation_defaults(self) -> dict[str, Any]:
        """The `generation` section: what a generate call uses for the parameters it does not give."""
        return dict(self.get("generation") or {})

    # --- the file

    def init(self) -> None:
        """Reset to LlamaForge's defaults (`config init`); save() writes them."""
        self.config_data = defaults()

    def load(self, path: str | Path | None = None) -> bool:
        """Read the file (or `path`); False, with the defaults kept, when it is not valid JSON."""
        source = Path(path).expanduser() if path else self.config_path
        try:
            data = json.loads(source.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            log.error("Error loading configuration %s: %s", source, error)
            self.config_data = defaults()
            return False
        if not isinstance(data, dict):
            log.error("Error loading configuration %s: not a JSON object", source)
            self.config_data = defaults()
            return False
        self.config_data = data
        return True

    def save(self, path: str | Path | None = None) -> bool:
        """Write the file (or `path`), creating its folder; environment overrides are not written."""
        target = Path(path).expanduser() if path else self.config_path
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(json.dumps(self.config_data, indent=2) + "\n", encoding="utf-8")
        except OSError as error:
            log.error("Error saving configuration %s: %s", target, error)
            return False
        return True

    # --- models

    def add_model(self, name: str, path: str, backend: str | None = None, parameters: dict | None = None,
                  metadata: dict | None = None) -> dict[str, Any]:
        """Add (or replace) a model entry; the backend, when not given, is inferred from the path."""
        if not name:
            raise ValueError("name: required")
        entry = {"path": str(path), "backend": canonical_backend(backend) if backend else self.infer_backend(str(path)),
                 "parameters": dict(parameters or {}), "metadata": dict(metadata or {})}
        self.config_data.setdefault("models", {})[name] = entry
        return copy.deepcopy(entry)

    def remove_model(self, name: str) -> bool:
        return self.config_data.get("models", {}).pop(name, None) is not None

    def get_model(self, name: str) -> dict[str, Any] | None:
        entry = (self.get("models") or {}).get(name)
        return copy.deepcopy(entry) if entry is not None else None

    get_model_config = get_model

    def list_models(self) -> list[str]:
        return list(self.get("models") or {})

    def infer_backend(self, path: str) -> str:
        """LlamaForge's backend for a model path: a GGUF (or GGML .bin) file -> llama.cpp; an OpenAI model id
        (gpt-*) -> openai; a local transformers folder or a hub id (org/name) -> huggingface; else default_backend."""
        if path.lower().endswith(LOCAL_MODEL_SUFFIXES):
            return "llama.cpp"
        if Path(path).name.lower().startswith("gpt-"):
            return "openai"
        local = Path(path).expanduser()
        if (local / "config.json").is_file() or (HUB_ID.match(path) and not local.exists()):
            return "huggingface"
        return canonical_backend(self.get("default_backend") or "llama.cpp")

    def backend_parameters(self, backend: str) -> dict[str, Any]:
        """backends.<name>.default_parameters: what every model of that backend starts from."""
        section = (self.get("backends") or {}).get(canonical_backend(backend)) or {}
        return dict(section.get("default_parameters") or {})

    # --- profiles

    def create_profile(self, name: str) -> None:
        """An empty profile: keys set while it is active override the file's."""
        if not name:
            raise ValueError("name: required")
        self.config_data.setdefault("profiles", {}).setdefault(name, {})

    def set_active_profile(self, name: str | None) -> None:
        """Switch to a profile (None: the file itself); ValueError naming the known ones for an unknown name."""
        if name and name not in (self.config_data.get("profiles") or {}):
            known = ", ".join(self.list_profiles()) or "none"
            raise ValueError(f"profile: unknown profile {name!r} (known: {known})")
        self.config_data["active_profile"] = name or None

    def get_active_profile(self) -> str | None:
        return self.config_data.get("active_profile") or None

    def list_profiles(self) -> list[str]:
        return list(self.config_data.get("profiles") or {})

    def _profile_data(self) -> dict[str, Any]:
        name = self.config_data.get("active_profile")
        return self.config_data.setdefault("profiles", {}).setdefault(name, {}) if name else {}

    def _environment(self) -> dict[str, Any]:
        overrides: dict[str, Any] = {}
        if os.environ.get("LLAMAFORGE_DEFAULT_MODEL"):
            overrides["default_model"] = os.environ["LLAMAFORGE_DEFAULT_MODEL"]
        if os.environ.get("LLAMAFORGE_OPENAI_API_KEY"):
            overrides["api_keys"] = {"openai": os.environ["LLAMAFORGE_OPENAI_API_KEY"]}
        models_dir = os.environ.get("LLAMAFORGE_MODELS_DIR")
        if models_dir:
            file_dirs = _lookup(self.config_data, "model_directories")
            rest = file_dirs if isinstance(file_dirs, list) else defaults()["model_directories"]
            overrides["models_dir"] = models_dir
            overrides["model_directories"] = [models_dir, *[d for d in rest if d != models_dir]]
        return overrides


def _lookup(data: dict[str, Any], key: str) -> Any:
    value: Any = data
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            return _MISSING
        value = value[part]
    return value


def _merge(into: dict[str, Any], layer: dict[str, Any]) -> None:
    for key, value in layer.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = copy.deepcopy(value)
