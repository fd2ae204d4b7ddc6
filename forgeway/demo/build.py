"""The demo model `make up` serves: a small Llama trained for a few minutes on the shipped corpus."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import time
from pathlib import Path

import torch

from forgeway.demo.chat_template import ENDOFTEXT
from forgeway.demo.llama import LlamaShape, init_llama, save_model
from forgeway.demo.tokenizer import corpus_text, train_tokenizer
from forgeway.services.llamacpp.export import export_gguf

DEMO = LlamaShape(
    hidden_size=192,
    intermediate_size=512,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=512,
)
MARKER = "forgeway-demo.json"
GGUF_NAME = "model.gguf"
STORE_METADATA = "forgeway.json"  # what makes a folder under FORGEWAY_HOME/models a model-store entry

logger = logging.getLogger(__name__)


def build_demo_model(
    out_dir: str | Path,
    max_seconds: float = 170.0,
    seed: int = 0,
    max_steps: int = 400,
) -> Path:
    """Train the demo model into ``out_dir``; returns ``out_dir``.

    It holds the Hugging Face files, ``model.gguf`` of the same weights, and the model
    store's ``forgeway.json``, so FORGEWAY_HOME/models/<name> serves it by name.

    Idempotent: if ``out_dir`` holds a finished build (its marker file), it returns at
    once. Training stops at ``max_steps`` or ``max_seconds``, whichever comes first; the
    learning-rate schedule follows whichever is nearer, so a slow machine still ends
    with a decayed rate (and a result that depends on its speed).
    """
    out = Path(out_dir)
    if (out / MARKER).is_file():
        return out
    started = time.monotonic()
    tokenizer = train_tokenizer()
    model = init_llama(tokenizer, DEMO, seed=seed)
    stream = _training_stream(tokenizer)
    stats = _train(model, stream, max_seconds=max_seconds, max_steps=max_steps, seed=seed)
    model.eval()

    staging = out.parent / f".{out.name}.building-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        save_model(model, tokenizer, staging)
        export_gguf(staging, staging / GGUF_NAME, "f32", name=out.name)
        _write_store_metadata(staging, out.name, stats)
        out.mkdir(parents=True, exist_ok=True)
        for path in sorted(staging.iterdir()):
            path.replace(out / path.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    stats["total_seconds"] = round(time.monotonic() - started, 1)
    (out / MARKER).write_text(json.dumps(stats, indent=2) + "\n")
    return out


def _training_stream(tokenizer) -> torch.Tensor:
    """The corpus as one plain document, then as ChatML turns.

    In each turn a paragraph's first sentence is the user's message and the rest is the
    assistant's answer, so chat requests get corpus-like prose that ends with <|im_end|>.
    """
    eot = tokenizer.convert_tokens_to_ids(ENDOFTEXT)
    paragraphs = [p.strip() for p in corpus_text().split("\n\n") if p.strip()]
    # The backend tokenizer: the same ids, without the warning about model_max_length.
    ids: list[int] = tokenizer.backend_tokenizer.encode("\n\n".join(paragraphs)).ids + [eot]
    for paragraph in paragraphs:
        first, _, rest = paragraph.partition(". ")
        if rest:
            chat = [{"role": "user", "content": first + "."}, {"role": "assistant", "content": rest}]
            ids += tokenizer.apply_chat_template(chat, tokenize=True, return_dict=True)["input_ids"] + [eot]
    return torch.tensor(ids, dtype=torch.long)


def _train(model, stream: torch.Tensor, *, max_seconds: float, max_steps: int, seed: int) -> dict:
    seq_len, batch_size, peak_lr, warmup = 128, 16, 3e-3, 30
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=peak_lr, betas=(0.9, 0.95), weight_decay=0.1)
    threads = torch.get_num_threads()
    torch.set_num_threads(_available_cores())
    model.train()
    started, step, loss_ema = time.monotonic(), 0, None
    try:
        while step < max_steps:
            elapsed = time.monotonic() - started
            progress = max(step / max_steps, elapsed / max_seconds)
            if progress >= 1.0:
                break
            cosine = 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))
            lr = peak_lr * min(1.0, (step + 1) / warmup) * cosine
            for group in optimizer.param_groups:
                group["lr"] = lr
            starts = torch.randint(0, len(stream) - seq_len, (batch_size,), generator=generator)
            batch = torch.stack([stream[s : s + seq_len] for s in starts.tolist()])
            loss = model(input_ids=batch, labels=batch, use_cache=False).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            step += 1
            loss_ema = loss.item() if loss_ema is None else 0.9 * loss_ema + 0.1 * loss.item()
            if step % 100 == 0:
                elapsed = time.monotonic() - started
                logger.info("demo model: step %d loss %.3f lr %.2e %.0fs", step, loss_ema, lr, elapsed)
    finally:
        torch.set_num_threads(threads)
    return {
        "steps": step,
        "loss": None if loss_ema is None else round(loss_ema, 4),
        "train_seconds": round(time.monotonic() - started, 1),
        "seed": seed,
        "tokens_in_corpus": len(stream),
    }


def _write_store_metadata(folder: Path, name: str, stats: dict) -> None:
    """Provenance in the model store's format, so the demo is listed and served by name."""
    corpus = corpus_text().encode("utf-8")
    metadata = {
        "name": name,
        "format": "merged",
        "provider": "forgeway.demo",
        "backend": "forgeway.demo",
        "task": "text-generation",
        "pipeline_task": "text-generation",
        "model_class": "AutoModelForCausalLM",
        "base_model": None,
        "method": "pretrain",
        "dataset": {"name": "forgeway/demo/data/corpus.txt", "sha256": hashlib.sha256(corpus).hexdigest()},
        "dataset_sha256": hashlib.sha256(corpus).hexdigest(),
        "metrics": {"train_loss": stats["loss"], "steps": stats["steps"]},
        "chat": True,
        "gguf": GGUF_NAME,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    (folder / STORE_METADATA).write_text(json.dumps(metadata, indent=2, sort_keys=True) + "\n")


def _available_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)
