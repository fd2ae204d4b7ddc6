"""`forgeway serve hf`: the engine (Hugging Face transformers) wired to the inference servicers."""

from __future__ import annotations

from forgeway.services.runtime.service import InferenceService

from .engine import HFEngine


class HFService(InferenceService):
    Engine = HFEngine
