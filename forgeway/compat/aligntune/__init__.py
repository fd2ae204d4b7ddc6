"""AlignTune's API (`aligntune.core.backend_factory` and its names) running training jobs through Forgeway: see
factory.py for the mapping of AlignTune's arguments onto a TrainRequest."""

from .backend_factory import BackendFactory
from .backends import get_backend_status, list_backends, unsloth_disabled
from .factory import create_rl_trainer, create_sft_trainer
from .trainer import ForgewayTrainer
from .types import BackendConfig, BackendType, RLAlgorithm, TaskType, TrainingType, task_for

__all__ = ["BackendConfig", "BackendFactory", "BackendType", "ForgewayTrainer", "RLAlgorithm", "TaskType",
           "TrainingType", "create_rl_trainer", "create_sft_trainer", "get_backend_status", "list_backends",
           "task_for", "unsloth_disabled"]
