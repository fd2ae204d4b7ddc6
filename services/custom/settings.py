"""Settings of the custom-backend service: which class to serve, and the model it loads at start."""

from __future__ import annotations

import pkgutil
from typing import Any

from pydantic import Field, field_validator

from forgeway.compat.llamaforge.backends.base import check_backend_class
from forgeway.server.settings import ServiceSettings

SAMPLING = ("temperature", "top_p", "top_k", "min_p", "repetition_penalty", "presence_penalty", "frequency_penalty")


def resolve_backend_class(target: str) -> type:
    """The class a "module:Class" names, checked to be a backend class; ValueError saying what is wrong."""
    if ":" not in target:
        raise ValueError(f"{target!r} is not module:Class")
    try:
        found = pkgutil.resolve_name(target)
    except (ImportError, AttributeError, ValueError) as error:
        raise ValueError(f"cannot import {target!r}: {error}") from None
    try:
        return check_backend_class(found)
    except TypeError as error:
        raise ValueError(str(error)) from None


class CustomSettings(ServiceSettings):
    """Settings of the custom-backend service."""

    backend_class: str = Field(
        description="The backend class to serve, as module:Class importable here (PYTHONPATH): a LlamaForge backend "
                    "with load_model(model_path, parameters) / generate(prompt, parameters) / generate_stream, or "
                    "LlamaForge's own signatures (load_model(model), generate(prompt, **kwargs)).")
    model_name: str = Field("", description="Name of a model to load at start; empty loads none until LoadModel.")
    model_path: str = Field("", description="Path given to load_model for model_name (default: model_name).")
    parameters: dict[str, Any] = Field(default_factory=dict,
                                       description="Parameters (JSON object) given to load_model for model_name.")
    context_length: int = Field(0, ge=0, description="Context length reported for its models (0: unknown).")
    sampling_params: list[str] = Field(
        default_factory=lambda: list(SAMPLING),
        description="Sampling parameters the backend honours, passed through to it; requests setting others are "
                    "refused.")

    @field_validator("backend_class")
    @classmethod
    def _importable(cls, value: str) -> str:
        resolve_backend_class(value)
        return value

    @field_validator("sampling_params")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(SAMPLING))
        if unknown:
            raise ValueError(f"unknown sampling parameter {unknown[0]!r} (known: {', '.join(SAMPLING)})")
        return value
