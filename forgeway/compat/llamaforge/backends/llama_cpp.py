"""LlamaForge's llama.cpp backend: GGUF models on Forgeway's llama.cpp service."""

from __future__ import annotations

from .forgeway import ForgewayBackend


class LlamaCppBackend(ForgewayBackend):
    """Load parameters: n_gpu_layers, n_ctx (or context_length), n_batch, n_threads, f16_kv, ... (the llama.cpp
    service's LoadModel options)."""

    name, kind = "llama.cpp", "llamacpp"
