"""Tiny models built offline from a seed: tokenizer, Llama, GGUF, seq2seq, extractive QA, demo."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Imported lazily so that, e.g., the GGUF exporter works without torch installed.
_EXPORTS = {
    "build_tokenizer": "forgeway.testing.tokenizer",
    "train_tokenizer": "forgeway.testing.tokenizer",
    "corpus_text": "forgeway.testing.tokenizer",
    "CHAT_TEMPLATE": "forgeway.testing.chat_template",
    "plain_chat_template": "forgeway.testing.chat_template",
    "build_tiny_llama": "forgeway.testing.llama",
    "build_tiny_gguf": "forgeway.testing.gguf_export",
    "build_tiny_seq2seq": "forgeway.testing.seq2seq",
    "build_tiny_qa": "forgeway.testing.qa",
    "build_demo_model": "forgeway.testing.demo",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from forgeway.testing.chat_template import CHAT_TEMPLATE, plain_chat_template
    from forgeway.testing.demo import build_demo_model
    from forgeway.testing.gguf_export import build_tiny_gguf
    from forgeway.testing.llama import build_tiny_llama
    from forgeway.testing.qa import build_tiny_qa
    from forgeway.testing.seq2seq import build_tiny_seq2seq
    from forgeway.testing.tokenizer import build_tokenizer, corpus_text, train_tokenizer


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
