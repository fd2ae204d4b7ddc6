"""GatewayState: the parts every servicer shares, rebuilt from settings when the config reloads."""

from __future__ import annotations

from .admission import Admission
from .auth import ApiKeys
from .discovery import EndpointPool
from .forward import Forwarder
from .owners import Owners
from .plugins import Plugins
from .router import Router
from .settings import GatewaySettings


class GatewayState:
    """Endpoints, router, forwarder, keys, admission and plugins, under one settings object."""

    def __init__(self, settings: GatewaySettings):
        self.settings = settings
        self.pool = EndpointPool(settings)
        self.router = Router(self.pool, settings)
        self.forwarder = Forwarder(settings.limits.max_attempts)
        self.keys = ApiKeys(settings.api_keys)
        self.admission = Admission(settings)
        self.plugins = Plugins(settings.plugins)
        self.owners = Owners()

    async def start(self) -> None:
        await self.pool.start()

    async def stop(self) -> None:
        await self.pool.stop()

    def apply(self, settings: GatewaySettings) -> None:
        """Switch to new settings. Everything that can fail is built before anything changes. The pipelines
        changed at run time (PluginService) stay unless the file's `plugins` changed: then the file's replace them."""
        plugins = Plugins(settings.plugins) if settings.plugins != self.settings.plugins else self.plugins
        keys = ApiKeys(settings.api_keys)
        self.settings = settings
        self.plugins, self.keys = plugins, keys
        self.router.settings = settings
        self.forwarder.max_attempts = settings.limits.max_attempts
        self.admission.configure(settings)
        self.pool.configure(settings)
