"""EvaluateModel: a store entry's loss and perplexity on a dataset, and ROUGE/BLEU of its greedy answers."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from forgeway.core.errors import FailedPrecondition, InvalidArgument, NotFound, Unsupported
from forgeway.core.modelstore import entry_name
from forgeway.services.training.spec import DatasetSpec

from .datasets import read_dataset
from .loading import BaseModel, load_model, load_tokenizer, precision_for

# Dataset formats each kind of model is evaluated on (the trained formats of core/datasetformats.py).
CAUSAL_FORMATS = ("prompt_completion", "conversational", "language_modeling", "preference", "unpaired_preference")
SEQ2SEQ_FORMATS = ("summarization",)
MODEL_CLASSES = {"text-generation": "AutoModelForCausalLM", "summarization": "AutoModelForSeq2SeqLM"}
DEFAULT_MAX_LENGTH = 1024


@dataclass(frozen=True)
class Example:
    """One evaluated example: the text the model reads, and the text it is scored on (its reference)."""

    prompt: str
    target: str


@dataclass(frozen=True)
class Evaluation:
    metrics: dict[str, float]
    examples: int


def evaluate_entry(engine, name: str, dataset: DatasetSpec, generate_samples: int, max_new_tokens: int) -> Evaluation:
    """Load store entry `name` (full weights, or an adapter on its base), read the dataset as training reads it,
    and measure it (blocking: run it in a worker thread)."""
    entry = engine.models.get(entry_name(name, "name"))
    if entry is None:
        raise NotFound("model", name, engine.models.names())
    if not entry.loadable:
        raise FailedPrecondition(f"model {name!r} holds no transformers weights or adapter to evaluate "
                                 f"(format {entry.metadata.get('format') or 'unknown'})", metadata={"model": name})
    pipeline = str(entry.metadata.get("pipeline_task") or "text-generation")
    model_class = MODEL_CLASSES.get(pipeline)
    if model_class is None:
        raise Unsupported(f"evaluating a {pipeline} model", "trl", "loss and perplexity are measured for "
                          "text-generation and summarization models")
    seq2seq = model_class == "AutoModelForSeq2SeqLM"
    accepted = SEQ2SEQ_FORMATS if seq2seq else CAUSAL_FORMATS
    loaded = read_dataset(engine, dataset, "dataset", accepted, f"evaluating {name} ({pipeline})", min_rows=1)
    rows, trained = loaded.rows, loaded.format
    base = BaseModel.from_store(name, str(entry.path))
    tokenizer = load_tokenizer(base)
    precision = precision_for("auto")
    model = load_model(base, model_class, precision).to(precision.device).eval()
    examples = [_example(row, trained, tokenizer) for row in rows]
    if generate_samples and not any(e.prompt for e in examples):
        raise InvalidArgument("generate_samples", f"the {trained} dataset has no prompts to generate for")
    with torch.inference_mode():
        loss = _loss(model, tokenizer, examples, seq2seq, precision.device)
        metrics = {"eval_loss": loss, "perplexity": math.exp(min(loss, 50.0))}
        if generate_samples:
            chosen = [e for e in examples if e.prompt][:generate_samples]
            answers = [_generate(model, tokenizer, e.prompt, seq2seq, max_new_tokens or 64, precision.device)
                       for e in chosen]
            metrics.update(generation_scores(answers, [e.target for e in chosen]))
    return Evaluation(metrics, len(examples))


def _example(row: dict, trained: str, tokenizer) -> Example:
    """Prompt and target text of a row in its trained format (chat rows through the tokenizer's template)."""
    if trained == "summarization":
        return Example(row["document"], row["summary"])
    if trained == "language_modeling":
        return Example("", row["text"])
    if trained == "conversational":
        messages = row["messages"]
        prompt = tokenizer.apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=True)
        whole = tokenizer.apply_chat_template(messages, tokenize=False)
        return Example(prompt, whole[len(prompt):] if whole.startswith(prompt) else messages[-1]["content"])
    prompt = row.get("prompt") or ""
    target = row["chosen"] if trained == "preference" else row["completion"]
    if isinstance(prompt, list):  # conversational prompt/completion
        text = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
        target = target[-1]["content"] if isinstance(target, list) else target
        return Example(text, target)
    return Example(prompt, target[-1]["content"] if isinstance(target, list) else target)


def _loss(model, tokenizer, examples: list[Example], seq2seq: bool, device: str) -> float:
    """Mean negative log-likelihood per target token over all examples (the completion tokens of a prompt and
    completion; every token of a plain text; the summary of a document)."""
    limit = min(getattr(tokenizer, "model_max_length", DEFAULT_MAX_LENGTH) or DEFAULT_MAX_LENGTH, DEFAULT_MAX_LENGTH)
    total, tokens = 0.0, 0
    for example in examples:
        if seq2seq:
            inputs = tokenizer(example.prompt, return_tensors="pt", truncation=True, max_length=limit).to(device)
            labels = tokenizer(text_target=example.target, return_tensors="pt", truncation=True,
                               max_length=limit)["input_ids"].to(device)
            logits = model(**inputs, labels=labels).logits
            shifted, targets = logits[0], labels[0]
        else:
            prompt = tokenizer(example.prompt, add_special_tokens=True)["input_ids"] if example.prompt else []
            whole = tokenizer(example.prompt + example.target, add_special_tokens=True)["input_ids"][:limit]
            if tokenizer.eos_token_id is not None and len(whole) < limit:
                whole.append(tokenizer.eos_token_id)
            start = max(1, min(len(prompt), len(whole) - 1))
            ids = torch.tensor([whole], device=device)
            logits = model(input_ids=ids).logits[0, :-1]
            shifted, targets = logits[start - 1:], ids[0, start:]
        nll = torch.nn.functional.cross_entropy(shifted.float(), targets, reduction="sum")
        total += float(nll)
        tokens += int(targets.numel())
    if not tokens:
        raise InvalidArgument("dataset", "no target tokens to evaluate")
    return total / tokens


def _generate(model, tokenizer, prompt: str, seq2seq: bool, max_new_tokens: int, device: str) -> str:
    inputs = tokenizer(prompt, return_tensors="pt", truncation=True).to(device)
    output = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False,
                            pad_token_id=tokenizer.pad_token_id)
    new = output[0] if seq2seq else output[0, inputs["input_ids"].shape[1]:]
    return tokenizer.decode(new, skip_special_tokens=True)


def generation_scores(answers: list[str], references: list[str]) -> dict[str, float]:
    """ROUGE-1/2/L F-measures (rouge_score, averaged) and corpus BLEU (sacrebleu, 0-100) of answers."""
    import sacrebleu
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    scores = [scorer.score(reference, answer) for answer, reference in zip(answers, references, strict=True)]
    metrics = {key: sum(s[key].fmeasure for s in scores) / len(scores) for key in ("rouge1", "rouge2", "rougeL")}
    metrics["bleu"] = float(sacrebleu.corpus_bleu(answers, [references]).score)
    metrics["generated_samples"] = float(len(answers))
    return metrics
