"""`forgeway serve custom`: the custom-backend engine wired to the inference servicers."""

from __future__ import annotations

from forgeway.services.runtime.service import InferenceService

from .engine import CustomEngine


class CustomService(InferenceService):
    Engine = CustomEngine
