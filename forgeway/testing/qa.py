"""A tiny BERT-architecture extractive question-answering model, seeded random weights."""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import processors
from transformers import BertConfig, BertForQuestionAnswering, PreTrainedTokenizerFast

from forgeway.demo.chat_template import ENDOFTEXT
from forgeway.demo.llama import save_model
from forgeway.demo.tokenizer import train_tokenizer


def build_tiny_qa(out_dir: str | Path, seed: int = 0) -> Path:
    """Build a 2-layer BertForQuestionAnswering and its tokenizer into ``out_dir``; returns ``out_dir``.

    Feed it ``tokenizer(question, context)``: the pair is joined by <|endoftext|> with
    token_type_ids 0 then 1, and the start/end logits index tokens of the pair.
    """
    tokenizer = qa_tokenizer()
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        max_position_embeddings=512,
        type_vocab_size=2,
        pad_token_id=tokenizer.convert_tokens_to_ids(ENDOFTEXT),
        dtype="float32",
    )
    with torch.random.fork_rng(devices=[]):  # the caller's random state is left as it was
        torch.manual_seed(seed)
        model = BertForQuestionAnswering(config).eval()
    return save_model(model, tokenizer, out_dir)


def qa_tokenizer() -> PreTrainedTokenizerFast:
    """The shared tokenizer, with a separator and segment ids for (question, context) pairs."""
    tokenizer = train_tokenizer()
    sep_id = tokenizer.convert_tokens_to_ids(ENDOFTEXT)
    tokenizer.backend_tokenizer.post_processor = processors.Sequence(
        [
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(
                single="$A:0", pair=f"$A:0 {ENDOFTEXT}:0 $B:1", special_tokens=[(ENDOFTEXT, sep_id)]
            ),
        ]
    )
    tokenizer.model_input_names = ["input_ids", "token_type_ids", "attention_mask"]
    tokenizer.init_kwargs["model_input_names"] = tokenizer.model_input_names
    return tokenizer
