"""Built-in reward functions, their arguments, the registry's errors, and method knob checks."""

from __future__ import annotations

import pytest

from forgeway.core.errors import InvalidArgument
from forgeway.services.training.spec import LoraSpec, TrainSpec
from forgeway.services.trl.methods import METHODS, check_knobs, method_fields
from forgeway.services.trl.rewards import RewardRegistry

pytestmark = pytest.mark.trl


def score(name: str, completions: list, **columns) -> list[float]:
    (reward,) = RewardRegistry().resolve(((name, 1.0),), list(columns))
    return reward.func(completions, **columns)


def test_builtin_rewards():
    assert score("length:4", ["abcd", "ab", "abcdefgh", ""]) == [1.0, 0.5, 0.0, 0.0]
    assert score("regex:^\\d+$", ["123", "12a"]) == [1.0, 0.0]
    assert score("format", ["<think>x</think><answer>4</answer>", "4"]) == [1.0, 0.0]
    assert score("exact_match", [" Paris ", "Rome"], reference=["paris", "paris"]) == [1.0, 0.0]
    assert score("exact_match:answer", ["4"], answer=["4"]) == [1.0]
    assert score("json_valid", ['{"a": 1}', "```json\n[1]\n```", "{nope"]) == [1.0, 1.0, 0.0]
    assert score("keywords:cat,dog", ["a cat", "Cat and DOG", "bird"]) == [0.5, 1.0, 0.0]
    assert score("keywords", ["a cat"], keywords=[["cat", "mat"]]) == [0.5]
    conversational = [[{"role": "assistant", "content": "123"}]]
    assert score("regex:^\\d+$", conversational) == [1.0]


def test_registry_errors_name_the_entry_and_the_allowed_values():
    registry = RewardRegistry()
    with pytest.raises(InvalidArgument) as caught:
        registry.resolve((("length", 1.0), ("vibes", 2.0)))
    assert caught.value.field == "method_params.reward_functions[1].name"
    assert "vibes" in caught.value.message and "exact_match" in caught.value.message
    with pytest.raises(InvalidArgument) as caught:
        registry.resolve((("regex", 1.0),))
    assert "pattern" in caught.value.message
    with pytest.raises(InvalidArgument) as caught:
        registry.resolve((("regex:(", 1.0),))
    with pytest.raises(InvalidArgument) as caught:
        registry.resolve((("exact_match:answer", 1.0),), ["prompt"])
    assert "'answer'" in caught.value.message
    assert registry.resolve((("length:10", 0.5),))[0].weight == 0.5


def test_entry_point_style_targets_load_lazily():
    registry = RewardRegistry()
    registry.factories["short"] = "forgeway.services.trl.rewards:length"  # as an entry point's value reads
    (reward,) = registry.resolve((("short:2", 1.0),))
    assert reward.func(["ab", "abcd"]) == [1.0, 0.0] and "short" in registry.names()


def spec(method: str, **fields) -> TrainSpec:
    from forgeway.core.generation import Task
    from forgeway.services.training.spec import DatasetSpec

    return TrainSpec(base_model="m", method=method, task=Task.TEXT_GENERATION, dataset=DatasetSpec("inline"), **fields)


def test_knobs_a_method_does_not_take_are_rejected_not_ignored():
    errors = dict(check_knobs(spec("sft", beta=0.1, num_generations=4, reward_model="rm"), METHODS["sft"]))
    assert set(errors) == {"method_params.beta", "method_params.num_generations", "method_params.reward_functions"}
    assert check_knobs(spec("grpo"), METHODS["grpo"]) == []  # AlignTune's default set (test_aligntune_rewards.py)
    for name in ("rloo", "online_dpo"):  # no AlignTune default: a reward is required
        assert dict(check_knobs(spec(name), METHODS[name]))["method_params.reward_functions"].startswith(
            f"{name} needs")
    assert check_knobs(spec("dpo", loss_type="sigmoid,sft"), METHODS["dpo"]) == []
    assert check_knobs(spec("kto", loss_type="sigmoid"), METHODS["kto"])[0][0] == "method_params.loss_type"


def test_method_fields_map_the_request_onto_trl_configs():
    assert method_fields(spec("grpo", loss_type="gspo"), METHODS["grpo"], 2, 2) == {
        "loss_type": "grpo", "importance_sampling_level": "sequence", "epsilon": 3e-4, "epsilon_high": 4e-4,
        "num_generations": 4}
    assert method_fields(spec("online_dpo", beta=0.2, max_completion_length=9), METHODS["online_dpo"], 2, 1) == {
        "beta": [0.2], "max_new_tokens": 9, "remove_unused_columns": False}
    assert method_fields(spec("dpo", loss_type="sigmoid,sft", max_seq_length=64, lora=LoraSpec()),
                         METHODS["dpo"], 2, 1) == {"loss_type": ["sigmoid", "sft"], "max_length": 64}
    with pytest.raises(InvalidArgument):
        method_fields(spec("rloo"), METHODS["rloo"], 1, 1)


def test_the_length_range_counts_words_as_aligntune_does():
    assert score("length:2..3", ["one", "one two", "one two three", "one two three four"]) == [0.0, 1.0, 1.0, 0.0]
    with pytest.raises(InvalidArgument) as caught:
        RewardRegistry().resolve((("length:9..3", 1.0),))
    assert caught.value.field == "method_params.reward_functions[0].name" and "LOW..HIGH" in caught.value.message


def test_aligntune_names_that_are_not_built_in_are_refused_with_the_reason():
    with pytest.raises(InvalidArgument) as caught:
        RewardRegistry().resolve((("length", 1.0), ("code_execution", 1.0)))
    assert caught.value.field == "method_params.reward_functions[1].name"
    assert "runs the generated code" in caught.value.message and "sentiment" in caught.value.message
    with pytest.raises(InvalidArgument) as caught:
        RewardRegistry().resolve((("bertscore", 1.0),))
    assert "reward_model" in caught.value.message


def test_reference_rewards_need_a_reference_column():
    with pytest.raises(InvalidArgument) as caught:
        RewardRegistry().resolve((("rouge", 1.0),), ["prompt"])
    assert "answer or solution" in caught.value.message
    with pytest.raises(InvalidArgument) as caught:
        RewardRegistry().resolve((("bleu:summary", 1.0),), ["prompt", "answer"])
    assert "'summary'" in caught.value.message
    assert RewardRegistry().resolve((("bleu", 1.0),), ["prompt", "target"])[0].name == "bleu"
