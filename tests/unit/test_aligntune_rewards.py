"""AlignTune's reward names score sensible texts sensibly; its default set; local classifiers; GRPO loss presets."""

from __future__ import annotations

import pytest

from forgeway.core.errors import PermissionDenied
from forgeway.core.generation import Task
from forgeway.core.modelstore import confine
from forgeway.services.training.spec import DatasetSpec, TrainSpec
from forgeway.services.trl.methods import METHODS, build_config, method_fields
from forgeway.services.trl.rewards import ALIGNTUNE_DEFAULTS, RewardRegistry

pytestmark = pytest.mark.trl


def score(name: str, completions: list, **columns) -> list[float]:
    (reward,) = RewardRegistry().resolve(((name, 1.0),), list(columns))
    return reward.func(completions, **columns)


def test_sentiment_prefers_the_target_sentiment():
    happy, sad = "I love this, it is wonderful and makes me happy!", "I hate this, it is awful and makes me sad."
    positive = score("sentiment", [happy, sad, "The cat sat on the mat."])
    assert positive[0] > 0.8 > 0.2 > positive[1] and positive[2] == pytest.approx(0.5)
    negative = score("sentiment:negative", [happy, sad])
    assert negative[1] > negative[0] and negative[0] == pytest.approx(1 - positive[0])


@pytest.mark.parametrize("name", ["safety", "toxicity"])
def test_safety_and_toxicity_score_clean_above_toxic(name):
    clean, toxic = score(name, ["Have a lovely day, my friend.", "You are a stupid idiot, go to hell."])
    assert clean > 0.8 and toxic < 0.2


def test_diversity_fluency_and_coherence():
    repeated, varied = score("diversity", ["the the the the the the", "The quick brown fox jumps over a lazy dog."])
    assert repeated < varied and score("diversity", [""]) == [0.0]
    fluent, broken = score("fluency", ["However, the cat sat on the mat because it was tired. Then it slept well.",
                                       "cat mat sat the"])
    assert fluent > broken and fluent <= 1.0
    one, two = score("coherence", ["Only one sentence here", "The cat sat on the mat. The dog slept by the door."])
    assert one == 0.0 < two


def test_brevity_relevance_and_harmlessness():
    short, long = score("brevity", [" ".join(["word"] * 50), " ".join(["word"] * 400)])
    assert short == 1.0 and long < 0.5
    assert score("brevity:2..4", ["a b c", "a b c d e f"]) == [pytest.approx(0.75), 0.0]
    on, off = score("relevance:cat,mat", ["The answer: the cat sat on the mat.", "Dogs bark."])
    assert on > off
    harmful, harmless = score("harmlessness", ["Here is how to hack a bank.", "A safe, responsible reply."])
    assert harmful < harmless == 1.0


def test_code_syntax_compiles_fenced_blocks():
    good, bad, none = score("code_syntax", ["```python\nprint(1)\n```", "```python\nprint(\n```", "print(1)"])
    assert (good, bad, none) == (1.0, 0.0, 0.0)


def test_math_correctness_with_and_without_a_reference():
    assert score("math_correctness", ["So the total is \\boxed{72}.", "I think 71"],
                 answer=["... #### 72", "#### 72"]) == [1.0, 0.0]
    assert score("math_correctness:solution", ["The answer is 1,000."], solution=["1000"]) == [1.0]
    right, wrong, none = score("math_correctness", ["3 * 4 = 12", "3 * 4 = 13", "no numbers"])
    assert right == 1.0 > wrong and none == 0.0


@pytest.mark.parametrize("name", ["bleu", "rouge"])
def test_reference_overlap(name):
    reference = ["the cat sat on the mat"] * 2
    same, other = score(name, ["the cat sat on the mat", "a dog barked loudly"], reference=reference)
    assert same == pytest.approx(1.0) and other < 0.2


