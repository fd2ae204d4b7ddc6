"""The disk space a training job needs, checked against the model store's free space before the job is created.

The estimate, from the base model's size on disk (its weights folder; for a model-store adapter, the adapter plus
its base; for a hub id, its snapshot in the hub cache):
- each full-size artifact (full fine-tuning's model, a `merged` export, a `gguf` export) takes 1x the base;
- an `adapter` export takes 0.25x (the adapter and its tokenizer, generously);
- with save_steps, checkpoints: 3x for full fine-tuning (weights and Adam's two moments), 0.25x for LoRA;
plus the trainer's `min_free_disk` setting, the space kept free for everything else. Not enough: FAILED_PRECONDITION
naming the space needed and the space free, and no job."""

from __future__ import annotations

import json
from pathlib import Path

from forgeway.core.errors import FailedPrecondition
from forgeway.core.modelstore import METADATA_FILE
from forgeway.server.hardware import disk_usage

from .spec import TrainSpec

GIB = 1024**3
ADAPTER_FACTOR = 0.25
FULL_FACTOR = 1.0
FULL_CHECKPOINT_FACTOR = 3.0


def folder_bytes(path: Path) -> int:
    """Bytes of the files under a folder (or of one file), following links: the hub cache links to its blobs."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def base_model_bytes(resolved: str) -> int:
    """Size on disk of a resolved base model: a local folder (a store adapter counts its base too) or a hub id in
    the hub cache; 0 where the weights are nowhere on this disk (they would be downloaded: not counted)."""
    path = Path(resolved)
    if path.exists():
        size = folder_bytes(path)
        metadata = path / METADATA_FILE
        if (path / "adapter_config.json").is_file() and metadata.is_file():
            base = json.loads(metadata.read_text()).get("base_model", "")
            if base and base != resolved:
                size += base_model_bytes(base)
        return size
    try:
        import huggingface_hub
    except ImportError:
        return 0
    config = huggingface_hub.try_to_load_from_cache(resolved, "config.json")
    return folder_bytes(Path(config).parent) if isinstance(config, str) else 0


def needed_bytes(spec: TrainSpec, base_bytes: int) -> int:
    """The job's estimate, by the rule in this module's docstring (without the min_free_disk reserve)."""
    lora = spec.lora is not None
    formats = list(dict.fromkeys(spec.export_formats)) or (["adapter"] if lora else ["merged"])
    factor = sum(ADAPTER_FACTOR if fmt == "adapter" else FULL_FACTOR for fmt in formats)
    if spec.save_steps:
        factor += ADAPTER_FACTOR if lora else FULL_CHECKPOINT_FACTOR
    return int(base_bytes * factor)


def check_disk_space(store: Path, needed: int, reserve: int) -> None:
    """FAILED_PRECONDITION when the filesystem of the model store has less than needed + reserve bytes free."""
    free = disk_usage(store).free
    if free >= needed + reserve:
        return
    raise FailedPrecondition(
        f"not enough disk space for this job: it needs about {_gib(needed)} plus {_gib(reserve)} kept free "
        f"(min_free_disk), and the model store's disk has {_gib(free)} free",
        reason="INSUFFICIENT_DISK_SPACE",
        metadata={"needed_bytes": str(needed), "reserved_bytes": str(reserve), "free_bytes": str(free)},
    )


def _gib(size: int) -> str:
    return f"{size / GIB:.2f} GiB"


def check_job_disk(engine, spec: TrainSpec) -> None:
    """The check for one validated request on a trainer (a TrainingEngine): its estimate against the store's disk."""
    base = base_model_bytes(engine.resolve_base_model(spec.base_model))
    check_disk_space(engine.models.root, needed_bytes(spec, base), engine.settings.min_free_disk)
