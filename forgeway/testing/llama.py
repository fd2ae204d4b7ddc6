"""The tiny Llama tests build offline (two layers, seeded weights) and its tokenizer on its own."""

from __future__ import annotations

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


def build_tiny_llama(out_dir: str | Path, seed: int = 0) -> Path:
    """Build the 2-layer tiny Llama and its tokenizer into ``out_dir``; returns ``out_dir``."""
    tokenizer = train_tokenizer()
    return save_model(init_llama(tokenizer, TINY, seed=seed), tokenizer, out_dir)
