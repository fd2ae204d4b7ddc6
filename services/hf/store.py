"""Reads the model store: FORGEWAY_HOME/models/<name>/ with weights or an adapter and forgeway.json provenance."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from forgeway.services.runtime.generation import Task

METADATA_FILE = "forgeway.json"
LEGACY_PROVIDER = "huggingface"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


@dataclass
class StoredModel:
    """One entry of the store and its provenance."""

    name: str
    path: Path
    provider: str = LEGACY_PROVIDER
    base_model: str | None = None
    task: Task | None = None
    metadata: dict = field(default_factory=dict)

    @property
    def is_adapter(self) -> bool:
        return (self.path / "adapter_config.json").is_file()

    @property
    def loadable(self) -> bool:
        """Whether transformers can load it: full weights or a peft adapter."""
        return (self.path / "config.json").is_file() or self.is_adapter


class ModelStore:
    """The models under one root folder, by name."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def get(self, name: str) -> StoredModel | None:
        if not NAME.match(name):
            return None
        path = self.root / name
        return read_entry(name, path) if path.is_dir() else None

    def list(self) -> list[StoredModel]:
        if not self.root.is_dir():
            return []
        return [read_entry(p.name, p) for p in sorted(self.root.iterdir()) if p.is_dir() and NAME.match(p.name)]


def read_entry(name: str, path: Path) -> StoredModel:
    """An entry's metadata; legacy metadata without a provider reads as huggingface, a missing file as empty."""
    try:
        metadata = json.loads((path / METADATA_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        metadata = {}
    if not isinstance(metadata, dict):
        metadata = {}
    base = metadata.get("base_model") or _adapter_base(path)
    task = metadata.get("task") or metadata.get("pipeline_task")
    try:
        parsed_task = Task(task) if task else None
    except ValueError:
        parsed_task = None
    return StoredModel(
        name=name,
        path=path,
        provider=str(metadata.get("provider") or LEGACY_PROVIDER),
        base_model=str(base) if base else None,
        task=parsed_task,
        metadata=metadata,
    )


def _adapter_base(path: Path) -> str | None:
    try:
        return json.loads((path / "adapter_config.json").read_text(encoding="utf-8")).get("base_model_name_or_path")
    except (OSError, ValueError, AttributeError):
        return None
