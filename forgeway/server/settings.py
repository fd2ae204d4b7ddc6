"""Service settings: one pydantic-settings class per service, from flags, FORGEWAY_* env and a YAML file."""

from __future__ import annotations

import argparse
import json
import os
import uuid
from pathlib import Path
from typing import Any, NoReturn, TypeVar, get_origin

import yaml
from pydantic import Field, ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)


S = TypeVar("S", bound="ServiceSettings")


class SettingsError(Exception):
    """Bad settings; the message is one line naming the setting."""


def default_home() -> Path:
    return Path(os.environ.get("FORGEWAY_HOME", Path.home() / ".forgeway"))


class ServiceSettings(BaseSettings):
    """Settings every service has. Precedence: flags, then FORGEWAY_* env, then the YAML file, then defaults."""

    model_config = SettingsConfigDict(env_prefix="FORGEWAY_", extra="forbid", validate_default=True)

    host: str = Field("127.0.0.1", description="Address to listen on (0.0.0.0 for all interfaces).")
    port: int = Field(50051, ge=0, le=65535, description="gRPC port; 0 picks a free one.")
    metrics_port: int = Field(
        0, ge=-1, le=65535, description="Prometheus /metrics HTTP port; 0 picks a free one, -1 disables."
    )
    home: Path = Field(default_factory=default_home, description="Forgeway's data folder (model store, jobs, logs).")
    log_level: str = Field("INFO", pattern="^(DEBUG|INFO|WARNING|ERROR)$", description="Log level.")
    log_format: str = Field("json", pattern="^(json|text)$", description="Log line format.")
    max_message_bytes: int = Field(64 * 1024 * 1024, ge=1024, description="Largest gRPC message, both ways.")
    grace_seconds: float = Field(10.0, ge=0, description="On SIGTERM, how long in-flight calls may finish.")
    keepalive_seconds: float = Field(30.0, gt=0, description="Interval of HTTP/2 keepalive pings.")
    tls_cert_file: Path | None = Field(None, description="PEM certificate to serve TLS with; unset means plaintext.")
    tls_key_file: Path | None = Field(None, description="PEM private key of tls_cert_file.")
    tls_client_ca_file: Path | None = Field(
        None, description="PEM CA bundle; when set, clients must present a certificate it signed (mTLS)."
    )
    instance_id: str = Field(
        default_factory=lambda: uuid.uuid4().hex[:12], description="Unique id of this process, in Capabilities."
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, YamlConfigSettingsSource(settings_cls)


def _is_scalar(annotation: Any) -> bool:
    return get_origin(annotation) not in (list, dict, tuple, set) and annotation not in (list, dict)


class _FlagParser(argparse.ArgumentParser):
    """Reports a bad flag as a one-line SettingsError instead of printing usage and exiting."""

    def error(self, message: str) -> NoReturn:
        raise SettingsError(message)


def settings_parser(cls: type[ServiceSettings], prog: str) -> argparse.ArgumentParser:
    """An argument parser with one --flag per setting, its description as help."""
    parser = _FlagParser(prog=prog, description=cls.__doc__)
    parser.add_argument("--config", type=Path, help="YAML file of settings (keys as the flags, with underscores).")
    for name, field in cls.model_fields.items():
        kind = "" if _is_scalar(field.annotation) else " (JSON)"
        parser.add_argument(f"--{name.replace('_', '-')}", dest=name, help=(field.description or "") + kind)
        if field.annotation is bool:  # `--no-console` as well as `--console false`
            parser.add_argument(f"--no-{name.replace('_', '-')}", dest=name, action="store_const", const=False,
                                help=f"Same as --{name.replace('_', '-')} false.")
    return parser


def build_settings(cls: type[S], argv: list[str], prog: str = "forgeway") -> S:
    """Parse flags, read env and the YAML file, validate. Raises SettingsError naming the bad setting."""
    parser = settings_parser(cls, prog)
    args = vars(parser.parse_args(argv))
    config = args.pop("config")
    if config is not None and not Path(config).is_file():
        raise SettingsError(f"--config: no such file: {config}")
    flags: dict[str, Any] = {}
    for name, value in args.items():
        if value is None:
            continue
        if not _is_scalar(cls.model_fields[name].annotation):
            try:
                value = json.loads(value)
            except json.JSONDecodeError as exc:
                raise SettingsError(f"--{name.replace('_', '-')}: not valid JSON: {exc}") from None
        flags[name] = value
    bound = type(cls.__name__, (cls,), {"model_config": {**cls.model_config, "yaml_file": config}})
    try:
        return bound(**flags)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "settings"
        raise SettingsError(f"invalid setting {where}: {err['msg']}") from None
    except (OSError, ValueError, yaml.YAMLError) as exc:  # unreadable or malformed YAML
        raise SettingsError(f"--config {config}: {' '.join(str(exc).split())}") from None
