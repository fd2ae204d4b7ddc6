"""Write a llama.cpp GGUF of a tiny model built here, with the llama.cpp service's exporter.

Only numpy and the ``gguf`` package are needed: no torch. The general exporter (any Llama-family
checkpoint, LoRA adapters merged, q8_0) lives in ``forgeway.services.llamacpp.export``.
"""

from __future__ import annotations

from pathlib import Path

_DTYPES = ("f32", "f16")


def build_tiny_gguf(model_dir: str | Path, out_path: str | Path, dtype: str = "f32") -> Path:
    """Export the Llama model in ``model_dir`` to ``out_path`` as an F32 or F16 GGUF."""
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, not {dtype!r}")
    from forgeway.services.llamacpp.export import export_gguf

    return export_gguf(model_dir, out_path, dtype, name=Path(model_dir).name)
