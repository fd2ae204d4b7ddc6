"""The gateway's own Capabilities: every endpoint's status, and the models and features they add up to."""

from __future__ import annotations

import platform
from collections.abc import Iterable

from forgeway import __version__
from forgeway.core.models import FEATURE_FLAGS
from forgeway.server.hardware import detect, hardware_to_proto
from forgeway.v1 import capabilities_pb2, models_pb2

from .endpoint import Endpoint
from .settings import GatewaySettings

# Every RPC the gateway forwards.
GATEWAY_RPCS = [
    *(f"forgeway.v1.BackendService/{m}" for m in ("Capabilities", "Generate", "GenerateStream", "Train", "CreateJob",
                                                        "Embed", "Rerank")),
    *(f"forgeway.v1.JobService/{m}" for m in ("GetJob", "ListJobs", "ListJobEvents", "WatchJob", "CancelJob")),
    *(f"forgeway.v1.DatasetService/{m}" for m in ("UploadDataset", "GetDataset", "ListDatasets")),
    *(f"forgeway.v1.ModelService/{m}" for m in ("ListModels", "LoadModel", "UnloadModel", "DeleteModel",
                                                  "ExportModel", "DownloadModel", "EvaluateModel")),
]


def merged_models(
    listings: Iterable[Iterable[models_pb2.ModelInfo]], settings: GatewaySettings
) -> list[models_pb2.ModelInfo]:
    """One entry per model name over several endpoints' lists (adapters united), plus configured aliases and groups."""
    merged: dict[str, models_pb2.ModelInfo] = {}
    for listing in listings:
        for model in listing:
            if model.name not in merged:
                merged[model.name] = models_pb2.ModelInfo()
                merged[model.name].CopyFrom(model)
                continue
            known = merged[model.name]
            known.loaded = known.loaded or model.loaded
            known.adapters.extend(a for a in model.adapters if a not in known.adapters)
    for alias in settings.model_aliases:
        target = merged.get(settings.resolve_alias(alias))
        if target is not None and alias not in target.aliases:
            target.aliases.append(alias)
    for group, members in settings.model_groups.items():
        served = [merged[r] for m in members if (r := settings.resolve_alias(m.model)) in merged]
        if served and group not in merged:
            first = served[0]
            merged[group] = models_pb2.ModelInfo(
                name=group, task=first.task, context_length=min(m.context_length for m in served),
                loaded=any(m.loaded for m in served), backend="gateway", chat=all(m.chat for m in served),
                source="group: " + ", ".join(f"{m.model} ({m.weight:g})" for m in members),
                aliases=[a for a in settings.model_aliases if settings.resolve_alias(a) == group],
            )
    return list(merged.values())


def aggregate(endpoints: list[Endpoint], settings: GatewaySettings) -> capabilities_pb2.CapabilitiesResponse:
    """Capabilities of the gateway: available while any endpoint is, features and methods united, load summed."""
    serving = [e for e in endpoints if e.healthy and e.available]
    generation = capabilities_pb2.GenerationFeatures()
    methods, tasks, quantizations, formats = set(), set(), set(), set()
    sampling: set[str] = set()
    load = capabilities_pb2.Load()
    lora = False
    for endpoint in serving:
        caps = endpoint.capabilities
        for flag in ("streaming", *FEATURE_FLAGS):
            if getattr(caps.generation, flag):
                setattr(generation, flag, True)
        sampling |= set(caps.generation.sampling_params)
        methods |= set(caps.training.methods)
        tasks |= set(caps.training.tasks)
        quantizations |= set(caps.training.quantizations)
        formats |= set(caps.training.export_formats)
        lora = lora or caps.training.lora
        load.in_flight += max(caps.load.in_flight, endpoint.in_flight)
        load.queue_depth += caps.load.queue_depth
        load.max_concurrency += caps.load.max_concurrency
        load.max_queue += caps.load.max_queue
    generation.sampling_params.extend(sorted(sampling))
    reason = f"{len(serving)} of {len(endpoints)} endpoints serving"
    if not serving:
        why = "; ".join(f"{e.key}: {e.health} {e.unavailable_reason}" for e in endpoints)
        reason += ": " + (why or "none configured")
    return capabilities_pb2.CapabilitiesResponse(
        backend="gateway",
        version=__version__,
        instance_id=settings.instance_id,
        availability=capabilities_pb2.Availability(available=bool(serving), reason=reason),
        rpcs=GATEWAY_RPCS,
        models=merged_models((e.capabilities.models for e in endpoints if e.healthy and e.capabilities), settings),
        generation=generation,
        training=capabilities_pb2.TrainingFeatures(
            methods=sorted(methods), tasks=sorted(tasks), lora=lora, quantizations=sorted(quantizations),
            export_formats=sorted(formats),
        ),
        hardware=hardware_to_proto(detect(settings.home / "models")),
        load=load,
        library_versions={"python": platform.python_version(), "forgeway": __version__},
        endpoints=[e.status() for e in endpoints],
    )
