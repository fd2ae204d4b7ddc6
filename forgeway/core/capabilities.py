"""Capabilities as domain types <-> their protos: models, generation features, load."""

from __future__ import annotations

from datetime import timezone

from forgeway.v1 import capabilities_pb2, common_pb2, models_pb2

from .enums import QUANTIZATION
from .generation import Task
from .models import FEATURE_FLAGS, Features, LoadInfo, ModelInfo


def model_to_proto(model: ModelInfo, backend: str = "") -> models_pb2.ModelInfo:
    msg = models_pb2.ModelInfo(
        name=model.name,
        task=model.task.to_proto(),
        context_length=model.context_length,
        quantization=QUANTIZATION.to_value.get(model.quantization, common_pb2.QUANTIZATION_UNSPECIFIED),
        adapters=model.adapters,
        loaded=model.loaded,
        backend=backend or model.backend,
        source=model.source,
        aliases=model.aliases,
        chat=model.chat,
        unsupported_features=model.unsupported,
        dimensions=model.dimensions,
        matryoshka_dimensions=model.matryoshka,
        pooling=model.pooling,
        description=model.description,
        base_model=model.base_model,
        provider=model.provider,
        trained_by=model.trained_by,
    )
    if model.created is not None:
        msg.created.FromDatetime(model.created)
    return msg


def model_from_proto(msg: models_pb2.ModelInfo) -> ModelInfo:
    return ModelInfo(
        name=msg.name,
        task=Task.from_proto(msg.task) or Task.TEXT_GENERATION,
        context_length=msg.context_length,
        quantization=QUANTIZATION.name(msg.quantization) or "none",
        adapters=list(msg.adapters),
        loaded=msg.loaded,
        source=msg.source,
        chat=msg.chat,
        aliases=list(msg.aliases),
        backend=msg.backend,
        unsupported=dict(msg.unsupported_features),
        dimensions=msg.dimensions,
        matryoshka=list(msg.matryoshka_dimensions),
        pooling=msg.pooling,
        description=msg.description,
        created=msg.created.ToDatetime(timezone.utc) if msg.HasField("created") else None,
        base_model=msg.base_model,
        provider=msg.provider,
        trained_by=msg.trained_by,
    )


def features_to_proto(features: Features) -> capabilities_pb2.GenerationFeatures:
    return capabilities_pb2.GenerationFeatures(
        streaming=features.streaming,
        **{flag: getattr(features, flag) for flag in FEATURE_FLAGS},
        sampling_params=sorted(features.sampling_params),
    )


def features_from_proto(msg: capabilities_pb2.GenerationFeatures) -> Features:
    return Features(streaming=msg.streaming, **{flag: getattr(msg, flag) for flag in FEATURE_FLAGS},
                    sampling_params=frozenset(msg.sampling_params))


def load_to_proto(load: LoadInfo) -> capabilities_pb2.Load:
    return capabilities_pb2.Load(**load.__dict__)
