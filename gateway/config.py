"""Config reload: poll the --config file, validate the new settings, apply them or keep the old ones and say why."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

import yaml
from pydantic import ValidationError

from . import metrics
from .settings import RELOADABLE, GatewaySettings

log = logging.getLogger("forgeway.gateway.config")


def config_file(settings: GatewaySettings) -> Path | None:
    """The YAML file the settings were read from (build_settings binds it to the settings class), if any."""
    path = type(settings).model_config.get("yaml_file")
    return Path(path) if path else None


def describe(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        err = exc.errors()[0]
        return f"{'.'.join(str(p) for p in err['loc']) or 'settings'}: {err['msg']}"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


class ConfigWatcher:
    """Re-reads the settings (file and FORGEWAY_* env) when the file changes; flags given at start keep winning.

    Args:
        settings: the settings the gateway started with (their class is bound to the file).
        apply: called with the new settings after they validated.
    """

    def __init__(self, settings: GatewaySettings, apply: Callable[[GatewaySettings], None]):
        self.current = settings
        self.cls = type(settings)
        self.path = config_file(settings)
        self.apply = apply
        self.stamp = self._stamp()
        try:  # what the file and env alone give: any reloadable setting that differs came from a flag
            baseline = self.cls()
            self.flags = {name for name in RELOADABLE if getattr(baseline, name) != getattr(settings, name)}
        except (ValidationError, OSError, ValueError, yaml.YAMLError):
            self.flags = set()

    def _stamp(self) -> tuple[float, int] | None:
        try:
            stat = self.path.stat() if self.path else None
        except OSError:
            return None
        return (stat.st_mtime_ns, stat.st_size) if stat else None

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.current.config_poll_seconds)
            self.check()

    def check(self) -> bool:
        """Reload if the file changed. Returns whether new settings were applied."""
        stamp = self._stamp()
        if stamp == self.stamp or stamp is None:
            return False
        self.stamp = stamp
        try:
            fresh = self.cls()
        except (ValidationError, OSError, ValueError, yaml.YAMLError) as exc:
            metrics.CONFIG_RELOADS.labels("invalid").inc()
            log.error("config reload of %s failed, keeping the previous config: %s", self.path, describe(exc))
            return False
        restart = [name for name in type(fresh).model_fields if name not in (*RELOADABLE, "instance_id")
                   and getattr(fresh, name) != getattr(self.current, name)]
        if restart:
            log.warning("config %s changes %s; these take effect after a restart", self.path, ", ".join(restart))
        update = {name: getattr(fresh, name) for name in RELOADABLE if name not in self.flags}
        merged = self.current.model_copy(update=update)
        try:
            self.apply(merged)
        except (ValueError, OSError) as exc:
            metrics.CONFIG_RELOADS.labels("invalid").inc()
            log.error("config reload of %s failed, keeping the previous config: %s", self.path, describe(exc))
            return False
        self.current = merged
        metrics.CONFIG_RELOADS.labels("applied").inc()
        log.info("config %s reloaded", self.path)
        return True
