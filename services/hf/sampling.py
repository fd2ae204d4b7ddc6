"""Per-sequence logits processing and sampling: penalties, temperature, top-k/top-p/min-p, seeded draws."""

from __future__ import annotations

import random

import torch

from forgeway.core.generation import Sampling


class Sampler:
    """How one sequence picks its next token. Its own generator makes a seed reproducible beside any batch mates."""

    def __init__(self, sampling: Sampling, vocab_size: int, prompt_ids: list[int], seed: int | None, device):
        self.s = sampling
        self.vocab_size = vocab_size
        self.greedy = sampling.greedy
        self.generator = torch.Generator(device="cpu")
        self.generator.manual_seed(seed if seed is not None else random.getrandbits(63))
        self.repetition = sampling.repetition_penalty not in (None, 1.0)
        self.additive = bool(sampling.presence_penalty or sampling.frequency_penalty)
        self.present: torch.Tensor | None = None
        self.counts: torch.Tensor | None = None
        if self.repetition:
            self.present = torch.zeros(vocab_size, dtype=torch.bool, device=device)
            ids = torch.tensor([i for i in prompt_ids if i < vocab_size], dtype=torch.long, device=device)
            self.present[ids] = True
        if self.additive:
            self.counts = torch.zeros(vocab_size, dtype=torch.float32, device=device)

    @property
    def plain(self) -> bool:
        """Greedy with nothing to adjust: the batch's argmax is this sequence's token."""
        return self.greedy and not self.repetition and not self.additive

    def observe(self, token: int) -> None:
        if self.present is not None and token < self.vocab_size:
            self.present[token] = True
        if self.counts is not None and token < self.vocab_size:
            self.counts[token] += 1

    def adjust(self, logits: torch.Tensor) -> None:
        """Apply penalties in place to one row of logits."""
        if self.present is not None:
            p = self.s.repetition_penalty
            picked = logits[self.present]
            logits[self.present] = torch.where(picked > 0, picked / p, picked * p)
        if self.counts is not None:
            seen = (self.counts > 0).float()
            logits -= (self.s.frequency_penalty or 0.0) * self.counts + (self.s.presence_penalty or 0.0) * seen

    def pick(self, logits: torch.Tensor) -> int:
        """Choose from one adjusted row of logits (already masked by any constraint)."""
        if self.greedy:
            return int(logits.argmax())
        x = logits.float() / self.s.temperature
        if self.s.top_k and self.s.top_k < x.numel():
            kth = torch.topk(x, self.s.top_k).values[-1]
            x = x.masked_fill(x < kth, float("-inf"))
        if self.s.top_p is not None and self.s.top_p < 1.0:
            ordered, order = torch.sort(x, descending=True)
            probs = torch.softmax(ordered, dim=-1)
            drop = probs.cumsum(-1) - probs > self.s.top_p  # keep the smallest prefix reaching top_p
            x = x.masked_fill(torch.zeros_like(drop).scatter(0, order, drop), float("-inf"))
        if self.s.min_p:
            probs = torch.softmax(x, dim=-1)
            x = x.masked_fill(probs < self.s.min_p * probs.max(), float("-inf"))
        probs = torch.softmax(x, dim=-1).cpu()
        return int(torch.multinomial(probs, 1, generator=self.generator))
