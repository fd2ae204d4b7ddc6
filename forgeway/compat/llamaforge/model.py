"""LlamaForge's Model: a configured model's name, path and configuration (backend, parameters, metadata)."""

from __future__ import annotations

import os
from typing import Any


class Model:
    """A language model as LlamaForge describes it."""

    def __init__(self, name: str, path: str | None = None, config: dict[str, Any] | None = None):
        self.name, self.path, self.config = name, path, dict(config or {})

    @property
    def is_local(self) -> bool:
        return self.path is not None and os.path.exists(self.path)

    @property
    def parameters(self) -> dict[str, Any]:
        return dict(self.config.get("parameters") or {})

    @property
    def backend_type(self) -> str:
        return self.config.get("backend") or "llama.cpp"

    @property
    def metadata(self) -> dict[str, Any]:
        return dict(self.config.get("metadata") or {})

    def get_parameter(self, key: str, default: Any = None) -> Any:
        return self.parameters.get(key, default)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "path": self.path, **self.config}

    def __repr__(self) -> str:
        return f"Model(name={self.name!r}, backend={self.backend_type!r})"
