"""LlamaForge's configuration file and the names it maps to Forgeway's."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

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
