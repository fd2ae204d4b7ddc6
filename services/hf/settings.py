"""Settings of the hf service: which models to serve, where, and how many requests at once."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, model_validator

from forgeway.core.generation import Task
from forgeway.server.settings import ServiceSettings

Quantization = Literal["none", "nf4", "fp4", "int8"]
DEVICE_PATTERN = r"^(auto|cpu|mps|cuda(:\d+)?)$"


class AdapterSpec(BaseModel):
    """A LoRA adapter served beside its base model."""

    name: str = Field(description="Name requests use in `adapter`.")
    path: str = Field(description="Folder of the peft adapter, or a model-store name.")


class ModelSpec(BaseModel):
    """One model to serve."""

    name: str = Field(description="Name requests use in `model`.")
    path: str = Field(description="Local folder, hub id (where a hub is reachable) or model-store name.")
    task: Task | None = Field(None, description="Task it serves; unset means what its config implies.")
    adapters: list[AdapterSpec] = Field(default_factory=list, description="LoRA adapters loaded beside it.")
    quantization: Quantization = Field("none", description="bitsandbytes quantization: nf4, fp4 (4-bit) or int8.")
    context_length: int | None = Field(None, ge=1, description="Largest prompt plus completion; unset: the config's.")
    pooling: Literal["mean", "cls", "last"] | None = Field(
        None, description="Embedding models without a sentence-transformers config (task embedding): how token "
                          "states become one vector; unset: last for decoder models, mean for encoders.")


class HFSettings(ServiceSettings):
    """Settings of the Hugging Face transformers backend."""

    models: list[ModelSpec] = Field(
        default_factory=list,
        description="Models to serve: [{name, path, task?, adapters?, quantization?}]; none serves the model store.",
    )
    model: str | None = Field(None, description="One model to serve: a folder, hub id or model-store name.")
    model_name: str | None = Field(None, description="Name to serve --model under (default: the folder's name).")
    device: str = Field("auto", pattern=DEVICE_PATTERN,
                        description="Where models run: cpu, cuda, cuda:N or mps; auto: a GPU when present, else cpu.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="Weight dtype; auto is float32 on CPU and the checkpoint's dtype on CUDA."
    )
    max_concurrency: int = Field(16, ge=1, le=512, description="Batch slots per model (sequences decoded together).")
    max_queue: int = Field(64, ge=0, description="Requests that may wait for a slot; more get RESOURCE_EXHAUSTED.")
    embedding_batch_size: int = Field(
        64, ge=1, le=2048, description="Inputs one embedding or rerank forward pass takes at most; concurrent "
                                       "requests waiting together share a pass.")
    max_new_tokens: int = Field(256, ge=1, description="Completion length when a request sets no max_tokens.")
    torch_threads: int = Field(0, ge=0, description="torch intra-op threads; 0 keeps torch's default.")
    load_on_demand: bool = Field(True, description="Load a model-store model on its first request.")
    allow_remote_code: bool = Field(
        False, description="Let LoadModel's option trust_remote_code=true run the Python code a model folder ships "
                           "(config.json auto_map); off, such a request is PERMISSION_DENIED.")
    model_roots: list[Path] = Field(
        default_factory=list,
        description="Folders LoadModel may read models and adapters from and use as its cache_dir option, besides "
                    "FORGEWAY_HOME/models.",
    )

    @model_validator(mode="after")
    def _one_model_shortcut(self) -> HFSettings:
        if self.model:
            name = self.model_name or self.model.rstrip("/").rsplit("/", 1)[-1]
            if any(m.name == name for m in self.models):
                raise ValueError(f"model {name!r} is given twice")
            self.models = [*self.models, ModelSpec(name=name, path=self.model)]
        names = [m.name for m in self.models]
        if len(set(names)) != len(names):
            raise ValueError("model names must be unique")
        return self
