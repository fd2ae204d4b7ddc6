"""A trainer served over gRPC: its engine, the JobRunner that owns the job database, and the servicers between them.
What `forgeway serve trl|unsloth` runs; a training worker process builds the engine alone."""

from __future__ import annotations

from typing import ClassVar

from forgeway.server.service import EngineService

from .engine import TrainingEngine, TrainingSettings
from .runner import JobRunner
from .servicers import trainer_servicers


class TrainerService(EngineService):
    """The service serve() runs for a trainer: the engine trains, the runner queues and records jobs (jobs.db under
    FORGEWAY_HOME), the servicers adapt the contract to both."""

    Engine: ClassVar[type[TrainingEngine]]
    Settings: ClassVar[type[TrainingSettings]] = TrainingSettings
    engine: TrainingEngine

    def __init__(self, settings: TrainingSettings | None = None, *, engine: TrainingEngine | None = None):
        super().__init__(settings, engine=engine)
        self.runner = JobRunner(self.engine)

    async def start(self) -> None:
        await self.engine.prepare()
        await self.runner.start()

    async def stop(self) -> None:
        await self.runner.stop()

    def servicers(self) -> list[tuple[object, object, str]]:
        return trainer_servicers(self.engine, self.runner)
