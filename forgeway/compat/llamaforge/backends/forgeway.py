"""A LlamaForge backend whose models Forgeway serves, through the SDK: the base of its three built-in backends.

`load_model(model_path, parameters)` loads the model on a Forgeway backend of that kind (ModelService.LoadModel: the
path or hub id or upstream model id as the source, the load parameters as options) unless the endpoint already
serves a model of that name; generate and generate_stream call Generate and GenerateStream. The endpoint is the
`client` given, else `target`, else FORGEWAY_TARGET.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import PurePath
from typing import Any

from forgeway.client import Client

from ..parameters import normalised, sampling, split
from .base import BaseBackend

MODEL_SUFFIXES = (".gguf", ".ggml", ".bin")


def served_name(model_path: str) -> str:
    """The name a model loaded by path is served under: the file or folder name without a model-file suffix."""
    name = PurePath(model_path).name or model_path
    for suffix in MODEL_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


class ForgewayBackend(BaseBackend):
    """A model served by Forgeway; `kind` is the Forgeway backend kind it loads on ("" lets the gateway choose)."""

    name = "forgeway"
    kind = ""

    def __init__(self, client: Client | None = None, *, target: str | None = None):
        self.client = client or Client(target)
        self.served_name: str | None = None
        self.loaded_here = False
        self.parameters: dict[str, Any] = {}  # the generation parameters given at load
        self.honoured: frozenset[str] = frozenset()  # the sampling parameters the serving backend honours

    def load_model(self, model_path: str, parameters: dict | None = None, *, name: str | None = None) -> None:
        """Serve `model_path` under `name` (default: the file name): loaded here unless already served."""
        name = name or served_name(model_path)
        options, generation = split(self.kind, dict(parameters or {}))
        self.parameters = normalised(generation)
        served = {m.name: m for m in self.client.models.list()}
        if name in served and served[name].loaded:
            self.loaded_here = False
        else:
            self.client.models.load(name, model_path, backend=self.kind, options=options)
            self.loaded_here = True
        self.served_name = name
        self.honoured = self._honoured(name)

    def adopt(self, name: str) -> None:
        """Use a model the endpoint already serves under `name`, as it is (not ours to unload)."""
        self.served_name, self.loaded_here, self.parameters = name, False, {}
        self.honoured = self._honoured(name)

    def generate(self, prompt: str, parameters: dict | None = None) -> str:
        name = self._loaded()
        return self.client.generate(name, prompt, **sampling({**self.parameters, **normalised(parameters or {})})).text

    def generate_stream(self, prompt: str, parameters: dict | None = None) -> Iterator[str]:
        name = self._loaded()
        options = sampling({**self.parameters, **normalised(parameters or {})})
        with self.client.stream(name, prompt, **options) as stream:
            for delta in stream:
                if delta.text:
                    yield delta.text

    def is_model_loaded(self) -> bool:
        return self.served_name is not None and any(
            m.name == self.served_name and m.loaded for m in self.client.models.list())

    def unload_model(self) -> None:
        if self.served_name is not None and self.loaded_here:
            self.client.models.unload(self.served_name)
        self.served_name, self.loaded_here = None, False

    def get_model_info(self) -> dict[str, Any]:
        name = self._loaded()
        for model in self.client.models.list():
            if model.name == name:
                return dataclasses.asdict(model)
        raise RuntimeError(f"model {name!r} is no longer served")

    def supported(self, defaults: dict[str, Any]) -> dict[str, Any]:
        """The generation defaults the serving backend honours (max_tokens always): a default never makes a backend
        refuse a call, while a parameter a caller or the model's configuration gives is sent and refused there."""
        return {k: v for k, v in normalised(defaults).items() if k == "max_tokens" or k in self.honoured}

    def _loaded(self) -> str:
        if self.served_name is None:
            raise RuntimeError("No model loaded")
        return self.served_name

    def _honoured(self, name: str) -> frozenset[str]:
        capabilities = self.client.capabilities()
        for endpoint in capabilities.endpoints or ():
            if any(m.name == name for m in endpoint.capabilities.models):
                return frozenset(endpoint.capabilities.generation.sampling_params)
        return frozenset(capabilities.generation.sampling_params)
