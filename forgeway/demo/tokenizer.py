"""A small byte-level BPE tokenizer trained on the shipped corpus and a few tool-calling dialogues, with ChatML."""

from __future__ import annotations

from importlib import resources

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from forgeway.demo.chat_template import CHAT_TEMPLATE, ENDOFTEXT, IM_END, RESPONSE_TEMPLATE, SPECIAL_TOKENS
from forgeway.demo.tools import tool_conversations

VOCAB_SIZE = 1024
# Enough rendered tool conversations that the tools preamble, the tags and the JSON keys merge into words: a prompt with
# the demo's two tools is ~240 tokens instead of ~540 (max_position_embeddings is 512).
TOKENIZER_CONVERSATIONS = 8


def corpus_text() -> str:
    """The English corpus shipped with the package."""
    return resources.files("forgeway.demo").joinpath("data/corpus.txt").read_text(encoding="utf-8")


def train_tokenizer(vocab_size: int = VOCAB_SIZE) -> PreTrainedTokenizerFast:
    """Train the byte-level BPE tokenizer in memory (BPE training is deterministic: no seed)."""
    paragraphs = [p for p in corpus_text().split("\n\n") if p.strip()]
    model = Tokenizer(models.BPE())
    model.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    model.decoder = decoders.ByteLevel()
    model.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    conversations = [text for text, _ in tool_conversations(paragraphs, TOKENIZER_CONVERSATIONS)]
    model.train_from_iterator(paragraphs + conversations, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=model,
        bos_token=ENDOFTEXT,
        eos_token=IM_END,
        pad_token=ENDOFTEXT,
        unk_token=None,
        chat_template=CHAT_TEMPLATE,
        response_template=RESPONSE_TEMPLATE,
        model_input_names=["input_ids", "attention_mask"],
        model_max_length=512,
        clean_up_tokenization_spaces=False,
    )
    return tokenizer

