"""LlamaForge's Hugging Face backend: transformers models (a local folder or hub id) on Forgeway's hf service."""

from __future__ import annotations

from .forgeway import ForgewayBackend


class HuggingFaceBackend(ForgewayBackend):
    """Load parameters: device (cpu, cuda, mps, auto), torch_dtype, trust_remote_code (the service must allow it),
    cache_dir (under its allowed roots), max_length (or context_length)."""

    name, kind = "huggingface", "hf"
