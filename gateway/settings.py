"""The gateway's settings: backends, refresh intervals, breaker, limits, API keys, model routes and plugins."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from forgeway.server.settings import ServiceSettings

from .http.settings import HttpSettings

ADDRESS = re.compile(r"^(dns:///)?(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.-]+):(\d{1,5})$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TlsConfig(_Strict):
    """TLS (and with a client certificate, mTLS) from the gateway to one backend."""

    ca_file: str | None = Field(None, description="PEM roots to verify the backend with; unset uses the system roots.")
    cert_file: str | None = Field(None, description="PEM client certificate for mTLS.")
    key_file: str | None = Field(None, description="PEM private key of the client certificate.")
    server_name: str | None = Field(None, description="Name to verify the backend's certificate against.")

    @model_validator(mode="after")
    def _pair(self) -> TlsConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together (mTLS)")
        for name in ("ca_file", "cert_file", "key_file"):
            path = getattr(self, name)
            if path is not None and not Path(path).is_file():
                raise ValueError(f"{name}: no such file: {path}")
        return self


class BackendConfig(_Strict):
    """One backend: a static host:port, or dns:///host:port re-resolved so each address is its own endpoint."""

    address: str = Field(description="host:port, or dns:///host:port for every address the name resolves to.")
    name: str = Field("", description="Label in logs, metrics and status; defaults to the address.")
    kind: str = Field("", description="Expected backend kind (hf, llamacpp, ...); a mismatch is logged.")
    tls: TlsConfig | None = Field(None, description="TLS to this backend; unset means plaintext.")

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        match = ADDRESS.match(value)
        if not match or not 0 < int(match.group(3)) < 65536:
            raise ValueError(f"{value!r} is not host:port or dns:///host:port")
        return value

    @property
    def label(self) -> str:
        return self.name or self.address


class BreakerConfig(_Strict):
    """Per-endpoint circuit breaker."""

    failure_threshold: int = Field(3, ge=1, description="Consecutive failures that open the breaker.")
    open_seconds: float = Field(1.0, gt=0, description="First wait before the half-open probe.")
    max_open_seconds: float = Field(30.0, gt=0, description="Longest wait (it doubles after each failed probe).")
    jitter: float = Field(0.2, ge=0, le=1, description="Random fraction added to each wait.")


class LimitsConfig(_Strict):
    """Admission limits."""

    max_in_flight: int = Field(0, ge=0, description="Requests the gateway serves at once; 0 means no limit.")
    endpoint_max_in_flight: int = Field(0, ge=0, description="Requests one endpoint gets at once; 0 means no limit.")
    max_attempts: int = Field(3, ge=1, le=10, description="Endpoints one request may try before it fails.")


class RateLimit(_Strict):
    """Per-key rate limits; 0 means no limit."""

    requests_per_minute: float = Field(0, ge=0, description="Requests a key may make per minute.")
    tokens_per_minute: float = Field(0, ge=0, description="Prompt plus completion tokens a key may use per minute.")


class ApiKey(_Strict):
    """An API key, stored as the SHA-256 of the key; the key itself never appears in config."""

    name: str = Field(description="Who holds it (in logs and metrics).")
    sha256: str = Field(description="Lowercase hex SHA-256 of the key (`printf %s KEY | sha256sum`).")
    models: list[str] = Field(default_factory=list, description="Models it may use; empty means all.")
    train: bool = Field(True, description="Whether it may train, manage jobs, datasets and models.")
    rate_limit: RateLimit | None = Field(None, description="Overrides the default per-key rate limit.")

    @field_validator("sha256")
    @classmethod
    def _hex(cls, value: str) -> str:
        value = value.lower()
        if not re.fullmatch(r"[0-9a-f]{64}", value):
            raise ValueError("must be 64 hex digits (a SHA-256, not the key)")
        return value


class GroupMember(_Strict):
    """A model in a weighted group."""

    model: str = Field(description="Model name (or alias) served by some backend.")
    weight: float = Field(1.0, gt=0, description="Relative share of the group's traffic.")


class PluginConfig(_Strict):
    """A pre- or post-processor by registered name, with its options."""

    name: str = Field(description="Built-in or `forgeway.plugins` entry-point name.")
    options: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments of the plugin.")
    enabled: bool = Field(True, description="Whether it runs; a disabled entry keeps its place and options.")


def _backends_from_mapping(value: Any) -> Any:
    """Accept {"name": "host:port"} (what `forgeway up` passes in FORGEWAY_BACKENDS) besides the list form."""
    if isinstance(value, dict):
        return [{"name": name, "address": address} for name, address in value.items()]
    if isinstance(value, list):
        return [{"address": item} if isinstance(item, str) else item for item in value]
    return value


