"""AlignTune's names for training types, backends, RL algorithms and SFT tasks, its BackendConfig, and task_for.

The values are AlignTune's (`aligntune.core.backend_factory` and `aligntune.core.sft.config`). AlignTune's enums are
plain Enums; these are StrEnums, so a member also equals its string ("trl" == BackendType.TRL) and str() gives the
value: every script written against AlignTune's members still works. BackendType.AUTO is the "auto" AlignTune's
factory functions take as a string. RLAlgorithm.SPIN and PPO are AlignTune names Forgeway does not train: the
factory refuses them with the reason.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

log = logging.getLogger("forgeway.compat.aligntune")

E = TypeVar("E", bound=StrEnum)


class TrainingType(StrEnum):
    """Training types supported by AlignTune."""

    SFT = "sft"
    RL = "rl"


class BackendType(StrEnum):
    """The trainer a job runs on: AlignTune's unsloth and trl, and auto (Unsloth where it can train, else TRL)."""

    UNSLOTH = "unsloth"
    TRL = "trl"
    AUTO = "auto"


class RLAlgorithm(StrEnum):
    """AlignTune's RL algorithms, spelled as AlignTune spells them."""

    DPO = "dpo"
    ONLINE_DPO = "online_dpo"
    PPO = "ppo"
    GRPO = "grpo"
    GSPO = "gspo"
    COUNTERFACT_GRPO = "counterfact_grpo"
    GBMPO = "gbmpo"
    DRGRPO = "drgrpo"
    DAPO = "dapo"
    PACE = "pace"
    NMGRPO = "nmgrpo"
    METAES = "metaes"
    ORPO = "orpo"
    SPIN = "spin"


class TaskType(StrEnum):
    """AlignTune's SFT task types."""

    INSTRUCTION_FOLLOWING = "instruction_following"
    SUPERVISED_FINE_TUNING = "supervised_fine_tuning"
    TEXT_CLASSIFICATION = "text_classification"
    TOKEN_CLASSIFICATION = "token_classification"
    TEXT_GENERATION = "text_generation"
    CHAT_COMPLETION = "chat_completion"


TRAINED = ("Forgeway trains text generation (instruction_following, supervised_fine_tuning, text_generation, "
           "chat_completion), summarization and extractive question answering")
# AlignTune's task types (and the Forgeway spellings the facade also takes) -> Forgeway's task.
TASKS: dict[str, str] = {
    **dict.fromkeys((TaskType.INSTRUCTION_FOLLOWING, TaskType.SUPERVISED_FINE_TUNING, TaskType.TEXT_GENERATION,
                     TaskType.CHAT_COMPLETION, "text-generation", "chat"), "text-generation"),
    "summarization": "summarization",
    **dict.fromkeys(("extractive-question-answering", "extractive_question_answering", "extractive_qa",
                     "question_answering", "qa"), "extractive-question-answering"),
}
REFUSED = {TaskType.TEXT_CLASSIFICATION: "text classification (a classifier head on a label column)",
           TaskType.TOKEN_CLASSIFICATION: "token classification (a tagging head on per-token labels)"}


def member(enum: type[E], value: Any, field: str) -> E:
    """The enum member for a member or its string (any case); ValueError naming the field otherwise."""
    if isinstance(value, enum):
        return value
    try:
        return enum(str(getattr(value, "value", value)).lower())
    except ValueError:
        raise ValueError(f"{field}: {value!r} is not a valid {enum.__name__}; valid: "
                         f"{', '.join(m.value for m in enum)}") from None


def task_for(task_type: TaskType | str) -> str:
    """Forgeway's task name for an AlignTune task type; ValueError naming task_type for one Forgeway does not train
    (text and token classification) or does not know."""
    key = str(getattr(task_type, "value", task_type)).strip().lower()
    if key in TASKS:
        return TASKS[key]
    if key in REFUSED:
        raise ValueError(f"task_type {key!r}: {REFUSED[key]} is not trained through Forgeway, whose "
                         f"contract trains language models that generate text; {TRAINED}")
    raise ValueError(f"task_type {task_type!r} is not a valid TaskType; {TRAINED}")


@dataclass
class BackendConfig:
    """AlignTune's backend selection: training type, backend, the algorithm (RL) or task type (SFT), fallback.

    Members or their strings are taken; RL without an algorithm is AlignTune's ValueError, an algorithm for SFT is
    logged and ignored, and SFT without a task type gets supervised_fine_tuning, as in AlignTune."""

    training_type: TrainingType
    backend: BackendType
    algorithm: RLAlgorithm | None = None
    task_type: TaskType | None = None
    fallback_enabled: bool = True

    def __post_init__(self) -> None:
        self.training_type = member(TrainingType, self.training_type, "training_type")
        self.backend = member(BackendType, self.backend, "backend")
        if self.algorithm is not None:
            self.algorithm = member(RLAlgorithm, self.algorithm, "algorithm")
        if self.task_type is not None:
            self.task_type = member(TaskType, self.task_type, "task_type")
        if self.training_type == TrainingType.RL and self.algorithm is None:
            raise ValueError("RL training requires algorithm specification")
        if self.training_type == TrainingType.SFT and self.algorithm is not None:
            log.warning("Algorithm specified for SFT training, ignoring")
        if self.training_type == TrainingType.SFT and self.task_type is None:
            log.info("No task type specified for SFT, using default SUPERVISED_FINE_TUNING")
            self.task_type = TaskType.SUPERVISED_FINE_TUNING
