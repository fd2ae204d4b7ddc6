"""ModelForge's list of fine-tuned models (its `fine_tuned_models` table) answered from the gateway's ListModels.

| ModelForge | Forgeway (ModelInfo of a model-store entry) |
|---|---|
| id, model_name | name |
| base_model, task, description, provider | base_model, task, description, provider ("huggingface", "unsloth") |
| creation_date (ISO 8601) | created |
| model_path | source ("store:NAME": load it by name, as the playground does) |
| is_custom_base_model | not recorded: False |
| (Forgeway only) trained_by | the Forgeway trainer service ("trl", "unsloth") |
"""

from __future__ import annotations

from typing import Any

from forgeway.client import Client


def list_models(client: Client | None = None, target: str | None = None, task: str | None = None) -> list[dict[str, Any]]:
    """The trained models (those with a creation date in their provenance), newest first, as ModelForge's rows;
    only those of `task` when given."""
    models = (client or Client(target)).models.list()
    trained = [m for m in models if m.created is not None and (task is None or m.task == task)]
    return [{
        "id": m.name,
        "model_name": m.name,
        "base_model": m.base_model,
        "task": m.task,
        "description": m.description,
        "creation_date": m.created.isoformat(),
        "model_path": m.source,
        "is_custom_base_model": False,
        "provider": m.provider,
        "trained_by": m.trained_by,
    } for m in sorted(trained, key=lambda m: m.created, reverse=True)]
