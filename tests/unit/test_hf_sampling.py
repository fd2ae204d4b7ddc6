"""Per-sequence sampling: seeds reproduce, filters keep what they should, penalties move the logits."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.hf

import torch  # noqa: E402

from forgeway.services.hf.sampling import Sampler  # noqa: E402
from forgeway.core.generation import Sampling  # noqa: E402

V = 50


def logits(seed: int = 0) -> torch.Tensor:
    return torch.randn(V, generator=torch.Generator().manual_seed(seed)) * 3


def draws(sampling: Sampling, seed: int | None, count: int = 20) -> list[int]:
    sampler = Sampler(sampling, V, [], seed, "cpu")
    return [sampler.pick(logits(i).clone()) for i in range(count)]


def test_same_seed_same_draws_other_seed_other_draws():
    s = Sampling(temperature=1.0)
    assert draws(s, 7) == draws(s, 7)
    assert draws(s, 7) != draws(s, 8)


def test_greedy_is_argmax_and_plain():
    sampler = Sampler(Sampling(), V, [], None, "cpu")
    assert sampler.plain
    assert sampler.pick(logits()) == int(logits().argmax())


def test_top_k_one_and_tiny_top_p_are_argmax():
    best = int(logits().argmax())
    narrow = (Sampling(temperature=1.5, top_k=1), Sampling(temperature=1.5, top_p=1e-6),
              Sampling(temperature=1.5, min_p=1.0))
    for s in narrow:
        sampler = Sampler(s, V, [], 3, "cpu")
        assert {sampler.pick(logits().clone()) for _ in range(20)} == {best}, s


def test_top_k_keeps_only_the_k_best():
    allowed = set(torch.topk(logits(), 3).indices.tolist())
    sampler = Sampler(Sampling(temperature=2.0, top_k=3), V, [], 5, "cpu")
    picks = {sampler.pick(logits().clone()) for _ in range(200)}
    assert picks <= allowed and len(picks) > 1


def test_repetition_penalty_covers_the_prompt_and_generated_tokens():
    row = torch.zeros(V)
    row[4], row[9], row[11] = 2.0, -1.0, 1.5
    sampler = Sampler(Sampling(repetition_penalty=2.0), V, [4, 9], None, "cpu")
    assert not sampler.plain
    sampler.observe(11)
    sampler.adjust(row)
    assert row[4] == 1.0 and row[9] == -2.0 and row[11] == 0.75


def test_presence_and_frequency_penalties_are_openai_style():
    sampler = Sampler(Sampling(presence_penalty=0.5, frequency_penalty=0.25), V, [3], None, "cpu")
    for token in (1, 1, 2):
        sampler.observe(token)
    row = torch.zeros(V)
    sampler.adjust(row)
    assert row[1] == pytest.approx(-(0.5 + 2 * 0.25))
    assert row[2] == pytest.approx(-(0.5 + 0.25))
    assert row[3] == 0.0, "the prompt is not penalised"
