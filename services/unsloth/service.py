"""`forgeway serve unsloth`: the Unsloth engine as a trainer service (run it from .venv-unsloth)."""

from __future__ import annotations

from forgeway.services.training.service import TrainerService

from .engine import UnslothEngine


class UnslothService(TrainerService):
    Engine = UnslothEngine
