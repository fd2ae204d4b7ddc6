"""`forgeway serve llamacpp`: the engine (llama.cpp, GGUF models) wired to the inference servicers."""

from __future__ import annotations

from forgeway.services.runtime.service import InferenceService

from .engine import LlamaCppEngine


class LlamaCppService(InferenceService):
    Engine = LlamaCppEngine
