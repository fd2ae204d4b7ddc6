"""Tiny BERT encoders for embedding and reranking tests (seeded random weights, a WordPiece tokenizer trained on the
shipped corpus), saved as transformers checkpoints that llama.cpp's converter takes (forgeway.testing.convert)."""

from __future__ import annotations

import json
import string
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import BertConfig, BertForSequenceClassification, BertModel, BertTokenizerFast

from forgeway.demo.llama import save_model
from forgeway.demo.tokenizer import corpus_text

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
HEADS = ("embedding", "rerank")
# sentence-transformers' Pooling config key for each pooling llama.cpp's converter reads
POOLING_KEYS = {"mean": "pooling_mode_mean_tokens", "cls": "pooling_mode_cls_token"}


def wordpiece_tokenizer(vocab_size: int = 1024, max_length: int = 128) -> BertTokenizerFast:
    """A lower-casing WordPiece tokenizer (BERT's: [CLS] text [SEP], pairs as [CLS] a [SEP] b [SEP]), trained in
    memory; every printable ASCII character is in its alphabet, so English text has no [UNK]."""
    paragraphs = [p for p in corpus_text().split("\n\n") if p.strip()]
    model = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    model.normalizer = normalizers.BertNormalizer(lowercase=True)
    model.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    model.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS),
                                        initial_alphabet=list(string.printable.strip()), show_progress=False)
    model.train_from_iterator(paragraphs, trainer=trainer)
    cls, sep = model.token_to_id("[CLS]"), model.token_to_id("[SEP]")
    model.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    return BertTokenizerFast(tokenizer_object=model, unk_token="[UNK]", sep_token="[SEP]", pad_token="[PAD]",
                             cls_token="[CLS]", mask_token="[MASK]", model_max_length=max_length)


def build_tiny_bert(out_dir: str | Path, head: str = "embedding", pooling: str = "mean", seed: int = 0,
                    max_length: int = 128) -> Path:
    """A 2-layer BERT into ``out_dir``; returns ``out_dir``.

    head "embedding": a BertModel with sentence-transformers' modules.json and a ``pooling`` (mean or cls) Pooling
    module, which llama.cpp's converter writes into the GGUF as its pooling type. head "rerank": a
    BertForSequenceClassification with one label (a cross-encoder's relevance logit).
    """
    if head not in HEADS or pooling not in POOLING_KEYS:
        raise ValueError(f"head must be one of {HEADS} and pooling one of {tuple(POOLING_KEYS)}")
    tokenizer = wordpiece_tokenizer(max_length=max_length)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=128, max_position_embeddings=max_length, type_vocab_size=2,
                        pad_token_id=tokenizer.pad_token_id, num_labels=1, dtype="float32")
    with torch.random.fork_rng(devices=[]):  # the caller's random state is left as it was
        torch.manual_seed(seed)
        model = (BertModel(config) if head == "embedding" else BertForSequenceClassification(config)).eval()
    out = save_model(model, tokenizer, out_dir)
    if head == "embedding":
        modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
                   {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
        (out / "modules.json").write_text(json.dumps(modules, indent=2))
        (out / "1_Pooling").mkdir(exist_ok=True)
        pooling_config = {"word_embedding_dimension": config.hidden_size, POOLING_KEYS[pooling]: True}
        (out / "1_Pooling" / "config.json").write_text(json.dumps(pooling_config, indent=2))
    return out


def build_tiny_bert_gguf(out_dir: str | Path, head: str = "embedding", pooling: str = "mean", seed: int = 0) -> Path:
    """build_tiny_bert into ``out_dir``, converted by llama.cpp's converter to ``out_dir``/model.gguf (F32)."""
    from forgeway.testing.convert import convert_hf_to_gguf

    model_dir = build_tiny_bert(out_dir, head, pooling, seed)
    return convert_hf_to_gguf(model_dir, model_dir / "model.gguf")
