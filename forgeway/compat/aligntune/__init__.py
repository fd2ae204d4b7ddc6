"""AlignTune's API (`aligntune.core.backend_factory` and its names) running training jobs through Forgeway: see
factory.py for the mapping of AlignTune's arguments onto a TrainRequest."""

from .backends import get_backend_status, list_backends
from .factory import create_rl_trainer, create_sft_trainer
from .trainer import ForgewayTrainer

__all__ = ["ForgewayTrainer", "create_rl_trainer", "create_sft_trainer", "get_backend_status", "list_backends"]
