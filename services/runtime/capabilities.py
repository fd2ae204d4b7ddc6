"""Builds the Capabilities answer from what an engine reports and what the machine has."""

from __future__ import annotations

import platform

from forgeway import __version__
from forgeway.v1 import capabilities_pb2, common_pb2, models_pb2

from .engine import Features, InferenceEngine, LoadInfo, ModelInfo
from .hardware import Hardware, detect

QUANTIZATION_TO_PROTO = {
    "none": common_pb2.QUANTIZATION_NONE,
    "nf4": common_pb2.QUANTIZATION_4BIT_NF4,
    "fp4": common_pb2.QUANTIZATION_4BIT_FP4,
    "int8": common_pb2.QUANTIZATION_8BIT,
    "gguf": common_pb2.QUANTIZATION_GGUF,
}
QUANTIZATION_FROM_PROTO = {v: k for k, v in QUANTIZATION_TO_PROTO.items()}


def model_to_proto(model: ModelInfo, backend: str) -> models_pb2.ModelInfo:
    return models_pb2.ModelInfo(
        name=model.name,
        task=model.task.to_proto(),
        context_length=model.context_length,
        quantization=QUANTIZATION_TO_PROTO.get(model.quantization, common_pb2.QUANTIZATION_UNSPECIFIED),
        adapters=model.adapters,
        loaded=model.loaded,
        backend=backend,
        source=model.source,
        aliases=model.aliases,
        chat=model.chat,
    )


def features_to_proto(features: Features) -> capabilities_pb2.GenerationFeatures:
    return capabilities_pb2.GenerationFeatures(
        streaming=features.streaming,
        logprobs=features.logprobs,
        json_schema=features.json_schema,
        grammar=features.grammar,
        stop=features.stop,
        seed=features.seed,
        multiple_choices=features.multiple_choices,
        adapters=features.adapters,
        sampling_params=sorted(features.sampling_params),
    )


def hardware_to_proto(hw: Hardware) -> capabilities_pb2.Hardware:
    return capabilities_pb2.Hardware(**hw.__dict__)


def load_to_proto(load: LoadInfo) -> capabilities_pb2.Load:
    return capabilities_pb2.Load(**load.__dict__)


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
        hardware=hardware_to_proto(detect()),
        load=load_to_proto(engine.load()),
        library_versions={"python": platform.python_version(), "forgeway": __version__, **engine.library_versions()},
    )
