"""The tiny Llama tests build offline (two layers, seeded weights) and its tokenizer on its own."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from forgeway.demo.llama import LlamaShape, init_llama, save_model
from forgeway.demo.tokenizer import VOCAB_SIZE, train_tokenizer

TINY = LlamaShape()


def build_tokenizer(out_dir: str | Path, vocab_size: int = VOCAB_SIZE) -> Path:
    """Train the tokenizer and save it with ``save_pretrained``; returns ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    train_tokenizer(vocab_size=vocab_size).save_pretrained(out)
    return out


def build_tiny_llama(out_dir: str | Path, seed: int = 0, context_length: int = TINY.max_position_embeddings) -> Path:
    """Build the 2-layer tiny Llama (its context `context_length` tokens) and its tokenizer into ``out_dir``; returns
    ``out_dir``."""
    tokenizer = train_tokenizer()
    shape = replace(TINY, max_position_embeddings=context_length)
    return save_model(init_llama(tokenizer, shape, seed=seed), tokenizer, out_dir)
