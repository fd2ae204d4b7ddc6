"""AlignTune's trainer object end to end against a real gateway with the trl trainer and the hf service behind it:
train a LoRA, evaluate it on the held-out split, predict through the hf service, save_model and reload it with
transformers + peft to the same greedy answer, checkpoints saved and resumed, stats, and push_to_hub refused
clearly where no hub can be reached."""

from __future__ import annotations

import json
import math

import pytest
import yaml

from forgeway.client import Client
from forgeway.compat.aligntune import ForgewayTrainer, create_sft_trainer
from forgeway.testing import InProcessStack

pytestmark = [pytest.mark.trl, pytest.mark.hf, pytest.mark.slow]
ROWS = [{"prompt": f"Where did cat {i} sit?", "completion": " On the mat."} for i in range(12)]
PROMPT = "Where did cat 3 sit?"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    from forgeway import testing
    from forgeway.services.hf.service import HFService
    from forgeway.services.hf.settings import HFSettings
    from forgeway.services.trl.service import TRLService
    from forgeway.services.trl.settings import TRLSettings

    root = tmp_path_factory.mktemp("aligntune-trainer")
    testing.build_tiny_llama(root / "tiny", seed=0)
    (root / "cats.jsonl").write_text("".join(json.dumps(row) + "\n" for row in ROWS))
    common = {"home": root / "home", "port": 0, "metrics_port": -1, "host": "127.0.0.1", "log_level": "WARNING"}

    def trl():  # keep_checkpoints off: the facade's TrainOutput.keep_checkpoint keeps what save_checkpoint needs
        return TRLService(TRLSettings(**common, grace_seconds=5, allowed_roots=[root], min_dataset_rows=2))

    def hf():  # serves the base and, from the shared store, what trl trains on it
        return HFService(HFSettings(**common, torch_threads=1, model_roots=[root],
                                    models=[{"name": "tiny", "path": str(root / "tiny")}]))

    with InProcessStack(trl, hf, root=root) as running:
        yield running


@pytest.fixture(scope="module")
def client(stack):
    with Client(stack.target, timeout=120) as sdk:
        yield sdk


def _trainer(stack, client, run_name: str, max_steps: int) -> ForgewayTrainer:
    return create_sft_trainer(model_name=str(stack.root / "tiny"), dataset_name=str(stack.root / "cats.jsonl"),
                              backend="trl", max_steps=max_steps, batch_size=2, learning_rate=1e-2,
                              max_seq_length=32, use_peft=True, lora_r=4, lora_alpha=8, lora_dropout=0.0,
                              split="train[:75%]", run_name=run_name, client=client,
                              output_dir=str(stack.root / "out"))


@pytest.fixture(scope="module")
def trained(stack, client) -> ForgewayTrainer:
    trainer = _trainer(stack, client, "at-lora", 3)
    assert trainer.train()["state"] == "succeeded"
    return trainer


def test_save_model_reloads_with_peft_to_the_same_greedy_answer_as_predict(trained, stack, tmp_path):
    import torch
    import transformers
    from peft import PeftModel

    folder = trained.save_model(tmp_path / "saved")
    assert (tmp_path / "saved" / "adapter_config.json").is_file()
    config = yaml.safe_load((tmp_path / "saved" / "training_config.yaml").read_text())
    assert config["model_name"] == "at-lora" and config["request"]["max_steps"] == 3
    assert config["results"]["job_id"] == trained.result.id and config["results"]["global_step"] == 3
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    base = transformers.AutoModelForCausalLM.from_pretrained(stack.root / "tiny")
    model = PeftModel.from_pretrained(base, folder).eval()
    inputs = tokenizer(PROMPT, return_tensors="pt")
    with torch.inference_mode():
        output = model.generate(**inputs, max_new_tokens=6, do_sample=False, pad_token_id=tokenizer.eos_token_id)
    local = tokenizer.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    assert local.strip() and trained.predict(PROMPT, max_new_tokens=6) == local
    assert trained.predict([PROMPT, PROMPT], max_new_tokens=6) == [local, local]


def test_evaluate_runs_now_on_the_held_out_split(trained):
    metrics = trained.evaluate()
    assert metrics["eval_samples"] == 3  # train[75%:] of 12 rows
    assert math.isfinite(metrics["eval_loss"]) and metrics["eval_perplexity"] == pytest.approx(
        math.exp(metrics["eval_loss"]), rel=1e-6)
    assert {"eval_rouge1", "eval_rouge2", "eval_rougeL", "eval_bleu"} <= set(metrics)
    given = trained.evaluate([{"text": "the cat sat on the mat"}], metric_key_prefix="test")
    assert given["test_samples"] == 1 and "test_rouge1" not in given and math.isfinite(given["test_loss"])


def test_training_stats_come_from_the_jobs_progress(trained):
    stats = trained.get_training_stats()
    assert (stats["step"], stats["backend"], stats["model_name"]) == (3, "trl", "at-lora")
    assert [row["step"] for row in stats["losses"]] == [1, 2, 3] and all(row["loss"] > 0 for row in stats["losses"])
    assert stats["runtime"] > 0 and stats["epoch"] > 0


def test_a_saved_checkpoint_resumes_the_next_training(trained, stack, client, tmp_path):
    folder = trained.save_checkpoint(tmp_path / "ckpt")
    note = json.loads((tmp_path / "ckpt" / "forgeway_checkpoint.json").read_text())
    assert note == {"job_id": trained.result.id, "checkpoint": "checkpoint-3", "step": 3, "backend": "trl"}
    assert (tmp_path / "ckpt" / "trainer_state.json").is_file() and folder == str(tmp_path / "ckpt")
    resumed = _trainer(stack, client, "at-lora-resumed", 4)
    resumed.load_checkpoint(folder)
    assert resumed.train()["global_step"] == 4
    assert [row["step"] for row in resumed.get_training_stats()["losses"]] == [4]


def test_push_to_hub_without_a_reachable_hub_fails_clearly(trained):
    with pytest.raises(RuntimeError, match=r"push_to_hub: could not upload to 'me/at-lora' at http://127\.0\.0\.1:9"):
        trained.push_to_hub("me/at-lora", endpoint="http://127.0.0.1:9")


def test_methods_before_training_and_the_context_manager(stack):
    own = Client(stack.target)
    with ForgewayTrainer(own, {"backend": "trl"}, "out", "sft", owns_client=True) as trainer:
        with pytest.raises(RuntimeError, match="predict: no trained model"):
            trainer.predict("hi")
        assert trainer.get_training_stats()["step"] == 0
    with pytest.raises(ValueError):  # the trainer closed the client it was given to own
        own.capabilities()
