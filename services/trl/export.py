"""Writing a trained model to the model store: adapter, merged weights or GGUF, each with its provenance."""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import transformers

from forgeway.core.modelstore import ModelStore, modelforge_provider
from forgeway.services.training.engine import TrainedModel

from .loading import BaseModel, Precision, load_model

MODELFORGE_CONFIG = "modelforge_config.json"


def gguf_exporter():
    """The llama.cpp service's GGUF writer, or None where it is not installed."""
    try:
        from forgeway.services.llamacpp.export import export_gguf
    except ImportError:
        return None
    return export_gguf


@dataclass
class Provenance:
    """What forgeway.json records about a trained model."""

    job_id: str
    method: str
    task: str
    pipeline_task: str
    model_class: str
    base: BaseModel
    dataset: dict
    metrics: dict[str, float]
    settings: dict = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    eval_dataset: dict | None = None
    provider: str = "trl"  # the trainer service that made it ("trl", "unsloth"), recorded as "backend"
    description: str = ""  # the request's; empty: one is made from method, base model and task


def plan_formats(requested: tuple[str, ...], lora: bool) -> list[str]:
    """The formats to write, primary first: as requested, else the adapter of a LoRA run or the full weights."""
    formats = list(dict.fromkeys(requested)) or (["adapter"] if lora else ["merged"])
    return formats


def export(store: ModelStore, name: str, formats: list[str], model, tokenizer, precision: Precision,
           provenance: Provenance, scratch: Path) -> list[TrainedModel]:
    """Write every requested format; each lands under its final name only when complete. The primary format
    takes `name`, the others `name-merged` / `name-gguf`."""
    names = {fmt: name if i == 0 else f"{name}-{fmt}" for i, fmt in enumerate(formats)}
    written: list[TrainedModel] = []
    lora = hasattr(model, "peft_config")
    with contextlib.ExitStack() as stack:
        folders = {fmt: stack.enter_context(store.writing(names[fmt])) for fmt in formats}
        adapter_dir = folders.get("adapter") or (scratch / "adapter" if lora else None)
        if lora:
            model.save_pretrained(adapter_dir)
            tokenizer.save_pretrained(adapter_dir)
        merged_dir = folders.get("merged") or (scratch / "merged" if "gguf" in formats else None)
        if merged_dir is not None:
            _write_merged(model, tokenizer, adapter_dir if lora else None, provenance, precision, merged_dir)
        if "gguf" in formats:
            out = folders["gguf"] / "model.gguf"
            gguf_exporter()(merged_dir, out, "f16", name=names["gguf"])
            for extra in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "config.json"):
                if (merged_dir / extra).is_file():
                    shutil.copy2(merged_dir / extra, folders["gguf"] / extra)
        for fmt in formats:
            _write_metadata(folders[fmt], fmt, names[fmt], provenance, tokenizer)
            written.append(TrainedModel(names[fmt], store.path(names[fmt]), fmt, dict(provenance.metrics)))
    shutil.rmtree(scratch, ignore_errors=True)
    return written


def _write_merged(model, tokenizer, adapter_dir: Path | None, provenance: Provenance, precision: Precision,
                  out: Path) -> None:
    if adapter_dir is None:  # full fine-tuning: the weights are the model
        model.save_pretrained(out, safe_serialization=True)
    else:  # reload the base unquantized and fold the adapter in
        from peft import PeftModel

        base = load_model(provenance.base, provenance.model_class, Precision("cpu", False, False))
        PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload().save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    generation = getattr(model, "generation_config", None)
    if isinstance(generation, transformers.GenerationConfig):
        generation.save_pretrained(out)


def _write_metadata(folder: Path, fmt: str, name: str, p: Provenance, tokenizer) -> None:
    adapter = fmt == "adapter"
    model_class = p.model_class.replace("AutoModel", "AutoPeftModel") if adapter else p.model_class
    provider = modelforge_provider(p.provider)  # ModelForge's vocabulary; the service stays in "backend"
    # What ModelForge's playground reads to load it (model_class, pipeline_task), and who trained it.
    (folder / MODELFORGE_CONFIG).write_text(json.dumps(
        {"model_class": model_class, "pipeline_task": p.pipeline_task, "provider": provider}, indent=4))
    ModelStore.write_metadata(
        folder,
        name=name,
        format=fmt,
        description=p.description or f"{p.method} fine-tune of {p.base.requested} for {p.task}",
        provider=provider,
        backend=p.provider,
        task=p.task,
        pipeline_task=p.pipeline_task,
        model_class=model_class,
        base_model=p.base.path if adapter else None,
        base_model_requested=p.base.requested,
        base_adapter=p.base.adapter,
        method=p.method,
        job_id=p.job_id,
        dataset=p.dataset,
        eval_dataset=p.eval_dataset,
        dataset_sha256=p.dataset.get("sha256") or p.dataset.get("fingerprint"),
        metrics=p.metrics,
        chat=bool(getattr(tokenizer, "chat_template", None)),
        training=p.settings,
        library_versions=p.versions,
        created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )
