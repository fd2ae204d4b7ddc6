"""Small BERT-architecture retrieval models on the demo tokenizer, seeded random weights, saved in their libraries'
formats: a sentence-transformers embedding model (mean pooling, then Normalize; Matryoshka lengths declared in its
config.json) and a single-logit cross-encoder reranker. Untrained: texts sharing words land near each other only
because their token embeddings overlap, which is what tests and `make up` need (a path through the real libraries),
not retrieval quality."""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from sentence_transformers import CrossEncoder, SentenceTransformer
from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer
from tokenizers import processors
from transformers import BertConfig, BertForSequenceClassification, BertModel, PreTrainedTokenizerFast

from forgeway.demo.chat_template import ENDOFTEXT
from forgeway.demo.tokenizer import train_tokenizer

STORE_METADATA = "forgeway.json"  # what makes a folder under FORGEWAY_HOME/models a model-store entry


@dataclass(frozen=True)
class BertShape:
    """The numbers that size a BERT encoder (the defaults: the tiny one tests build in a second)."""

    hidden_size: int = 64
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    intermediate_size: int = 128
    max_position_embeddings: int = 512


# all-MiniLM-L6-v2's shape, a common small embedding model: what the embeddings benchmark runs.
MINILM = BertShape(hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536)


def pair_tokenizer() -> PreTrainedTokenizerFast:
    """The demo tokenizer closing each text with <|endoftext|> (BERT's [SEP]); a pair is `A <sep> B <sep>` with
    segment ids 0 then 1, as a cross-encoder reads a query and a document."""
    tokenizer = train_tokenizer()
    sep = (ENDOFTEXT, tokenizer.convert_tokens_to_ids(ENDOFTEXT))
    tokenizer.backend_tokenizer.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single=f"$A:0 {ENDOFTEXT}:0", pair=f"$A:0 {ENDOFTEXT}:0 $B:1 {ENDOFTEXT}:1",
                                      special_tokens=[sep]),
    ])
    tokenizer.model_input_names = ["input_ids", "token_type_ids", "attention_mask"]
    tokenizer.init_kwargs["model_input_names"] = tokenizer.model_input_names
    tokenizer.chat_template = None
    return tokenizer


def bert_config(tokenizer: PreTrainedTokenizerFast, shape: BertShape, **extra) -> BertConfig:
    return BertConfig(
        vocab_size=len(tokenizer), hidden_size=shape.hidden_size, num_hidden_layers=shape.num_hidden_layers,
        num_attention_heads=shape.num_attention_heads, intermediate_size=shape.intermediate_size,
        max_position_embeddings=shape.max_position_embeddings, type_vocab_size=2,
        pad_token_id=tokenizer.convert_tokens_to_ids(ENDOFTEXT), dtype="float32", **extra,
    )


def _seeded(build, seed: int):
    with torch.random.fork_rng(devices=[]):  # the caller's random state is left as it was
        torch.manual_seed(seed)
        return build().eval()


def build_embedding_model(out_dir: str | Path, shape: BertShape = BertShape(), seed: int = 0,
                          max_seq_length: int = 128) -> Path:
    """A SentenceTransformer (BERT, mean pooling, Normalize) saved with its own save(); returns ``out_dir``.

    Its config.json declares ``matryoshka_dimensions`` (a quarter and a half of the vector), vLLM's convention for
    the shorter lengths a request may ask for.
    """
    tokenizer = pair_tokenizer()
    config = bert_config(tokenizer, shape, matryoshka_dimensions=[shape.hidden_size // 4, shape.hidden_size // 2])
    encoder = _seeded(lambda: BertModel(config), seed)  # with its pooler, so AutoModel loads every weight
    with tempfile.TemporaryDirectory(prefix="forgeway-bert-") as tmp:
        encoder.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        transformer = Transformer(tmp, max_seq_length=max_seq_length)
        model = SentenceTransformer(modules=[transformer, Pooling(shape.hidden_size, "mean"), Normalize()],
                                    device="cpu")
        model.save(str(out_dir))
    return Path(out_dir)


def build_reranker(out_dir: str | Path, shape: BertShape = BertShape(), seed: int = 1, max_length: int = 128) -> Path:
    """A CrossEncoder (BertForSequenceClassification, one logit, sigmoid) saved with its own save()."""
    tokenizer = pair_tokenizer()
    classifier = _seeded(lambda: BertForSequenceClassification(bert_config(tokenizer, shape, num_labels=1)), seed)
    with tempfile.TemporaryDirectory(prefix="forgeway-bert-") as tmp:
        classifier.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        CrossEncoder(tmp, max_length=max_length, device="cpu", local_files_only=True).save(str(out_dir))
    return Path(out_dir)


def build_demo_embedding(out_dir: str | Path, seed: int = 0, task: str = "embedding") -> Path:
    """The embedding model (task "embedding") or the reranker (task "rerank") `make up` serves beside the demo model,
    as a model-store entry (idempotent)."""
    out = Path(out_dir)
    if (out / STORE_METADATA).is_file():
        return out
    (build_embedding_model if task == "embedding" else build_reranker)(out, seed=seed)
    metadata = {"name": out.name, "format": "sentence-transformers", "provider": "forgeway.demo",
                "backend": "forgeway.demo", "task": task, "base_model": None, "method": "random-init",
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    (out / STORE_METADATA).write_text(json.dumps(metadata, indent=2, sort_keys=True) + "\n")
    return out
