"""Counterfactual GRPO (AlignTune): GRPO advantages spread over completion tokens by counterfactual span importance."""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass
from itertools import accumulate

import torch
from trl import GRPOTrainer

from .knobs import Violations, field, read, require, within

MESSAGE = "counterfact"
DEFAULTS = {"boost_factor": 2.0, "min_weight": 0.5, "answer_weight": 1.5}
MARKERS = ("final answer", "####", "\\boxed{")  # where a completion's answer span starts
ANSWER_TAIL = 5  # tokens taken as the answer span of a completion that names no marker
MAX_SPANS, MIN_SPAN_TOKENS, MAX_SPAN_TOKENS = 10, 5, 50
FORMATTING = {"#", "##", "###", "####", "=", "==", "===", "====", "-", "--", "---"}  # importance x 0.1
ARITHMETIC = re.compile(r"\d+(?:\.\d+)?(?:\s*(?:[-+*/×÷x]|\\times|\\div)\s*\d+(?:\.\d+)?)+\s*=\s*\d+(?:\.\d+)?")
SENTENCE_END = re.compile(r"[.!?](?=\s|$)|\n\s*\n")
# (input ids, attention mask, completion length kept) -> per-token log-probs of the completion tokens
LogProbs = Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]


def check(params: dict[str, dict]) -> Violations:
    """The counterfact knobs' violations: positive weights, boost_factor no smaller than min_weight."""
    knobs = read(params, MESSAGE, DEFAULTS)
    errors = [e for knob in DEFAULTS for e in within(MESSAGE, knob, knobs[knob], above=0.0)]
    if not errors and knobs["boost_factor"] < knobs["min_weight"]:
        errors.append((field(MESSAGE, "boost_factor"),
                       f"must be at least min_weight ({knobs['min_weight']:g}), got {knobs['boost_factor']:g}"))
    return errors


@dataclass(frozen=True)
class Layout:
    """Where a completion's reasoning ends and its answer starts (token `answer`), its candidate spans [s, e) in the
    reasoning, and which tokens are formatting."""

    answer: int
    spans: tuple[tuple[int, int], ...]
    formatting: tuple[bool, ...]


def lay_out(pieces: list[str], tail: int = ANSWER_TAIL) -> Layout | None:
    """A completion's layout from its tokens' texts, or None when it has no reasoning before its answer span. The
    answer starts at the first marker ("Final Answer", "####", "\\boxed{"), else it is the last `tail` tokens."""
    ends = list(accumulate(len(p) for p in pieces))
    text = "".join(pieces)
    found = [at for at in (text.lower().find(m) for m in MARKERS) if at >= 0]
    answer = bisect_right(ends, min(found)) if found else len(pieces) - tail
    if answer <= 0 or answer >= len(pieces):
        return None
    return Layout(answer, reasoning_spans(text, ends, answer), tuple(p.strip() in FORMATTING for p in pieces))


