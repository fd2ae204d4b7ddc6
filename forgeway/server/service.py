"""An engine served over gRPC: the base of every backend's service (the engine works, its servicers adapt)."""

from __future__ import annotations

from typing import Any, ClassVar

from .settings import ServiceSettings


class EngineService:
    """What serve() runs for a backend: an engine and the gRPC servicers over it.

    A backend's service names its engine class (`Engine`, whose `Settings` it takes); the registry names the service.
    Readiness and failure are the engine's own, so health and Capabilities follow the engine. Subclasses say which
    servicers (and what else, such as a trainer's job runner) the engine is served with.
    """

    Engine: ClassVar[type]
    Settings: ClassVar[type[ServiceSettings]] = ServiceSettings

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "Engine" in cls.__dict__:
            cls.Settings = cls.Engine.Settings

    def __init__(self, settings: ServiceSettings | None = None, *, engine: Any = None):
        self.engine = engine if engine is not None else self.Engine(settings)
        self.bound_port = 0

    @property
    def kind(self) -> str:
        return self.engine.kind

    @property
    def settings(self) -> ServiceSettings:
        return self.engine.settings

    @property
    def ready(self) -> bool:
        return self.engine.ready

    @ready.setter
    def ready(self, value: bool) -> None:
        self.engine.ready = value

    @property
    def failure(self) -> str:
        return self.engine.failure

    @failure.setter
    def failure(self, value: str) -> None:
        self.engine.failure = value

    async def start(self) -> None:
        await self.engine.start()

    async def stop(self) -> None:
        await self.engine.stop()

    def servicers(self) -> list[tuple[object, object, str]]:
        raise NotImplementedError
