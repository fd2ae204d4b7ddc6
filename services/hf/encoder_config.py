"""What a model folder declares for embeddings and reranking, read from its files without loading it: whether it is a
sentence-transformers embedding model or cross-encoder, its pooling, vector length, Matryoshka lengths and max input.

Matryoshka lengths follow vLLM's convention in config.json: `matryoshka_dimensions: [64, 128, ...]` lists them;
`is_matryoshka: true` without a list allows every power of two from 32 below the vector length (the lengths
Matryoshka training usually uses). A model that declares neither serves only its full length.
"""

from __future__ import annotations

import json
from pathlib import Path

from forgeway.core.errors import InvalidArgument
from forgeway.core.generation import Task

# Pooling a plain transformers model is served with (ModelSpec.pooling) -> sentence-transformers' Pooling mode.
POOLING_MODES = {"mean": "mean", "cls": "cls", "last": "lasttoken"}
SERVED_KINDS = {"SentenceTransformer": Task.EMBEDDING, "CrossEncoder": Task.RERANK}
MIN_MATRYOSHKA = 32


def _parsed(path: Path) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def read_json(path: Path) -> dict:
    """A JSON object file's contents; {} when it is missing or not an object."""
    value = _parsed(path)
    return value if isinstance(value, dict) else {}


def is_cross_encoder(folder: Path) -> bool:
    """sentence-transformers' own markers: its model_type (v4+ saves), or the activation it stores in config.json."""
    if read_json(folder / "config_sentence_transformers.json").get("model_type") == "CrossEncoder":
        return True
    config = read_json(folder / "config.json")
    marks = config.get("sentence_transformers")
    return "sbert_ce_default_activation_function" in config or (isinstance(marks, dict) and "activation_fn" in marks)


def encoder_task(folder: Path) -> Task | None:
    """EMBEDDING for a sentence-transformers folder, RERANK for a cross-encoder, None for anything else."""
    if not folder.is_dir():
        return None
    if is_cross_encoder(folder):
        return Task.RERANK
    kind = read_json(folder / "config_sentence_transformers.json").get("model_type")
    if kind and kind not in SERVED_KINDS:
        raise InvalidArgument("source", f"{folder.name} is a sentence-transformers {kind}; hf serves "
                                        f"{' and '.join(SERVED_KINDS)} models")
    return Task.EMBEDDING if (folder / "modules.json").is_file() else None


def is_decoder(config: dict) -> bool:
    return bool(config.get("is_decoder")) or any(a.endswith("ForCausalLM") for a in config.get("architectures") or [])


def default_pooling(folder: Path) -> str:
    """Last-token pooling for decoder models, mean pooling for encoders."""
    return "last" if is_decoder(read_json(folder / "config.json")) else "mean"


def matryoshka(config: dict, dimensions: int) -> list[int]:
    """The shorter lengths a request may ask for, from config.json (see the module docstring)."""
    listed = config.get("matryoshka_dimensions")
    if isinstance(listed, list):
        return sorted({int(d) for d in listed if isinstance(d, int) and 0 < d < dimensions})
    if config.get("is_matryoshka") is True:
        lengths, d = [], MIN_MATRYOSHKA
        while d < dimensions:
            lengths.append(d)
            d *= 2
        return lengths
    return []


def pooling_name(pooling_config: dict) -> str:
    """A Pooling module's mode in ModelSpec's words (mean, cls, last), or sentence-transformers' own for others."""
    mode = pooling_config.get("pooling_mode")  # sentence-transformers 6; 5 kept one boolean per mode
    if not isinstance(mode, str):
        modes = [k.removeprefix("pooling_mode_").removesuffix("_tokens").removesuffix("_token")
                 for k, v in pooling_config.items() if k.startswith("pooling_mode_") and v is True]
        mode = "+".join(modes)
    return {v: k for k, v in POOLING_MODES.items()}.get(mode, mode)


def describe_folder(folder: Path, task: Task) -> dict:
    """ModelInfo fields of an embedding or rerank folder (dimensions, matryoshka, pooling, context_length); a plain
    transformers embedding folder has its hidden size and the default pooling."""
    config = read_json(folder / "config.json")
    dimensions, pooling = 0, ""
    if task == Task.EMBEDDING and not (folder / "modules.json").is_file():
        dimensions, pooling = config.get("hidden_size") or 0, default_pooling(folder)
    modules = read_json_list(folder / "modules.json") if task == Task.EMBEDDING else []
    for module in modules:
        settings = read_json(folder / str(module.get("path", "")) / "config.json")
        kind = str(module.get("type", ""))
        if kind.endswith(".Pooling"):
            dimensions = settings.get("embedding_dimension") or settings.get("word_embedding_dimension") or 0
            pooling = pooling_name(settings)
        elif kind.endswith(".Dense"):
            dimensions = settings.get("out_features") or dimensions
    limit = read_json(folder / "sentence_bert_config.json").get("max_seq_length") or read_json(
        folder / "tokenizer_config.json").get("model_max_length") or 0
    positions = config.get("max_position_embeddings") or 0
    context = min((v for v in (limit, positions) if isinstance(v, int) and 0 < v < 1_000_000), default=0)
    return {"dimensions": int(dimensions), "matryoshka": matryoshka(config, int(dimensions)), "pooling": pooling,
            "context_length": int(context)}


def read_json_list(path: Path) -> list[dict]:
    value = _parsed(path)
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []
