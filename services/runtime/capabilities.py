"""Builds the Capabilities answer from what an engine reports and what the machine has."""

from __future__ import annotations

import platform

from forgeway import __version__
from forgeway.core.capabilities import features_to_proto, load_to_proto, model_to_proto
from forgeway.server.hardware import detect, hardware_to_proto
from forgeway.v1 import capabilities_pb2

from .engine import InferenceEngine


def engine_capabilities(engine: InferenceEngine, rpcs: list[str]) -> capabilities_pb2.CapabilitiesResponse:
    """Capabilities of an inference engine as served by BackendService.Capabilities."""
    return capabilities_pb2.CapabilitiesResponse(
        backend=engine.kind,
        version=__version__,
        instance_id=engine.settings.instance_id,
        availability=capabilities_pb2.Availability(
            available=engine.ready, reason="ready" if engine.ready else (engine.failure or "starting")
        ),
        rpcs=rpcs,
        models=[model_to_proto(m, engine.kind) for m in engine.models()],
        generation=features_to_proto(engine.features()),
        hardware=hardware_to_proto(detect(engine.settings.home / "models")),
        load=load_to_proto(engine.load()),
        library_versions={"python": platform.python_version(), "forgeway": __version__, **engine.library_versions()},
    )
