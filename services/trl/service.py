"""`forgeway serve trl`: the TRL engine as a trainer service."""

from __future__ import annotations

from forgeway.services.training.service import TrainerService

from .engine import TRLEngine


class TRLService(TrainerService):
    Engine = TRLEngine
