"""Model-store entries this service can load on demand, described without loading them."""

from __future__ import annotations

import json

from forgeway.services.runtime.engine import ModelInfo
from forgeway.services.runtime.generation import Task

from forgeway.services.runtime.modelstore import ModelStore, StoredModel


def store_models(store: ModelStore, skip: set[str]) -> list[ModelInfo]:
    """ModelInfo (loaded=False) for each loadable store entry not in skip."""
    return [_describe(entry) for entry in store.list() if entry.name not in skip and entry.loadable]


def _describe(entry: StoredModel) -> ModelInfo:
    config = _config(entry)
    task = entry.task
    if task is None:
        if any(a.endswith("ForQuestionAnswering") for a in config.get("architectures") or []):
            task = Task.EXTRACTIVE_QA
        elif config.get("is_encoder_decoder"):
            task = Task.SUMMARIZATION
        else:
            task = Task.TEXT_GENERATION
    context = config.get("max_position_embeddings") or config.get("n_positions") or 0
    return ModelInfo(name=entry.name, task=task, context_length=int(context), loaded=False,
                     source=f"store:{entry.name}", chat=task == Task.TEXT_GENERATION and entry.chat)


def _config(entry: StoredModel) -> dict:
    try:
        config = json.loads((entry.path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return config if isinstance(config, dict) else {}
