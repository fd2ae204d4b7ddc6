"""What a trainer does to the model store besides training into it: delete an entry, export one to GGUF."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from forgeway.core.errors import FailedPrecondition, InvalidArgument, NotFound
from forgeway.core.modelstore import ModelStore, StoredModel, entry_name

GGUF_FILE = "model.gguf"
OUTTYPES = ("f32", "f16", "q8_0")  # the matrix types services/llamacpp/export.py writes
EXPORT_OPTIONS = {"outtype": "GGUF matrix type: f32, f16 or q8_0 (default f16)"}


def gguf_writer() -> Callable | None:
    """The llama.cpp service's GGUF writer (numpy and `gguf`, no torch), or None where it is not installed."""
    try:
        from forgeway.services.llamacpp.export import export_gguf
    except ImportError:
        return None
    return export_gguf


def delete_model(store: ModelStore, name: str) -> None:
    """Remove models/<name> (renamed away, then removed): NOT_FOUND when there is no such entry."""
    store.delete(entry_name(name, "name"))


@dataclass
class Exported:
    """The store entry an export wrote, and the bytes it takes."""

    entry: StoredModel
    size_bytes: int


def export_options(options: dict[str, str]) -> str:
    """The GGUF outtype the options ask for; INVALID_ARGUMENT naming an unknown option or value."""
    for key in options:
        if key not in EXPORT_OPTIONS:
            raise InvalidArgument(f"options.{key}", f"unknown option; known: {', '.join(EXPORT_OPTIONS)}")
    outtype = options.get("outtype") or "f16"
    if outtype not in OUTTYPES:
        raise InvalidArgument("options.outtype", f"{outtype!r} is not a GGUF outtype; allowed: {', '.join(OUTTYPES)}")
    return outtype


def export_gguf_model(store: ModelStore, name: str, output_name: str, outtype: str, writer: Callable) -> Exported:
    """Write store entry `name` (full weights, or an adapter merged into its base) as GGUF into a new entry
    `output_name`: a scratch folder renamed into place when complete, with the source's provenance."""
    entry = store.get(entry_name(name, "name"))
    if entry is None:
        raise NotFound("model", name, store.names())
    target = entry_name(output_name or f"{name}-gguf", "output_name")
    if target == name or store.get(target) is not None:
        raise FailedPrecondition(f"output_name: a store entry {target!r} already exists; delete it or pick another "
                                 "name", metadata={"field": "output_name", "model": target})
    if not entry.loadable:
        raise FailedPrecondition(f"model {name!r} holds no transformers weights or adapter to convert "
                                 f"(format {entry.metadata.get('format') or 'unknown'})", metadata={"model": name})
    with store.writing(target) as scratch:
        try:
            writer(entry.path, scratch / GGUF_FILE, outtype, name=target)
        except (OSError, ValueError, KeyError) as exc:
            raise FailedPrecondition(f"model {name!r} cannot be exported to GGUF: {exc}",
                                     metadata={"model": name}) from None
        ModelStore.write_metadata(scratch, **_provenance(entry, target, outtype))
    written = store.get(target)
    return Exported(written, sum(p.stat().st_size for p in written.path.iterdir() if p.is_file()))


def _provenance(source: StoredModel, name: str, outtype: str) -> dict:
    """The source's forgeway.json, restated for the GGUF entry: who trained it stays, what it is changes."""
    kept = {k: v for k, v in source.metadata.items() if k not in ("base_model", "base_adapter", "model_class")}
    description = source.description or f"model {source.name}"
    return {
        **kept,
        "name": name,
        "format": "gguf",
        "gguf_outtype": outtype,
        "exported_from": source.name,
        "task": source.task.value if source.task else kept.get("task"),
        "base_model_requested": kept.get("base_model_requested") or source.base_model,
        "description": f"GGUF ({outtype}) export of {source.name}: {description}",
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
