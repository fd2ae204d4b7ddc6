"""Which base models Unsloth trains: the model type in the base model's config.json, read without loading it."""

from __future__ import annotations

import json
from pathlib import Path

from forgeway.core.errors import InvalidArgument, Unsupported


class UnsupportedArchitecture(InvalidArgument):
    """A base model whose architecture Unsloth has no path for. The gateway may retry a backend-auto request on
    trl: ErrorInfo reason UNSUPPORTED_ARCHITECTURE, metadata model_type and fallback=trl."""

    reason = "UNSUPPORTED_ARCHITECTURE"

    def __init__(self, base_model: str, model_type: str, architectures: list[str], supported: list[str]):
        named = f"{model_type or 'unknown'} ({', '.join(architectures)})" if architectures else model_type or "unknown"
        super().__init__("base_model", f"unsloth does not train the {named} architecture of {base_model}; it trains "
                         f"{', '.join(supported)}; use backend trl for this model")
        self.metadata.update(model_type=model_type, backend="unsloth", fallback="trl")
        self.model_type = model_type


def read_config(resolved: str) -> dict | None:
    """config.json of a local model folder or of a hub id in the local cache; None when there is none to read
    (the plan reports a missing model as NOT_FOUND)."""
    folder = Path(resolved)
    if folder.is_dir():
        config = folder / "config.json"
        return json.loads(config.read_text()) if config.is_file() else None
    try:
        import huggingface_hub

        cached = huggingface_hub.try_to_load_from_cache(resolved, "config.json")
    except (ImportError, ValueError):
        return None
    return json.loads(Path(cached).read_text()) if isinstance(cached, str) else None


def check_architecture(base_model: str, resolved: str, supported: list[str]) -> str | None:
    """The model type of a base model Unsloth can train; UnsupportedArchitecture otherwise."""
    if Path(resolved, "adapter_config.json").is_file():
        raise Unsupported("base_model", "unsloth", f"{base_model} is a LoRA adapter; train on a full model (export "
                          "the adapter with the 'merged' format first) or use backend trl, which merges it")
    config = read_config(resolved)
    if config is None:
        return None
    model_type = str(config.get("model_type", ""))
    architectures = [str(a) for a in config.get("architectures") or []]
    causal = not config.get("is_encoder_decoder") and (
        not architectures or any(a.endswith(("ForCausalLM", "ForConditionalGeneration")) for a in architectures))
    if model_type not in supported or not causal:
        raise UnsupportedArchitecture(base_model, model_type, architectures, supported)
    return model_type
