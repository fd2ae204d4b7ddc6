"""AlignTune's backend-factory page (docs/api-reference/backend-factory.md), example by example, against a real
gateway and trl service: only the model (a tiny local llama for meta-llama/..., microsoft/DialoGPT-... and
unsloth/...) and the datasets (local files shaped like tatsu-lab/alpaca and Anthropic/hh-rlhf) are changed."""

from __future__ import annotations

import json

import pytest

from forgeway.client import Client
from forgeway.compat.aligntune import create_rl_trainer, create_sft_trainer, get_backend_status, list_backends
from forgeway.testing import trainer_stack

pytestmark = [pytest.mark.trl, pytest.mark.slow]
# tatsu-lab/alpaca's columns, one row with an input
ALPACA = [{"instruction": f"Describe cat number {i}.", "input": "It is grey." if i % 3 == 0 else "",
           "output": f"Cat {i} sat on the mat and looked at the dog."} for i in range(12)]
# Anthropic/hh-rlhf's columns: whole dialogues, the prompt inside both
HH_RLHF = [{"chosen": f"\n\nHuman: Where did cat {i} sit?\n\nAssistant: On the mat.",
            "rejected": f"\n\nHuman: Where did cat {i} sit?\n\nAssistant: Go away."} for i in range(12)]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    from forgeway.testing import build_tiny_llama

    root = tmp_path_factory.mktemp("aligntune-examples")
    build_tiny_llama(root / "tiny", seed=0)
    for name, rows in (("alpaca.jsonl", ALPACA), ("hh-rlhf.jsonl", HH_RLHF)):
        (root / name).write_text("".join(json.dumps(row) + "\n" for row in rows))
    with trainer_stack(root) as running:
        yield running


@pytest.fixture
def paths(stack, monkeypatch):
    monkeypatch.setenv("FORGEWAY_TARGET", stack.target)  # the examples pass no client: the environment names one
    return {"model": str(stack.root / "tiny"), "alpaca": str(stack.root / "alpaca.jsonl"),
            "hh": str(stack.root / "hh-rlhf.jsonl")}


def test_create_sft_trainer_example(paths):
    trainer = create_sft_trainer(
        model_name=paths["model"],
        dataset_name=paths["alpaca"],
        backend="trl",
        num_epochs=3,
        batch_size=4
    )
    results = trainer.train()
    assert results["state"] == "succeeded" and results["global_step"] == 9  # 12 rows / 4 x 3 epochs
    assert trainer.backend == "trl"


def test_create_rl_trainer_example(paths):
    trainer = create_rl_trainer(
        model_name=paths["model"],
        dataset_name=paths["hh"],
        algorithm="dpo",
        backend="trl",
        num_epochs=1
    )
    results = trainer.train()
    assert results["state"] == "succeeded" and results["metrics"]["train_loss"] > 0


def test_sft_with_unsloth_backend_falls_back_to_trl(paths, caplog):
    caplog.set_level("INFO", logger="forgeway.compat.aligntune")
    trainer = create_sft_trainer(
        model_name=paths["model"],
        dataset_name=paths["alpaca"],
        backend="unsloth"
    )
    assert trainer.train()["state"] == "succeeded"
    assert trainer.backend == "trl"
    assert any(r.getMessage().startswith("fallback from unsloth to trl") for r in caplog.records)


def test_ppo_training_names_what_to_use_instead(paths):
    with pytest.raises(ValueError, match="TRL removed PPO; the nearest methods are grpo and rloo"):
        create_rl_trainer(
            model_name=paths["model"],
            dataset_name=paths["hh"],
            algorithm="ppo",
            backend="unsloth"
        )


def test_invalid_algorithm(paths):
    with pytest.raises(ValueError, match="'invalid' is not a valid RLAlgorithm"):
        create_rl_trainer(
            model_name=paths["model"],
            dataset_name=paths["hh"],
            algorithm="invalid"
        )


