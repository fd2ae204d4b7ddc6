"""AlignTune's BackendFactory and backend status against the real TRL trainer behind a real gateway: listings and
recommendations from Capabilities, AlignTune's TRL-only switches, and a BackendConfig that trains."""

from __future__ import annotations

import json

import pytest

from forgeway.client import Client
from forgeway.compat.aligntune import (BackendConfig, BackendFactory, BackendType, RLAlgorithm, TaskType, TrainingType,
                                       get_backend_status, list_backends)
from forgeway.compat.aligntune.backends import SWITCHES
from forgeway.testing import trainer_stack

pytestmark = [pytest.mark.trl, pytest.mark.slow]
TEXT = [{"text": f"the cat number {i} sat on the mat and looked at the dog."} for i in range(6)]
PROMPTS = [{"prompt": f"Question {i}: where did the cat sit?"} for i in range(6)]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    from forgeway.testing import build_tiny_llama

    root = tmp_path_factory.mktemp("aligntune-factory")
    build_tiny_llama(root / "tiny", seed=0)
    (root / "text.jsonl").write_text("".join(json.dumps(row) + "\n" for row in TEXT))
    (root / "prompts.jsonl").write_text("".join(json.dumps(row) + "\n" for row in PROMPTS))
    with trainer_stack(root) as running:
        yield running


@pytest.fixture
def client(stack, monkeypatch):
    for name in SWITCHES:
        monkeypatch.delenv(name, raising=False)
    with Client(stack.target) as sdk:
        yield sdk


def test_list_available_backends_answers_from_the_trainers_capabilities(client):
    available = BackendFactory.list_available_backends(client)
    assert available["SFT"] == ["trl"]
    trained = {a.value for a in RLAlgorithm} - {"ppo", "spin"}  # TRL removed PPO; Forgeway has no SPIN
    assert available["RL"] == {name: ["trl"] for name in trained}


def test_the_recommended_backend_is_trl_without_an_unsloth_trainer(client):
    assert BackendFactory.get_recommended_backend(TrainingType.SFT, client=client) == BackendConfig(
        TrainingType.SFT, BackendType.TRL, task_type=TaskType.SUPERVISED_FINE_TUNING)
    config = BackendFactory.get_recommended_backend("rl", "drgrpo", client=client)
    assert (config.backend, config.algorithm) == (BackendType.TRL, RLAlgorithm.DRGRPO)


def test_recommendations_refuse_what_nothing_trains(client):
    with pytest.raises(ValueError, match="RL training requires algorithm specification"):
        BackendFactory.get_recommended_backend(TrainingType.RL, client=client)
    with pytest.raises(ValueError, match="TRL removed PPO"):
        BackendFactory.get_recommended_backend(TrainingType.RL, RLAlgorithm.PPO, client=client)


def test_pure_trl_mode_reports_trl_only(client, monkeypatch, capsys):
    monkeypatch.setenv("PURE_TRL_MODE", "1")
    assert get_backend_status(client) == {
        "pure_trl_mode": "1", "trl_only_mode": "0", "disable_unsloth_for_trl": "0", "trl_available": True,
        "unsloth_available": False, "current_mode": "TRL-ONLY"}
    assert BackendFactory.get_recommended_backend("sft", client=client).backend == BackendType.TRL
    list_backends(client)
    assert "Note: PURE_TRL_MODE=1: Unsloth switched off" in capsys.readouterr().out


def test_the_status_reports_the_switches_as_set(client, monkeypatch):
    monkeypatch.setenv("TRL_ONLY_MODE", "1")
    status = get_backend_status(client)
    assert (status["pure_trl_mode"], status["trl_only_mode"]) == ("0", "1") and status["trl_available"]


def test_create_trainer_from_a_backend_config_trains(stack, client):
    trainer = BackendFactory.create_trainer(
        BackendConfig(TrainingType.SFT, BackendType.TRL, task_type=TaskType.INSTRUCTION_FOLLOWING),
        model_name=str(stack.root / "tiny"), dataset_name=str(stack.root / "text.jsonl"), num_epochs=1, max_steps=1,
        batch_size=2, max_seq_length=32, client=client, run_name="factory-sft")
    results = trainer.train()
    assert results["state"] == "succeeded" and results["global_step"] == 1 and trainer.backend == "trl"
    job = client.jobs.get(results["job_id"])
    assert job.method == "sft" and trainer.model_name == "factory-sft"


def test_create_trainer_sends_the_rl_algorithm_and_fallback(stack, client):
    trainer = BackendFactory.create_trainer(
        BackendConfig("rl", "auto", "gspo", fallback_enabled=False), model_name=str(stack.root / "tiny"),
        dataset_name=str(stack.root / "prompts.jsonl"), client=client)
    assert (trainer.request["method"], trainer.request["loss_type"]) == ("grpo", "gspo")
    assert (trainer.request["backend"], trainer.request["allow_fallback"]) == ("auto", False)
    with pytest.raises(ValueError, match="^algorithm: the BackendConfig sets it"):
        BackendFactory.create_trainer(BackendConfig("rl", "trl", "dpo"), algorithm="kto", model_name="m",
                                      dataset_name="d", client=client)
