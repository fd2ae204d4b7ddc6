"""The names AlignTune's scripts import from the facade: its enums, BackendConfig's validation, task_for, and the
TRL-only environment switches."""

from __future__ import annotations

import logging

import pytest

from forgeway.client.types import BackendStatus, Load
from forgeway.compat.aligntune import (BackendConfig, BackendType, RLAlgorithm, TaskType, TrainingType, task_for,
                                       unsloth_disabled)
from forgeway.compat.aligntune.backends import SWITCHES, methods_by_trainer


@pytest.fixture(autouse=True)
def no_switches(monkeypatch):
    for name in SWITCHES:
        monkeypatch.delenv(name, raising=False)


def test_the_enums_carry_aligntunes_values_and_equal_their_strings():
    assert [t.value for t in TrainingType] == ["sft", "rl"]
    assert {b.value for b in BackendType} == {"trl", "unsloth", "auto"}
    assert [a.value for a in RLAlgorithm] == ["dpo", "online_dpo", "ppo", "grpo", "gspo", "counterfact_grpo", "gbmpo",
                                              "drgrpo", "dapo", "pace", "nmgrpo", "metaes", "orpo", "spin"]
    assert [t.value for t in TaskType] == ["instruction_following", "supervised_fine_tuning", "text_classification",
                                           "token_classification", "text_generation", "chat_completion"]
    assert BackendType.TRL == "trl" and RLAlgorithm("gspo") is RLAlgorithm.GSPO and str(TaskType.CHAT_COMPLETION) \
        == "chat_completion"
    assert RLAlgorithm.DRGRPO != "dr_grpo"  # spelled as AlignTune spells it


def test_rl_without_an_algorithm_is_aligntunes_value_error():
    with pytest.raises(ValueError, match="^RL training requires algorithm specification$"):
        BackendConfig(TrainingType.RL, BackendType.TRL)


def test_sft_with_an_algorithm_logs_and_ignores_it_and_defaults_its_task(caplog):
    caplog.set_level(logging.INFO, logger="forgeway.compat.aligntune")
    config = BackendConfig(TrainingType.SFT, BackendType.UNSLOTH, RLAlgorithm.DPO)
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == [
        "Algorithm specified for SFT training, ignoring"]
    assert config.task_type is TaskType.SUPERVISED_FINE_TUNING and config.fallback_enabled is True


def test_backend_config_takes_strings_and_names_the_field_of_a_bad_one():
    config = BackendConfig("RL", "trl", "gbmpo", fallback_enabled=False)
    assert (config.training_type, config.backend, config.algorithm) == (TrainingType.RL, BackendType.TRL,
                                                                       RLAlgorithm.GBMPO)
    assert config.task_type is None  # RL has no SFT task
    with pytest.raises(ValueError, match=r"^backend: 'vllm' is not a valid BackendType; valid: unsloth, trl, auto$"):
        BackendConfig("sft", "vllm")
    with pytest.raises(ValueError, match=r"^algorithm: 'magic' is not a valid RLAlgorithm"):
        BackendConfig("rl", "trl", "magic")
    with pytest.raises(ValueError, match=r"^training_type: 'distill' is not a valid TrainingType"):
        BackendConfig("distill", "trl")
    with pytest.raises(ValueError, match=r"^task_type: 'ner' is not a valid TaskType"):
        BackendConfig("sft", "trl", task_type="ner")


@pytest.mark.parametrize("task", [TaskType.INSTRUCTION_FOLLOWING, TaskType.SUPERVISED_FINE_TUNING,
                                  TaskType.TEXT_GENERATION, TaskType.CHAT_COMPLETION, "chat_completion",
                                  "TEXT_GENERATION"])
def test_generation_task_types_train_text_generation(task):
    assert task_for(task) == "text-generation"


def test_forgeways_other_tasks_keep_their_names():
    assert task_for("summarization") == "summarization"
    assert task_for("extractive_qa") == task_for("question_answering") == "extractive-question-answering"


@pytest.mark.parametrize(("task", "what"), [(TaskType.TEXT_CLASSIFICATION, "text classification"),
                                            ("token_classification", "token classification")])
def test_classification_is_refused_with_what_forgeway_trains(task, what):
    with pytest.raises(ValueError, match=rf"^task_type '{task}': {what} .* is not trained through Forgeway") as e:
        task_for(task)
    assert "Forgeway trains text generation" in str(e.value) and "summarization" in str(e.value)


def test_an_unknown_task_type_names_the_field():
    with pytest.raises(ValueError, match=r"^task_type 'poetry' is not a valid TaskType; Forgeway trains"):
        task_for("poetry")


def row(backend: str, methods: tuple[str, ...], available: bool = True, health: str = "SERVING") -> BackendStatus:
    return BackendStatus(address=f"{backend}:1", backend=backend, available=available, reason="", health=health,
                         breaker="closed", load=Load(), models=(), methods=methods)


ROWS = [row("trl", ("sft", "dpo")), row("unsloth", ("sft", "grpo")), row("hf", ()),
        row("trl", ("kto",), health="NOT_SERVING"), row("unsloth", ("orpo",), available=False)]


def test_trainers_that_can_take_work_and_their_methods():
    assert unsloth_disabled() is None
    assert methods_by_trainer(ROWS) == {"trl": {"sft", "dpo"}, "unsloth": {"sft", "grpo"}}


@pytest.mark.parametrize("switch", SWITCHES)
def test_each_switch_keeps_unsloth_off(monkeypatch, switch):
    monkeypatch.setenv(switch, "1")
    assert unsloth_disabled() == f"{switch}=1: Unsloth switched off (AlignTune's TRL-only mode)"
    assert methods_by_trainer(ROWS) == {"trl": {"sft", "dpo"}}


def test_a_switch_counts_only_when_it_is_1_as_in_aligntune(monkeypatch):
    monkeypatch.setenv("PURE_TRL_MODE", "0")
    monkeypatch.setenv("TRL_ONLY_MODE", "true")
    assert unsloth_disabled() is None and "unsloth" in methods_by_trainer(ROWS)
    monkeypatch.setenv("DISABLE_UNSLOTH_FOR_TRL", "1")
    monkeypatch.setenv("PURE_TRL_MODE", "1")
    assert unsloth_disabled().startswith("PURE_TRL_MODE=1, DISABLE_UNSLOTH_FOR_TRL=1: ")
