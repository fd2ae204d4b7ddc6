"""Shared by the tool-calling tests (no tests here): a real gateway in front of a real hf process serving the tiny
Llama as "tiny" (its chat template renders Hermes tools and has a thinking switch) and an echo process serving the
same name without tools, so every tool request the gateway routes must land on hf."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema

from forgeway.testing import (LoopThread, ServiceProcess, build_tiny_gguf, build_tiny_llama, gateway_settings, start_gateway,
                              stop_now)

CITY = {"type": "object", "additionalProperties": False, "required": ["city", "days"],
        "properties": {"city": {"type": "string", "enum": ["Oslo", "Rome", "Lima"]},
                       "days": {"type": "integer", "minimum": 1, "maximum": 7}}}
WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "The forecast for a city.",
                                            "parameters": CITY}}
TIME = {"type": "function", "function": {"name": "get_time", "description": "The time now.",
                                         "parameters": {"type": "object", "properties": {}}}}
TOOLS = [WEATHER, TIME]
SCHEMAS = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}
ASK = [{"role": "user", "content": "What will the weather be in Oslo this week?"}]


def check_call(name: str, arguments: str) -> dict:
    """The arguments of a call of one of TOOLS, parsed, after checking them against the tool's schema."""
    import json

    value = json.loads(arguments)
    jsonschema.validate(value, SCHEMAS[name])
    return value


@dataclass
class ToolsStack:
    gateway: Any
    backend: ServiceProcess  # the one with tools: hf or llamacpp
    echo: ServiceProcess

    @property
    def target(self) -> str:
        """The gateway's gRPC address."""
        return f"127.0.0.1:{self.gateway.port}"

    @property
    def base_url(self) -> str:
        """The gateway's OpenAI-compatible API."""
        return f"http://127.0.0.1:{self.gateway.service.http_port}/v1"


@contextmanager
def tools_stack(root: Path, **settings: Any) -> Iterator[ToolsStack]:
    """hf and echo processes serving "tiny", and a gateway (with its HTTP API, and `settings`) in front of them."""
    tiny = build_tiny_llama(root / "tiny")
    with ServiceProcess("hf", "--model", str(tiny), "--model-name", "tiny", "--torch-threads", "1",
                        "--grace-seconds", "1", timeout=180) as hf, \
            ServiceProcess("echo", "--model-name", "tiny", "--grace-seconds", "1") as echo:
        loop = LoopThread()
        try:
            gateway = loop.run(start_gateway(gateway_settings([hf.address, echo.address], http_port=0, **settings)))
            try:
                yield ToolsStack(gateway, hf, echo)
            finally:
                loop.run(stop_now(gateway))
        finally:
            loop.close()


@contextmanager
def llamacpp_stack(root: Path) -> Iterator[ToolsStack]:
    """A llamacpp process (llama.cpp's own server underneath) serving the tiny Llama's GGUF as "tiny", the echo process
    serving the same name without tools, and a gateway with its HTTP API in front of both."""
    import json

    gguf = build_tiny_gguf(build_tiny_llama(root / "tiny"), root / "tiny.gguf")
    models = json.dumps([{"name": "tiny", "source": str(gguf), "n_ctx": 512, "n_threads": 1}])
    with ServiceProcess("llamacpp", "--models", models, timeout=180) as llamacpp, \
            ServiceProcess("echo", "--model-name", "tiny", "--grace-seconds", "1") as echo:
        loop = LoopThread()
        try:
            gateway = loop.run(start_gateway(gateway_settings([llamacpp.address, echo.address], http_port=0)))
            try:
                yield ToolsStack(gateway, llamacpp, echo)
            finally:
                loop.run(stop_now(gateway))
        finally:
            loop.close()
