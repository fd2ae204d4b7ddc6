"""counterfact_grpo's spans, importance and weights, gbmpo's divergences and reduction, and both knob checks."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from forgeway.core.errors import InvalidArgument  # noqa: E402
from forgeway.services.trl.algorithms import counterfact, gbmpo, knobs  # noqa: E402

pytestmark = pytest.mark.trl

# A completion as the tiny llama's tokenizer splits it: a sentence, an arithmetic step inside a second sentence,
# then the answer after its marker.
PIECES = ["The", " c", "at", " s", "at", ".", " ", "7", " ", "*", " ", "7", " ", "=", " ", "4", "9", " so", " the",
          " do", "g", " r", "an", " a", "way", " f", "ast", ".", " ", "F", "in", "al", " A", "n", "s", "w", "er", ":",
          " ", "4", "9"]


def test_counterfact_check_names_each_bad_knob():
    assert counterfact.check({"counterfact": {}}) == []
    assert counterfact.check({"counterfact": {"boost_factor": 1.0, "min_weight": 1.0, "answer_weight": 1.0}}) == []
    errors = dict(counterfact.check({"counterfact": {"min_weight": 0.0, "answer_weight": -1.0,
                                                     "boost_factor": math.nan}}))
    assert set(errors) == {"method_params.counterfact.min_weight", "method_params.counterfact.answer_weight",
                           "method_params.counterfact.boost_factor"}
    assert "greater than 0" in errors["method_params.counterfact.min_weight"]
    assert "finite" in errors["method_params.counterfact.boost_factor"]
    assert counterfact.check({"counterfact": {"boost_factor": 0.4}}) == [
        ("method_params.counterfact.boost_factor", "must be at least min_weight (0.5), got 0.4")]


def test_gbmpo_check_lists_the_allowed_divergences():
    assert gbmpo.check({"gbmpo": {}}) == [] and gbmpo.check({"gbmpo": {"divergence": ""}}) == []
    assert all(gbmpo.check({"gbmpo": {"divergence": d}}) == [] for d in gbmpo.DIVERGENCES)
    ((where, why),) = gbmpo.check({"gbmpo": {"divergence": "kl2"}})
    assert where == "method_params.gbmpo.divergence" and "l2, l2kl, probl2, probl2kl" in why
    assert [f for f, _ in gbmpo.check({"gbmpo": {"divergence_coefficient": -1e-3}})] == [
        "method_params.gbmpo.divergence_coefficient"]
    assert "at most 1" in gbmpo.check({"gbmpo": {"divergence_coefficient": 2.0}})[0][1]


def test_knobs_read_defaults_and_require_raises_every_violation():
    assert knobs.read({"gbmpo": {"divergence": "probl2"}}, "gbmpo", gbmpo.DEFAULTS) == {
        "divergence": "probl2", "divergence_coefficient": 1e-4}
    with pytest.raises(InvalidArgument) as caught:
        knobs.require([("method_params.a.x", "bad"), ("method_params.a.y", "worse")])
    assert caught.value.violations == [("method_params.a.x", "bad"), ("method_params.a.y", "worse")]


def test_layout_finds_the_answer_marker_arithmetic_and_sentences():
    layout = counterfact.lay_out(PIECES)
    assert PIECES[layout.answer] == "F"  # "Final Answer" starts the answer span
    # "The cat sat." is a sentence; "7 * 7 = 49" an arithmetic step, so the sentence holding it is not a span
    assert layout.spans == ((0, 6), (7, 17))
    assert layout.formatting[13] and not layout.formatting[7]  # "=" is formatting, "7" is not


def test_layout_without_a_marker_takes_the_tail_as_the_answer():
    pieces = PIECES[:28]  # up to "fast."
    layout = counterfact.lay_out(pieces)
    assert layout.answer == len(pieces) - counterfact.ANSWER_TAIL
    assert all(e <= layout.answer for _, e in layout.spans)
    assert counterfact.lay_out(PIECES[:counterfact.ANSWER_TAIL]) is None  # nothing before the answer
    assert counterfact.lay_out(["Final", " answer", ":", " 4"]) is None


def test_span_importance_ranks_spans_by_their_drop():
    importance = counterfact.span_importance(10, 8, ((0, 2), (4, 6)), [3.0, 0.5])
    assert importance[:2].tolist() == [1.0, 1.0]  # the biggest drop maps to 1
    assert importance[2:4].tolist() == [0.5, 0.5]  # tokens in no span: the minimum, 0.5
    assert 0.5 < importance[4].item() < 1.0
    assert importance[8:].tolist() == [0.0, 0.0]  # the answer span has no importance of its own
    assert counterfact.span_importance(6, 4, (), []).tolist() == [1, 1, 1, 1, 0, 0]


def test_token_weights_redistribute_with_mean_one():
    importance = counterfact.span_importance(10, 8, ((0, 2), (4, 6)), [3.0, 0.5])
    plain = (False,) * 10
    weights = counterfact.token_weights(importance, 8, plain, boost_factor=2.0, min_weight=0.5, answer_weight=1.5)
    assert weights.mean().item() == pytest.approx(1.0)
    assert weights[0] > weights[8] > weights[2]  # boosted span > answer > unimportant token
    assert weights[0] / weights[2] == pytest.approx(2.0 / (0.5 + 1.5 * 0.5))
    assert weights[8] / weights[2] == pytest.approx(1.5 / (0.5 + 1.5 * 0.5))
    formatting = (True,) + (False,) * 9
    assert counterfact.token_weights(importance, 8, formatting, 2.0, 0.5, 1.5)[0] < weights[0]
    ones = counterfact.token_weights(importance, 8, plain, boost_factor=1.0, min_weight=1.0, answer_weight=1.0)
    assert ones.tolist() == [1.0] * 10


def test_span_drops_on_the_tiny_llama(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from forgeway import testing

    testing.build_tiny_llama(tmp_path, seed=0)
    model, tokenizer = AutoModelForCausalLM.from_pretrained(tmp_path).eval(), AutoTokenizer.from_pretrained(tmp_path)
    prompt = torch.tensor([tokenizer("Question:", add_special_tokens=False).input_ids])
    completion = torch.tensor([tokenizer("".join(PIECES), add_special_tokens=False).input_ids])
    assert [tokenizer.decode([t]) for t in completion[0]] == PIECES
    layout = counterfact.lay_out(PIECES)

    def logps(ids, attention, keep):
        logits = model(input_ids=ids, attention_mask=attention).logits[:, -keep - 1:-1].float()
        return logits.log_softmax(-1).gather(-1, ids[:, -keep:, None]).squeeze(-1)

    drops = counterfact.span_drops(logps, prompt, torch.ones_like(prompt), completion, torch.ones_like(completion),
                                   {0: layout}, tokenizer.pad_token_id)
    assert list(drops) == [0] and len(drops[0]) == 2
    masked = completion.clone()
    masked[0, 7:17] = tokenizer.pad_token_id  # the arithmetic span, by hand

    def answer_score(ids):
        with torch.no_grad():
            return logps(torch.cat([prompt, ids], 1), torch.ones(1, prompt.size(1) + ids.size(1)),
                         ids.size(1))[0, layout.answer:].sum().item()

    assert drops[0][1] == pytest.approx(answer_score(completion) - answer_score(masked), abs=1e-4)
    assert drops[0][0] != pytest.approx(0.0, abs=1e-6)  # masking a span changes how likely the answer is
    assert counterfact.span_drops(logps, prompt, prompt, completion, completion, {}, 0) == {}


def test_gbmpo_divergences():
    logps = torch.log(torch.tensor([[0.5, 0.25], [0.1, 0.9]]))
    ref = torch.log(torch.tensor([[0.25, 0.25], [0.2, 0.9]]))
    l2 = gbmpo.divergence("l2", logps, ref)
    assert l2.flatten().tolist() == pytest.approx([math.log(2) ** 2, 0.0, math.log(0.5) ** 2, 0.0])
    assert gbmpo.divergence("l2kl", logps, ref).tolist() == l2.tolist()
    prob = gbmpo.divergence("probl2", logps, ref)
    assert prob.flatten().tolist() == pytest.approx([0.0625, 0.0, 0.01, 0.0], abs=1e-7)
    assert gbmpo.divergence("probl2kl", logps, ref).tolist() == prob.tolist()
    assert gbmpo.divergence("l2", ref, ref).abs().sum() == 0


def test_gbmpo_reduces_like_the_grpo_loss_types():
    per_token = torch.tensor([[1.0, 3.0, 100.0], [2.0, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    common = dict(accumulation=2.0, max_completion_length=4, items=torch.tensor(3.0))
    assert gbmpo.aggregate(per_token, mask, "grpo", **common).item() == pytest.approx((2.0 + 2.0) / 2 / 2)
    assert gbmpo.aggregate(per_token, mask, "bnpo", **common).item() == pytest.approx(6.0 / 3 / 2)
    assert gbmpo.aggregate(per_token, mask, "dr_grpo", **common).item() == pytest.approx(6.0 / (2 * 4) / 2)
    assert gbmpo.aggregate(per_token, mask, "dapo", **common).item() == pytest.approx(6.0 / 3)
    assert gbmpo.aggregate(per_token, mask, "luspo", **common).item() == pytest.approx((4.0 + 2.0) / 2 / 2)
    with pytest.raises(ValueError, match="nonsense"):
        gbmpo.aggregate(per_token, mask, "nonsense", **common)