def reasoning_spans(text: str, ends: list[int], answer: int) -> tuple[tuple[int, int], ...]:
    """Token spans of the reasoning (tokens before `answer`) to mask: arithmetic steps ("7 * 7 = 49") first, then
    sentences of MIN_SPAN_TOKENS or more that overlap none of them; LaTeX-heavy and over-long spans left out."""
    region = text[:ends[answer - 1]]

    def tokens(start: int, stop: int) -> tuple[int, int]:
        return bisect_right(ends, start), bisect_right(ends, stop - 1) + 1

    arithmetic = [tokens(*m.span()) for m in ARITHMETIC.finditer(region)][:MAX_SPANS // 2]
    sentences, start, previous = [], 0, 0
    for stop in [m.end() for m in SENTENCE_END.finditer(region)] + [len(region)]:
        if region[start:stop].strip():
            s, e = tokens(start, stop)
            s = max(s, previous)
            if e - s >= MIN_SPAN_TOKENS and all(e <= a or s >= b for a, b in arithmetic):
                sentences.append((s, e))
            previous = max(previous, e)
        start = stop
    spans = sorted(arithmetic + sentences)
    kept = [(s, e) for s, e in spans if e - s <= MAX_SPAN_TOKENS and not _latex(text[_at(ends, s):ends[e - 1]])]
    return tuple(kept[:MAX_SPANS])


def _at(ends: list[int], token: int) -> int:
    return ends[token - 1] if token else 0


def _latex(text: str) -> bool:
    return bool(text) and text.count("\\") / len(text) > 0.3


def span_drops(logps: LogProbs, prompt: torch.Tensor, prompt_mask: torch.Tensor, completion: torch.Tensor,
               completion_mask: torch.Tensor, layouts: dict[int, Layout], mask_id: int) -> dict[int, list[float]]:
    """For each completion row with spans: how much the answer span's log-likelihood drops when each span is
    replaced by `mask_id` (positive: the span mattered), all variants scored in one batched no-grad pass."""
    rows, owners = [], []
    for row, layout in layouts.items():
        rows.append(completion[row])
        owners.append(row)
        for s, e in layout.spans:
            masked = completion[row].clone()
            masked[s:e] = mask_id
            rows.append(masked)
            owners.append(row)
    if not rows:
        return {}
    index = torch.tensor(owners, device=completion.device)
    ids = torch.cat([prompt[index], torch.stack(rows)], dim=1)
    attention = torch.cat([prompt_mask[index], completion_mask[index]], dim=1)
    with torch.no_grad():
        scores = logps(ids, attention, completion.size(1)).float()
    drops, at = {}, 0
    for row, layout in layouts.items():
        end = int(completion_mask[row].sum())
        answer = scores[at:at + 1 + len(layout.spans), layout.answer:end].sum(-1)
        drops[row] = (answer[0] - answer[1:]).tolist()
        at += 1 + len(layout.spans)
    return drops


def span_importance(length: int, answer: int, spans: tuple[tuple[int, int], ...], drops: list[float]) -> torch.Tensor:
    """Per-token importance in [0.5, 1] over the reasoning (0 in the answer span): 0.2 plus each span's drop spread
    over its tokens, rescaled min -> 0.5, max -> 1; 1 everywhere in the reasoning when no span was found."""
    importance = torch.zeros(length)
    if not spans:
        importance[:answer] = 1.0
        return importance
    raw = torch.full((answer,), 0.2)
    for (s, e), drop in zip(spans, drops, strict=True):
        raw[s:e] += drop / (e - s)
    low, high = raw.min(), raw.max()
    importance[:answer] = 0.5 + 0.5 * (raw - low) / (high - low) if high > low else 0.5
    return importance


def token_weights(importance: torch.Tensor, answer: int, formatting: tuple[bool, ...], boost_factor: float,
                  min_weight: float, answer_weight: float) -> torch.Tensor:
    """Weights min_weight + (boost_factor - min_weight) x importance (formatting tokens' importance x 0.1), the
    answer span at answer_weight, renormalised to mean 1 so the advantage is redistributed, not scaled."""
    importance = importance * torch.where(torch.tensor(formatting), 0.1, 1.0)
    weights = min_weight + (boost_factor - min_weight) * importance
    weights[answer:] = answer_weight
    return weights * (weights.numel() / weights.sum())


class CounterfactGRPOTrainer(GRPOTrainer):
    """GRPOTrainer whose advantages become per-token A x w: w from how much masking each reasoning span lowers the
    policy's likelihood of the completion's answer span (token_weights). Completions whose advantage is 0 keep w = 1
    (their loss is 0 whatever the weights)."""

    def __init__(self, *args, algorithm: dict[str, dict] | None = None, **kwargs):
        algorithm = algorithm or {}
        require(check(algorithm))
        self.knobs = {k: float(v) for k, v in read(algorithm, MESSAGE, DEFAULTS).items()}
        super().__init__(*args, **kwargs)

    def _generate_and_score_completions(self, inputs):
        output = super()._generate_and_score_completions(inputs)
        output["advantages"] = output["advantages"][:, None] * self._token_weights(output)
        return output

    def _token_weights(self, output: dict) -> torch.Tensor:
        completion, mask, advantages = output["completion_ids"], output["completion_mask"], output["advantages"]
        tokenizer = getattr(self.processing_class, "tokenizer", self.processing_class)
        layouts: dict[int, Layout] = {}
        for row, (ids, length) in enumerate(zip(completion.tolist(), mask.sum(-1).tolist(), strict=True)):
            if length and advantages[row] != 0:
                layout = lay_out([tokenizer.decode([t]) for t in ids[:int(length)]])
                if layout is not None:
                    layouts[row] = layout
        mask_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        batch = self.args.per_device_train_batch_size
        drops = span_drops(lambda ids, att, keep: self._get_per_token_logps_and_entropies(
            self.model, ids, att, keep, batch_size=batch)[0], output["prompt_ids"], output["prompt_mask"], completion,
            mask, {r: lay for r, lay in layouts.items() if lay.spans}, mask_id)
        weights = torch.ones(mask.shape, dtype=torch.float32, device=mask.device)
        for row, layout in layouts.items():
            length = int(mask[row].sum())
            importance = span_importance(length, layout.answer, layout.spans, drops.get(row, []))
            weights[row, :length] = token_weights(importance, layout.answer, layout.formatting[:length],
                                                  **self.knobs).to(weights.device)
        self._log_weights(weights, mask, layouts)
        return weights

    def _log_weights(self, weights: torch.Tensor, mask: torch.Tensor, layouts: dict[int, Layout]) -> None:
        metrics = self._metrics["train" if self.model.training else "eval"]
        active = weights[mask.bool()]
        if active.numel():
            metrics["counterfact/weight_min"].append(active.min().item())
            metrics["counterfact/weight_max"].append(active.max().item())
        metrics["counterfact/reweighted"].append(len(layouts) / max(1, mask.size(0)))
        metrics["counterfact/spans"].append(sum(len(v.spans) for v in layouts.values()) / max(1, len(layouts)))
