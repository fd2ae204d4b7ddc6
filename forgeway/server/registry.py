"""Lazy registry of services by name, plus the `forgeway.backends` entry-point group for out-of-tree ones."""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

ENTRY_POINT_GROUP = "forgeway.backends"

# name -> "module:Class"; nothing is imported until a name is asked for, so `serve llamacpp` never imports torch.
BUILTIN: dict[str, str] = {
    "custom": "forgeway.services.custom.service:CustomService",
    "echo": "forgeway.services.echo.service:EchoService",
    "hf": "forgeway.services.hf.service:HFService",
    "gateway": "forgeway.gateway.service:GatewayService",
    "llamacpp": "forgeway.services.llamacpp.service:LlamaCppService",
    "openai": "forgeway.services.openai_proxy.servicer:OpenAIProxyService",
    "trl": "forgeway.services.trl.service:TRLService",
    "unsloth": "forgeway.services.unsloth.service:UnslothService",
}


# name -> (what it is, what it needs to run): `forgeway serve --help` lists these.
ABOUT: dict[str, tuple[str, str]] = {
    "custom": ("a LlamaForge-style backend class (--backend-class module:Class) served over the contract",
               "the class importable here (PYTHONPATH)"),
    "echo": ("model-free reference backend: echoes the prompt word by word", "nothing"),
    "gateway": ("routes every call to the backends by capability and health; OpenAI-compatible HTTP API",
                "backends to route to (--backends or forgeway.yaml)"),
    "hf": ("Hugging Face transformers: batched generation, adapters, summarization, extractive QA",
           "the hf extra (torch, transformers); models in the store or --models"),
    "llamacpp": ("llama.cpp: GGUF models", "the llamacpp extra (llama-cpp-python); GGUF files in the store or --models"),
    "openai": ("proxy to OpenAI or any OpenAI-compatible server",
               "FORGEWAY_OPENAI_BASE_URL and/or FORGEWAY_OPENAI_API_KEY (or --api-key-file)"),
    "trl": ("trainer: SFT, DPO, GRPO, KTO, ORPO, CPO, RLOO, online DPO, reward models with TRL", "the trl extra"),
    "unsloth": ("trainer: Unsloth's fast path, falling back to TRL through the gateway",
                "its own environment: make unsloth-env, then .venv-unsloth/bin/forgeway serve unsloth"),
}


class UnknownService(LookupError):
    pass


def available() -> dict[str, str]:
    """Every registered service name and its import target; entry points may add names, not replace built-ins."""
    targets = {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}
    return {**targets, **BUILTIN}


def load(name: str) -> type:
    """Import and return the class registered under name."""
    targets = available()
    if name not in targets:
        raise UnknownService(f"unknown service {name!r}; known: {', '.join(sorted(targets))}")
    module_name, _, attr = targets[name].partition(":")
    return getattr(importlib.import_module(module_name), attr)