class GatewaySettings(ServiceSettings):
    """Settings of the gateway. Everything but the listening ports reloads when the --config file changes."""

    backends: list[BackendConfig] = Field(default_factory=list, description="Backends to route to.")
    dns_refresh_seconds: float = Field(10.0, gt=0, description="How often dns:/// backends are re-resolved.")
    capabilities_refresh_seconds: float = Field(
        5.0, gt=0, description="How often each endpoint's Capabilities is re-read (also on every health change)."
    )
    connect_timeout_seconds: float = Field(5.0, gt=0, description="Deadline of a Capabilities read.")
    breaker: BreakerConfig = Field(default_factory=BreakerConfig, description="Circuit breaker per endpoint.")
    limits: LimitsConfig = Field(default_factory=LimitsConfig, description="In-flight limits and retry attempts.")
    api_keys: list[ApiKey] = Field(default_factory=list, description="Accepted API keys; empty turns auth off.")
    public_capabilities: bool = Field(True, description="Whether Capabilities answers without an API key.")
    rate_limit: RateLimit = Field(default_factory=RateLimit, description="Default per-key rate limit.")
    model_aliases: dict[str, str] = Field(default_factory=dict, description="Alias -> model or group name.")
    model_groups: dict[str, list[GroupMember]] = Field(
        default_factory=dict, description="Group name -> weighted models; a request picks one by weight."
    )
    plugins: dict[str, list[PluginConfig]] = Field(
        default_factory=dict, description='Model name (or "*" for all) -> processors applied in order.'
    )
    stream_interval_ms: float = Field(
        5.0, ge=0, le=1000,
        description="Least time between two messages of one stream to its caller: deltas that arrive sooner are "
        "merged into the next message (a stream faster than 1000/this tokens/s costs one send per interval, not "
        "per token). The first chunk and slower streams are not delayed. 0 sends each as soon as it can.",
    )
    http: HttpSettings = Field(default_factory=HttpSettings, description="Limits and timeouts of the HTTP API.")
    http_host: str = Field("127.0.0.1", description="Address of the OpenAI-compatible HTTP API.")
    http_port: int = Field(8000, ge=-1, le=65535, description="Port of the OpenAI-compatible HTTP API; -1 disables.")
    config_poll_seconds: float = Field(2.0, gt=0, description="How often the --config file is checked for changes.")
    console: bool = Field(True, description="Whether the HTTP port also serves the web console at / (--no-console).")

    @field_validator("backends", mode="before")
    @classmethod
    def _backend_forms(cls, value: Any) -> Any:
        return _backends_from_mapping(value)

    @field_validator("backends")
    @classmethod
    def _unique_backends(cls, value: list[BackendConfig]) -> list[BackendConfig]:
        labels = [b.label for b in value]
        duplicates = sorted({label for label in labels if labels.count(label) > 1})
        if duplicates:
            raise ValueError(f"duplicate backend names: {', '.join(duplicates)}")
        return value

    @field_validator("api_keys")
    @classmethod
    def _unique_keys(cls, value: list[ApiKey]) -> list[ApiKey]:
        names = [k.name for k in value]
        if len(set(names)) != len(names):
            raise ValueError("API key names must be unique")
        return value

    @field_validator("model_groups")
    @classmethod
    def _groups(cls, value: dict[str, list[GroupMember]]) -> dict[str, list[GroupMember]]:
        for name, members in value.items():
            if not members:
                raise ValueError(f"group {name!r} has no models")
        return value

    @field_validator("plugins")
    @classmethod
    def _plugins(cls, value: dict[str, list[PluginConfig]]) -> dict[str, list[PluginConfig]]:
        from .plugins import build_pipeline

        for model, configs in value.items():
            build_pipeline(configs, where=f"plugins.{model}")  # raises ValueError naming the plugin
        return value

    @model_validator(mode="after")
    def _aliases(self) -> GatewaySettings:
        for alias in self.model_aliases:
            seen = [alias]
            target = self.model_aliases[alias]
            while target in self.model_aliases:
                if target in seen:
                    raise ValueError(f"model_aliases: cycle {' -> '.join([*seen, target])}")
                seen.append(target)
                target = self.model_aliases[target]
            if alias in self.model_groups:
                raise ValueError(f"model_aliases: {alias!r} is also a group name")
        return self

    def resolve_alias(self, name: str) -> str:
        """Follow aliases to a model or group name."""
        while name in self.model_aliases:
            name = self.model_aliases[name]
        return name


# Settings a reload may change; the others (ports, host, home, logging) need a restart.
RELOADABLE = (
    "backends", "dns_refresh_seconds", "capabilities_refresh_seconds", "connect_timeout_seconds", "breaker", "limits",
    "api_keys", "public_capabilities", "rate_limit", "model_aliases", "model_groups", "plugins", "config_poll_seconds",
    "stream_interval_ms",
)
