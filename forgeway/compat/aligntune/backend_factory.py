"""AlignTune's BackendFactory: trainers from a BackendConfig, and the backends that can train, from Capabilities.

`create_trainer(BackendConfig(...), model_name=..., dataset_name=..., ...)` hands the rest of AlignTune's keyword
arguments to create_sft_trainer / create_rl_trainer (factory.py). `list_available_backends()` and
`get_recommended_backend(...)` answer from the trainers' Capabilities (through the gateway: every trainer behind
it), honouring AlignTune's TRL-only switches (backends.py). Connection: `client=` or `target=`, else FORGEWAY_TARGET.
"""

from __future__ import annotations

from typing import Any

from forgeway.client import Client

from .algorithms import method_for
from .backends import trainer_methods
from .factory import create_rl_trainer, create_sft_trainer
from .trainer import ForgewayTrainer
from .types import BackendConfig, BackendType, RLAlgorithm, TrainingType

# AlignTune's order of preference: Unsloth, then TRL; listings name TRL first, as AlignTune registers it first.
PREFERENCE = (BackendType.UNSLOTH, BackendType.TRL)
LISTED = (BackendType.TRL, BackendType.UNSLOTH)


class BackendFactory:
    """AlignTune's BackendFactory, its trainers running as Forgeway jobs."""

    @classmethod
    def create_trainer(cls, config: BackendConfig, **kwargs: Any) -> ForgewayTrainer:
        """The trainer for a BackendConfig; kwargs are create_sft_trainer's / create_rl_trainer's (model_name,
        dataset_name, ..., client or target)."""
        if not isinstance(config, BackendConfig):
            raise ValueError(f"config: a BackendConfig is required, got {type(config).__name__}")
        for name in ("backend", "algorithm", "task_type", "fallback"):
            if name in kwargs:
                raise ValueError(f"{name}: the BackendConfig sets it; do not pass it again")
        chosen = {"backend": config.backend.value, "fallback": config.fallback_enabled}
        if config.training_type == TrainingType.SFT:
            return create_sft_trainer(task_type=config.task_type.value, **chosen, **kwargs)
        return create_rl_trainer(algorithm=config.algorithm.value, **chosen, **kwargs)

    @classmethod
    def list_available_backends(cls, client: Client | None = None, target: str | None = None) -> dict[str, Any]:
        """AlignTune's listing: {"SFT": [backends], "RL": {algorithm: [backends]}}, for what can train now."""
        trainers = trainer_methods(client or Client(target))
        available: dict[str, Any] = {"SFT": [b.value for b in LISTED if "sft" in trainers.get(b.value, ())],
                                     "RL": {}}
        for algorithm in RLAlgorithm:
            method = _method(algorithm)
            backends = [b.value for b in LISTED if method and method in trainers.get(b.value, ())]
            if backends:
                available["RL"][algorithm.value] = backends
        return available

    @classmethod
    def get_recommended_backend(cls, training_type: TrainingType | str, algorithm: RLAlgorithm | str | None = None,
                                client: Client | None = None, target: str | None = None) -> BackendConfig:
        """Unsloth where one of its trainers can train this now (and no switch keeps it off), else TRL; AlignTune's
        RuntimeError when neither can."""
        wanted = BackendConfig(training_type, BackendType.AUTO, algorithm)  # AlignTune's validation
        method = "sft" if wanted.training_type == TrainingType.SFT else method_for(wanted.algorithm)[0]
        trainers = trainer_methods(client or Client(target))
        for backend in PREFERENCE:
            if method in trainers.get(backend.value, ()):
                return BackendConfig(wanted.training_type, backend,
                                     wanted.algorithm if wanted.training_type == TrainingType.RL else None)
        can = "; ".join(f"{kind}: {', '.join(sorted(methods))}" for kind, methods in sorted(trainers.items()))
        raise RuntimeError(f"No available backend for {wanted.training_type} {wanted.algorithm}: no trainer can "
                           f"train {method} now ({can or 'no trainer is available'})")


def _method(algorithm: RLAlgorithm) -> str | None:
    """The Forgeway method for an algorithm, None for one Forgeway does not train (ppo, spin)."""
    try:
        return method_for(algorithm)[0]
    except ValueError:
        return None