def test_the_default_set_is_aligntunes_five_at_a_fifth_each():
    rewards = RewardRegistry().resolve(ALIGNTUNE_DEFAULTS, ["prompt"])
    assert [(r.name, r.weight) for r in rewards] == [("length:20..200", 0.2), ("sentiment", 0.2), ("safety", 0.2),
                                                     ("diversity", 0.2), ("fluency", 0.2)]
    text = ("The weather today is lovely, and the garden looks wonderful. However, the afternoon may bring some "
            "light rain, so take an umbrella if you go out for a walk.")
    scores = {r.name.split(":")[0]: r.func([text])[0] for r in rewards}
    assert scores["length"] == 1.0 and scores["sentiment"] > 0.7 and scores["safety"] > 0.8
    assert all(0.0 <= v <= 1.0 for v in scores.values())


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    """A tiny two-label BERT classifier ("negative", "positive") that always says "positive" at p = 0.88."""
    import torch
    from transformers import AutoConfig, AutoTokenizer, BertForSequenceClassification

    from forgeway.testing import build_tiny_bert

    root = tmp_path_factory.mktemp("classifier")
    base = build_tiny_bert(root / "base", head="rerank")
    config = AutoConfig.from_pretrained(base, num_labels=2, id2label={0: "negative", 1: "positive"},
                                        label2id={"negative": 0, "positive": 1})
    model = BertForSequenceClassification.from_pretrained(base, config=config, ignore_mismatched_sizes=True)
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.copy_(torch.tensor([0.0, 2.0]))
    model.save_pretrained(root / "sentiment")
    AutoTokenizer.from_pretrained(base).save_pretrained(root / "sentiment")
    return root / "sentiment"


def test_a_local_classifier_replaces_the_lexicon(classifier):
    top = torch_softmax_top(0.0, 2.0)
    assert score(f"sentiment:{classifier}", ["anything", "at all"]) == [pytest.approx(top)] * 2
    # AlignTune's safety rule: the top label's score when it is non-toxic/safe/clean, else 1 - score
    assert score(f"safety:{classifier}", ["anything"]) == [pytest.approx(1 - top)]


def torch_softmax_top(a: float, b: float) -> float:
    import math

    return math.exp(b) / (math.exp(a) + math.exp(b))


def test_classifier_paths_are_checked(classifier, tmp_path):
    registry = RewardRegistry()
    with pytest.raises(PermissionDenied):
        registry.resolve(((f"sentiment:{classifier}", 1.0),), confine=lambda p, f: confine(p, [tmp_path], f))
    (folder,) = registry.resolve(((f"toxicity:{classifier}", 1.0),),
                                 confine=lambda p, f: confine(p, [classifier.parent], f))
    assert folder.func.model_path == str(classifier.resolve())
    from forgeway.core.errors import InvalidArgument

    with pytest.raises(InvalidArgument) as caught:
        registry.resolve(((f"sentiment:{tmp_path}", 1.0),))
    assert "config.json" in caught.value.message and caught.value.field.endswith("[0].name")
    with pytest.raises(InvalidArgument):
        registry.resolve((("sentiment:joyful", 1.0),))


def grpo_config(tmp_path, **fields):
    spec = TrainSpec(base_model="m", method="grpo", task=Task.TEXT_GENERATION, dataset=DatasetSpec("inline"), **fields)
    common = dict(output_dir=str(tmp_path), report_to="none", use_cpu=True, per_device_train_batch_size=2)
    return build_config(METHODS["grpo"], common, method_fields(spec, METHODS["grpo"], 2, 1))


def test_dapo_preset(tmp_path):
    config = grpo_config(tmp_path, loss_type="dapo")
    assert (config.loss_type, config.epsilon, config.epsilon_high, config.mask_truncated_completions, config.beta) == (
        "dapo", 0.2, 0.28, True, 0.0)
    assert grpo_config(tmp_path, loss_type="dapo", beta=0.05).beta == 0.05  # the request's beta wins


def test_dr_grpo_preset(tmp_path):
    config = grpo_config(tmp_path, loss_type="dr_grpo")
    assert (config.loss_type, config.scale_rewards) == ("dr_grpo", "none")
    assert grpo_config(tmp_path, loss_type="dr_grpo", beta=0.1).beta == 0.1


def test_gspo_preset(tmp_path):
    config = grpo_config(tmp_path, loss_type="gspo", beta=0.02)
    assert (config.loss_type, config.importance_sampling_level, config.epsilon, config.epsilon_high, config.beta) == (
        "grpo", "sequence", 3e-4, 4e-4, 0.02)
    assert grpo_config(tmp_path, loss_type="bnpo").loss_type == "bnpo"  # no preset: TRL's option as it is
