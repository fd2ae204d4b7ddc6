"""The Overview page: every endpoint behind the gateway (health, availability, breaker, load, models) and the
hardware of each service with its ModelForge profile and recommendations."""

from __future__ import annotations

import grpc
import gradio as gr

from forgeway.core.enums import QUANTIZATION, TASK
from forgeway.v1 import capabilities_pb2

from .connection import Console
from .formatting import fields, size

ENDPOINT_COLUMNS = ["endpoint", "backend", "health", "available", "reason", "breaker", "in flight", "queue", "models"]
HARDWARE_COLUMNS = ["endpoint", "device", "accelerator", "its memory free / total", "RAM available / total", "cores",
                    "disk free", "profile"]
RECOMMENDATION_COLUMNS = ["endpoints", "profile", "task", "model", "alternatives", "hyperparameters", "LoRA",
                          "quantization"]
RECOMMENDATION_WIDTHS = ["170px", "80px", "190px", "280px", "320px", "420px", "260px", "100px"]
REFRESH_SECONDS = 10


def summary(caps: capabilities_pb2.CapabilitiesResponse) -> str:
    state = "available" if caps.availability.available else "unavailable"
    return f"**Gateway {caps.version}**: {state}: {caps.availability.reason}"


def _label(status: capabilities_pb2.EndpointStatus) -> str:
    return status.address


def endpoint_rows(caps: capabilities_pb2.CapabilitiesResponse) -> list[list]:
    rows = []
    for status in caps.endpoints:
        c = status.capabilities
        models = ", ".join(f"{m.name}{'' if m.loaded else ' (not loaded)'}" for m in c.models)
        rows.append([_label(status), c.backend, status.health, "yes" if c.availability.available else "no",
                     c.availability.reason, status.breaker, c.load.in_flight, c.load.queue_depth, models])
    return rows


def hardware_rows(caps: capabilities_pb2.CapabilitiesResponse) -> list[list]:
    rows = []
    for status in caps.endpoints:
        hw = status.capabilities.hardware
        if not status.capabilities.HasField("hardware"):
            continue
        accelerator = hw.accelerator + (f" x{hw.accelerator_count}" if hw.accelerator_count > 1 else "")
        memory = (f"{size(hw.accelerator_memory_free)} / {size(hw.accelerator_memory_total)}"
                  if hw.accelerator_memory_total else "")
        ram = f"{size(hw.ram_available)} / {size(hw.ram_total)}" if hw.ram_total else ""
        rows.append([_label(status), hw.device, accelerator, memory, ram, hw.cpu_cores, size(hw.disk_free),
                     hw.profile])
    return rows


def profile_advice(caps: capabilities_pb2.CapabilitiesResponse) -> str:
    """Each profile's advice once, naming the endpoints that have it."""
    by_advice: dict[tuple[str, str], list[str]] = {}
    for status in caps.endpoints:
        hw = status.capabilities.hardware
        if hw.recommendation:
            by_advice.setdefault((hw.profile, hw.recommendation), []).append(_label(status))
    return "\n".join(f"- **{profile}** ({', '.join(where)}): {advice}" for (profile, advice), where in by_advice.items())


def recommendation_rows(caps: capabilities_pb2.CapabilitiesResponse) -> list[list]:
    """One row per distinct recommendation, naming every endpoint that gives it (services on one machine agree)."""
    where: dict[tuple, list[str]] = {}
    for status in caps.endpoints:
        hw = status.capabilities.hardware
        for r in hw.recommendations:
            quantization = QUANTIZATION.name(r.quantization.quantization) if r.HasField("quantization") else ""
            row = (hw.profile, TASK.name(r.task), r.model, ", ".join(r.alternatives), fields(r.hyperparameters),
                   fields(r.lora), quantization)
            where.setdefault(row, []).append(_label(status))
    return [[", ".join(endpoints), *row] for row, endpoints in where.items()]


def build(console: Console) -> dict[str, gr.Component]:
    gr.Markdown("### Backends\nEvery endpoint behind the gateway, as the gateway routes to it.")
    status = gr.Markdown(elem_id="overview-status")
    endpoints = gr.Dataframe(headers=ENDPOINT_COLUMNS, interactive=False, wrap=True, elem_id="overview-endpoints")
    gr.Markdown("### Hardware\nEach service's machine and its ModelForge profile.")
    hardware = gr.Dataframe(headers=HARDWARE_COLUMNS, interactive=False, wrap=True, elem_id="overview-hardware")
    advice = gr.Markdown(elem_id="overview-advice")
    gr.Markdown("### Recommendations\nWhat to train on each profile (the Train page starts from these).")
    recommendations = gr.Dataframe(headers=RECOMMENDATION_COLUMNS, interactive=False, wrap=True,
                                   column_widths=RECOMMENDATION_WIDTHS,
                                   elem_id="overview-recommendations")
    refresh = gr.Button("Refresh", size="sm", elem_id="overview-refresh")
    timer = gr.Timer(REFRESH_SECONDS)

    async def load(request: gr.Request):
        try:
            caps = await console.backend.Capabilities(capabilities_pb2.CapabilitiesRequest(),
                                                      metadata=console.metadata(request), timeout=10)
        except grpc.aio.AioRpcError as error:
            return f"Could not read the gateway's capabilities: {console.error_text(error)}", [], [], "", []
        return (summary(caps), endpoint_rows(caps), hardware_rows(caps), profile_advice(caps),
                recommendation_rows(caps))

    outputs = [status, endpoints, hardware, advice, recommendations]
    gr.on([refresh.click, timer.tick], load, outputs=outputs, show_progress="hidden")
    gr.on(None, load, outputs=outputs)  # on page load
    return {"status": status, "endpoints": endpoints, "hardware": hardware, "refresh": refresh}
