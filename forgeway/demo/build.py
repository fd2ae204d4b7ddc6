"""The demo model `make up` serves: a small Llama trained for a few minutes on the shipped corpus."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from forgeway.demo.chat_template import ENDOFTEXT
from forgeway.demo.llama import LlamaShape, init_llama, save_model
from forgeway.demo.tokenizer import corpus_text, train_tokenizer
from forgeway.demo.tools import prose_dialogue, render_dialogue, tool_conversations
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
SEQ_LEN, BATCH_SIZE = 384, 8  # a window holds the tools preamble (~240 tokens) and an exchange after it
BATCH_ROWS = (2, 2)  # rows in the corpus, rows at a conversation's start; the rest among its exchanges
TOOL_CONVERSATIONS = 400
# The assistant's turns in tool conversations weigh more in the loss: their hard tokens (the city copied from the
# user's message into the call, and from the tool's result into the answer) are few among many predictable ones.
ASSISTANT_WEIGHT = 4.0

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
    stream = _training_stream(tokenizer, seed=seed)
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


@dataclass(frozen=True)
class TrainingStream:
    """The token stream training windows are cut from: the corpus, then the tool conversations."""

    tokens: torch.Tensor
    weights: torch.Tensor  # each token's weight in the loss: ASSISTANT_WEIGHT in a tool conversation's answers
    corpus_tokens: int  # where the tool conversations begin
    conversation_starts: torch.Tensor  # each conversation's first token (its tools preamble)


def _training_stream(tokenizer, seed: int = 0) -> TrainingStream:
    """The corpus as one plain document, then as ChatML turns; then conversations with tools offered.

    In each corpus turn a paragraph's first sentence is the user's message and the rest is the assistant's
    answer, so chat requests get corpus-like prose that ends with <|im_end|>. The tool conversations
    (forgeway.demo.tools) teach when to call get_weather or get_time and how to answer from the result.
    """
    eot = tokenizer.convert_tokens_to_ids(ENDOFTEXT)
    paragraphs = [p.strip() for p in corpus_text().split("\n\n") if p.strip()]
    # The backend tokenizer: the same ids, without the warning about model_max_length.
    encode = tokenizer.backend_tokenizer.encode
    ids: list[int] = encode("\n\n".join(paragraphs)).ids + [eot]
    for messages in filter(None, map(prose_dialogue, paragraphs)):
        ids += encode(render_dialogue(messages)).ids + [eot]
    corpus_tokens, starts = len(ids), []
    weights = [1.0] * corpus_tokens
    for text, turns in tool_conversations(paragraphs, TOOL_CONVERSATIONS, seed=seed):
        starts.append(len(ids))
        encoding = encode(text)
        ids += encoding.ids + [eot]
        weights += [ASSISTANT_WEIGHT if any(a <= start < b for a, b in turns) else 1.0 for start, _ in encoding.offsets]
        weights.append(1.0)
    return TrainingStream(torch.tensor(ids, dtype=torch.long), torch.tensor(weights), corpus_tokens,
                          torch.tensor(starts, dtype=torch.long))


def _batch(stream: TrainingStream, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """BATCH_SIZE windows of SEQ_LEN tokens: some in the corpus, some at a conversation's start (the tools preamble
    where a request has it), the rest anywhere among the conversations' exchanges."""
    corpus, opening = BATCH_ROWS
    last = len(stream.tokens) - SEQ_LEN
    openings = stream.conversation_starts[stream.conversation_starts <= last]
    starts = torch.cat([
        torch.randint(0, stream.corpus_tokens - SEQ_LEN, (corpus,), generator=generator),
        openings[torch.randint(0, len(openings), (opening,), generator=generator)],
        torch.randint(stream.corpus_tokens, last, (BATCH_SIZE - corpus - opening,), generator=generator),
    ])
    rows = [slice(s, s + SEQ_LEN) for s in starts.tolist()]
    return torch.stack([stream.tokens[r] for r in rows]), torch.stack([stream.weights[r] for r in rows])


def _loss(model, batch: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy, each target token weighted."""
    logits = model(input_ids=batch, use_cache=False).logits[:, :-1]
    losses = torch.nn.functional.cross_entropy(logits.transpose(1, 2), batch[:, 1:], reduction="none")
    return (losses * weights[:, 1:]).sum() / weights[:, 1:].sum()


def _train(model, stream: TrainingStream, *, max_seconds: float, max_steps: int, seed: int) -> dict:
    peak_lr, warmup = 3e-3, 30
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
            loss = _loss(model, *_batch(stream, generator))
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
        "tokens_in_corpus": stream.corpus_tokens,
        "tool_conversations": len(stream.conversation_starts),
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
