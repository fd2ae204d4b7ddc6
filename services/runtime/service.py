"""An inference engine wired to its gRPC servicers: what `forgeway serve NAME` runs for every inference backend."""

from __future__ import annotations

from typing import ClassVar

from forgeway.server.service import EngineService

from .engine import InferenceEngine
from .servicers import inference_servicers


class InferenceService(EngineService):
    """The service serve() runs for an inference backend: the engine generates, the servicers adapt the contract."""

    Engine: ClassVar[type[InferenceEngine]]
    engine: InferenceEngine

    def servicers(self) -> list[tuple[object, object, str]]:
        return inference_servicers(self.engine)

    def models(self):
        return self.engine.models()


def serving(engine: InferenceEngine) -> InferenceService:
    """The service for an engine built elsewhere (tests, benchmarks): the registry's service class for its kind."""
    from forgeway.server import registry

    return registry.load(engine.kind)(engine=engine)
