"""A tiny T5-architecture encoder-decoder (for the summarization task), seeded random weights."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import GenerationConfig, T5Config, T5ForConditionalGeneration

from forgeway.demo.chat_template import ENDOFTEXT, IM_END
from forgeway.demo.llama import save_model
from forgeway.demo.tokenizer import train_tokenizer


def build_tiny_seq2seq(out_dir: str | Path, seed: int = 0) -> Path:
    """Build a 2+2-layer T5 and its tokenizer into ``out_dir``; returns ``out_dir``.

    The decoder starts from <|endoftext|> (also the pad token, T5's convention), never
    emits it, and stops at <|im_end|>.
    """
    tokenizer = train_tokenizer()
    pad_id = tokenizer.convert_tokens_to_ids(ENDOFTEXT)
    eos_id = tokenizer.convert_tokens_to_ids(IM_END)
    config = T5Config(
        vocab_size=len(tokenizer),
        d_model=64,
        d_kv=16,
        d_ff=128,
        num_layers=2,
        num_decoder_layers=2,
        num_heads=4,
        relative_attention_num_buckets=16,
        relative_attention_max_distance=64,
        feed_forward_proj="gated-gelu",
        tie_word_embeddings=False,
        pad_token_id=pad_id,
        eos_token_id=eos_id,
        decoder_start_token_id=pad_id,
        dtype="float32",
    )
    with torch.random.fork_rng(devices=[]):  # the caller's random state is left as it was
        torch.manual_seed(seed)
        model = T5ForConditionalGeneration(config).eval()
    model.generation_config = GenerationConfig(
        decoder_start_token_id=pad_id,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
        suppress_tokens=[pad_id],
        max_new_tokens=32,
        do_sample=False,
    )
    return save_model(model, tokenizer, out_dir)
