"""AlignTune's documented examples, adapted to a tiny local model and local data, running through Forgeway (the real
TRL trainer behind a real gateway), and AlignTune's ValueErrors."""

from __future__ import annotations

import json

import pytest

from forgeway.client import Client
from forgeway.compat import aligntune
from forgeway.compat.aligntune import create_rl_trainer, create_sft_trainer
from forgeway.testing import trainer_stack

pytestmark = [pytest.mark.trl, pytest.mark.slow]
TEXT = [{"text": f"the cat number {i} sat on the mat and looked at the dog."} for i in range(6)]
PREFERENCES = [{"prompt": f"Question {i}: where did the cat sit?", "chosen": " On the mat.", "rejected": " Nowhere."}
               for i in range(6)]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    from forgeway.testing import build_tiny_llama

    root = tmp_path_factory.mktemp("aligntune")
    build_tiny_llama(root / "tiny", seed=0)
    (root / "alpaca.jsonl").write_text("".join(json.dumps(row) + "\n" for row in TEXT))
    (root / "prefs.jsonl").write_text("".join(json.dumps(row) + "\n" for row in PREFERENCES))
    with trainer_stack(root) as running:
        yield running


@pytest.fixture
def client(stack):
    with Client(stack.target) as sdk:
        yield sdk


def test_the_sft_quick_start(stack, client, tmp_path):
    # AlignTune's README: create_sft_trainer(model_name=..., dataset_name=..., backend="trl", num_epochs=3,
    # max_steps=-1, batch_size=4, learning_rate=5e-5); trainer.train(). Here: the tiny model, a local jsonl, 2 steps.
    trainer = create_sft_trainer(model_name=str(stack.root / "tiny"), dataset_name=str(stack.root / "alpaca.jsonl"),
                                 backend="trl", num_epochs=1, max_steps=2, batch_size=2, learning_rate=5e-5,
                                 max_seq_length=32, client=client, run_name="aligntune-sft")
    results = trainer.train()
    assert results["state"] == "succeeded" and results["global_step"] == 2 and results["train_loss"] > 0
    assert trainer.backend == "trl" and trainer.model_name == "aligntune-sft" == results["model_name"]
    assert trainer.save_model(tmp_path / "saved") == str(tmp_path / "saved")  # downloaded from the model store
    assert (tmp_path / "saved" / "training_config.yaml").is_file()
    job = client.jobs.get(results["job_id"])
    assert job.method == "sft" and job.base_model == str(stack.root / "tiny")


def test_backend_auto_falls_back_and_dpo_runs(stack, client, caplog):
    caplog.set_level("INFO", logger="forgeway.compat.aligntune")
    trainer = create_rl_trainer(model_name=str(stack.root / "tiny"), dataset_name=str(stack.root / "prefs.jsonl"),
                                algorithm="dpo", backend="auto", max_steps=2, batch_size=2, max_seq_length=64,
                                lora_r=4, lora_alpha=8, beta=0.2, client=client)
    results = trainer.train()
    assert results["state"] == "succeeded" and trainer.backend == "trl"
    assert any(r.getMessage().startswith("fallback from unsloth to trl: unsloth unavailable") for r in caplog.records)
    assert client.jobs.get(results["job_id"]).method == "dpo"


def test_config_dict_and_warnings_for_what_forgeway_does_not_take(stack, client):
    config = {"model": {"name_or_path": str(stack.root / "tiny")},
              "datasets": [{"name": str(stack.root / "alpaca.jsonl")}],
              "train": {"max_steps": 1, "per_device_batch_size": 2, "max_seq_length": 32}}
    with pytest.warns(UserWarning, match="ignored: packing, system_prompt"):
        trainer = create_sft_trainer(config=config, client=client, packing=True, system_prompt="be kind")
    assert trainer.request["max_steps"] == 1 and trainer.request["batch_size"] == 2
    assert trainer.train()["global_step"] == 1


@pytest.mark.parametrize(("call", "message"), [
    (lambda c: create_sft_trainer(dataset_name="d.jsonl", client=c), "model_name must be provided"),
    (lambda c: create_sft_trainer(model_name="m", client=c), "dataset_name must be provided"),
    (lambda c: create_rl_trainer(model_name="m", dataset_name="d", client=c), "algorithm must be provided"),
    (lambda c: create_rl_trainer(model_name="m", dataset_name="d", algorithm="magic", client=c),
     "'magic' is not a valid RLAlgorithm"),
    (lambda c: create_rl_trainer(model_name="m", dataset_name="d", algorithm="ppo", client=c), "TRL removed PPO"),
    (lambda c: create_sft_trainer(model_name="m", dataset_name="d", backend="vllm", client=c),
     "'vllm' is not a valid BackendType"),
    (lambda c: create_rl_trainer(model_name="m", dataset_name="d", algorithm="dpo", reward_model_name="a",
                                 reward_model_path="b", client=c), "Specify exactly ONE reward source"),
])
def test_the_same_value_errors(client, call, message):
    with pytest.raises(ValueError, match=message):
        call(client)


def test_backend_status_and_list(stack, client, capsys):
    status = aligntune.get_backend_status(client)
    assert status["trl_available"] is True and status["unsloth_available"] is False
    assert status["current_mode"] == "TRL-ONLY"
    backends = aligntune.list_backends(client)
    assert backends["TRL"]["available"] and not backends["UNSLOTH"]["available"]
    assert "TRL       : Available" in capsys.readouterr().out
