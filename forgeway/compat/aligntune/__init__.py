"""AlignTune's API (`aligntune.core.backend_factory` and its names) running training jobs through Forgeway: see
factory.py for the mapping of AlignTune's arguments onto a TrainRequest."""

from .factory import create_rl_trainer, create_sft_trainer, get_backend_status, list_backends
from .trainer import ForgewayTrainer

__all__ = ["ForgewayTrainer", "create_rl_trainer", "create_sft_trainer", "get_backend_status", "list_backends"]
