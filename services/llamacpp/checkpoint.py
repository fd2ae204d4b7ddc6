"""Reads a Hugging Face checkpoint (config, safetensors) lazily with numpy, merging a LoRA adapter if it is one."""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

_DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16, "F64": np.float64}
ADAPTER_CONFIG = "adapter_config.json"


@dataclass(frozen=True)
class _Entry:
    path: Path
    offset: int  # absolute offset of the tensor's bytes in the file
    length: int
    dtype: str
    shape: tuple[int, ...]


class SafeTensors:
    """Every tensor of the *.safetensors files in a folder, read one at a time through a memory map."""

    def __init__(self, folder: Path, pattern: str = "*.safetensors"):
        self.entries: dict[str, _Entry] = {}
        files = sorted(folder.glob(pattern))
        if not files:
            raise FileNotFoundError(f"no {pattern} in {folder}")
        for path in files:
            with path.open("rb") as f:
                (size,) = struct.unpack("<Q", f.read(8))
                header = json.loads(f.read(size))
            for name, info in header.items():
                if name == "__metadata__":
                    continue
                if info["dtype"] not in _DTYPES:
                    raise ValueError(f"{path.name}: tensor {name!r} has unsupported dtype {info['dtype']}")
                start, end = info["data_offsets"]
                self.entries[name] = _Entry(path, 8 + size + start, end - start, info["dtype"], tuple(info["shape"]))

    def __contains__(self, name: str) -> bool:
        return name in self.entries

    def names(self) -> list[str]:
        return list(self.entries)

    def shape(self, name: str) -> tuple[int, ...]:
        return self.entries[name].shape

    def float32(self, name: str) -> np.ndarray:
        """The tensor as float32 (bf16 widened exactly)."""
        e = self.entries[name]
        raw = np.memmap(e.path, dtype=np.uint8, mode="r", offset=e.offset, shape=(e.length,))
        array = raw.view(np.dtype(_DTYPES[e.dtype]).newbyteorder("<"))
        if e.dtype == "BF16":
            array = (array.astype(np.uint32) << 16).view(np.float32)
        return np.asarray(array, dtype=np.float32).reshape(e.shape)


class LoraAdapter:
    """A PEFT LoRA adapter (adapter_config.json + adapter_model.safetensors), merged as W + scale * B @ A."""

    PREFIX = "base_model.model."

    def __init__(self, folder: Path):
        self.folder = folder
        self.config: dict[str, Any] = json.loads((folder / ADAPTER_CONFIG).read_text())
        if self.config.get("peft_type", "LORA") != "LORA":
            raise ValueError(f"only LoRA adapters can be merged, not {self.config.get('peft_type')}")
        if self.config.get("use_dora"):
            raise ValueError("DoRA adapters are not supported; merge with peft (merge_and_unload) first")
        if self.config.get("fan_in_fan_out"):
            raise ValueError("fan_in_fan_out adapters (Conv1D models) are not Llama-family")
        self.tensors = SafeTensors(folder, "adapter_model*.safetensors")
        self.lora: dict[str, tuple[str, str]] = {}  # base weight name -> (A name, B name)
        self.full: dict[str, str] = {}  # base weight name -> replacement (modules_to_save)
        for name in self.tensors.names():
            plain = name.removeprefix(self.PREFIX)
            if ".lora_A." in plain:
                module = plain.split(".lora_A.")[0]
                self.lora[f"{module}.weight"] = (name, name.replace(".lora_A.", ".lora_B."))
            elif ".lora_B." in plain:
                continue
            elif "lora_" in plain:  # lora_embedding_A/B, lora_magnitude_vector, ...
                raise ValueError(f"unsupported adapter tensor {name!r}; merge with peft (merge_and_unload) first")
            else:
                self.full[plain] = name

    def base_model(self) -> str:
        return self.config.get("base_model_name_or_path") or ""

    def _scale(self, module: str) -> float:
        r = self._pattern("rank_pattern", module, self.config["r"])
        alpha = self._pattern("alpha_pattern", module, self.config.get("lora_alpha", r))
        return alpha / math.sqrt(r) if self.config.get("use_rslora") else alpha / r

    def _pattern(self, key: str, module: str, default: float) -> float:
        for pattern, value in (self.config.get(key) or {}).items():
            if module == pattern or module.endswith("." + pattern):
                return value
        return default

    def apply(self, name: str, weight: np.ndarray) -> np.ndarray:
        """The base tensor `name` with this adapter merged in."""
        if name in self.full:
            return self.tensors.float32(self.full[name])
        if name in self.lora:
            a_name, b_name = self.lora[name]
            delta = self.tensors.float32(b_name) @ self.tensors.float32(a_name)
            return weight + np.float32(self._scale(name.removesuffix(".weight"))) * delta
        return weight


class Checkpoint:
    """A Llama-family transformers checkpoint: a full model folder, or a LoRA adapter folder over its base."""

    def __init__(self, folder: Path, base: Path | None = None):
        self.folder = folder
        self.adapter = LoraAdapter(folder) if (folder / ADAPTER_CONFIG).exists() else None
        self.weights_dir = folder
        if self.adapter is not None:
            self.weights_dir = base or _find_base(folder, self.adapter.base_model())
        self.config: dict[str, Any] = json.loads((self.weights_dir / "config.json").read_text())
        self.tensors = SafeTensors(self.weights_dir)
        # the tokenizer saved with the adapter wins (a trainer may have added tokens)
        self.tokenizer_dir = folder if (folder / "tokenizer.json").exists() else self.weights_dir

    def names(self) -> list[str]:
        names = [n for n in self.tensors.names() if not n.endswith("rotary_emb.inv_freq")]
        extra = [n for n in (self.adapter.full if self.adapter else {}) if n not in self.tensors]
        return names + extra

    def shape(self, name: str) -> tuple[int, ...]:
        if self.adapter is not None and name in self.adapter.full:
            return self.adapter.tensors.shape(self.adapter.full[name])
        return self.tensors.shape(name)

    def tensor(self, name: str) -> np.ndarray:
        weight = self.tensors.float32(name) if name in self.tensors else None
        return self.adapter.apply(name, weight) if self.adapter is not None else weight

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


def _find_base(adapter_dir: Path, base: str) -> Path:
    from forgeway.server.settings import default_home

    candidates = [Path(base).expanduser(), adapter_dir / base, default_home() / "models" / base] if base else []
    for candidate in candidates:
        if (candidate / "config.json").exists():
            return candidate
    raise FileNotFoundError(
        f"the adapter's base model {base!r} is not a local model folder; pass its folder with --base"
    )
