"""`forgeway serve echo`: the engine (the model-free reference engine) wired to the inference servicers."""

from __future__ import annotations

from forgeway.services.runtime.service import InferenceService

from .engine import EchoEngine


class EchoService(InferenceService):
    Engine = EchoEngine