def test_backend_status_and_list(paths, capsys):
    status = get_backend_status()
    assert (status["trl_available"], status["unsloth_available"]) == (True, False)
    backends = list_backends()
    assert backends["TRL"]["available"] and "TRL" in capsys.readouterr().out


def test_grpo_with_alignTune_defaults_trains_on_the_default_rewards(paths):
    # PARAMETERS.md's RL example without its hub reward model: no reward named, so AlignTune's default set
    trainer = create_rl_trainer(
        model_name=paths["model"],
        dataset_name=paths["alpaca"],
        algorithm="grpo",
        backend="auto",
        num_epochs=1,
        max_steps=2,
        batch_size=4,
        max_completion_length=8,
    )
    results = trainer.train()
    assert results["state"] == "succeeded"
    with Client() as client:
        logs = [e.message for e in client.jobs.events(results["job_id"]) if e.kind == "log"]
    assert any("default" in line and "sentiment" in line for line in logs)


# AlignTune's algorithm pages (docs/algorithms/*.md) with their own keywords, one step each on hh-rlhf, and the
# metric each algorithm's own term logs.
ALGORITHM_PAGES = [
    ("grpo", {}, "rewards/length/mean"),
    ("gspo", {}, "rewards/length/mean"),
    ("drgrpo", {}, "rewards/length/mean"),
    ("dapo", {}, "rewards/length/mean"),
    ("counterfact_grpo", {"boost_factor": 2.0, "min_weight": 0.5, "answer_weight": 1.5}, "counterfact/weight_max"),
    ("gbmpo", {"gbmpo_divergence_type": "prob_l2", "gbmpo_l2_coefficient": 0.0001}, "gbmpo/divergence"),
    ("gbmpo_l2kl", {}, "gbmpo/divergence"),
    ("pace", {"curriculum_enabled": False}, "pace/baseline_mean"),
    ("nmgrpo", {"mirror_coefficient": 0.0001}, "nmgrpo/mirror_divergence"),
    ("metaes", {"N": 2, "T": 1, "meta_iterations": 1, "sigma": 0.01, "alpha": 0.01}, "metaes/best_reward"),
]


@pytest.mark.parametrize(("algorithm", "keywords", "metric"), ALGORITHM_PAGES, ids=[a for a, _, _ in ALGORITHM_PAGES])
def test_every_rl_algorithm_trains_with_its_own_keywords(paths, algorithm, keywords, metric):
    trainer = create_rl_trainer(
        model_name=paths["model"],
        dataset_name=paths["hh"],
        algorithm=algorithm,
        backend="trl",
        reward_functions=["length"],
        reward_function_weights=[1.0],
        num_epochs=1,
        max_steps=1,
        batch_size=4,
        num_generations=4,
        max_completion_length=8,
        **keywords,
    )
    results = trainer.train()
    assert results["state"] == "succeeded"
    logged = {name for entry in trainer.get_training_stats()["log_history"] for name in entry}
    assert metric in logged, sorted(logged)


@pytest.mark.parametrize(("rows", "keywords", "message"), [
    ([{"query": f"q{i}", "best": f"b{i}", "worst": f"w{i}"} for i in range(12)], {"algorithm": "dpo"},
     r"dataset.columns: method dpo needs one of these column sets .*; the dataset has query, best, worst; for example "
     r'column_mapping=\{"query": "prompt", "best": "chosen", "worst": "rejected"\}'),
    (HH_RLHF, {"algorithm": "grpo", "reward_functions": ["telepathy"]},
     r"method_params.reward_functions\[0\].name: unknown reward 'telepathy'; allowed: .*sentiment"),
])
def test_bad_input_is_a_value_error_naming_the_field_and_no_job(paths, tmp_path, rows, keywords, message):
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    with Client() as client:
        before = len(client.jobs.list())
        trainer = create_rl_trainer(model_name=paths["model"], dataset_name=str(data), backend="trl", max_steps=1,
                                    client=client, **keywords)
        with pytest.raises(ValueError, match=message):
            trainer.train()
        assert len(client.jobs.list()) == before
