"""ModelForge's hardware detection (`POST /finetune/detect`) answered from Forgeway's Capabilities.

`detect(task)` returns ModelForge's answer shape; `router()` serves it as a FastAPI route at the paths ModelForge
used (`/finetune/detect` and `/api/finetune/detect`), body `{"task": ...}` as JSON or form data.

Mapping, ModelForge field <- Capabilities (of a trainer behind the gateway, else of the endpoint itself):

| ModelForge | Forgeway |
|---|---|
| profile ("low_end", "mid_range", "high_end") | hardware.profile ("cpu" and "low_end_gpu" -> "low_end", "mid_range_gpu", "high_end_gpu") |
| gpu_name, gpu_total_memory_gb | hardware.accelerator ("" on CPU), accelerator_memory_total |
| ram_total_gb, cpu_cores | hardware.ram_total, cpu_cores |
| available_diskspace_gb | not in Capabilities: null |
| model_recommendation, possible_options | the endpoint's models for the task (recommendation: the first, else "") |
| (Forgeway only) forgeway_profile, recommendation, device, backend | hardware.profile, hardware.recommendation, device, the backend read |
"""

# No `from __future__ import annotations`: FastAPI reads the route handler's annotations (Request) at run time.
from typing import Any

from forgeway.client import APIError, Client
from forgeway.client.types import Capabilities
from forgeway.core.generation import TRAINED_TASKS

PROFILES = {"cpu": "low_end", "low_end_gpu": "low_end", "mid_range_gpu": "mid_range", "high_end_gpu": "high_end"}
GB = 1024**3


def detect(task: str = "text-generation", *, client: Client | None = None, target: str | None = None) -> dict[str, Any]:
    """ModelForge's /finetune/detect answer; ValueError for a task it does not know."""
    tasks = [t.value for t in TRAINED_TASKS]
    if task not in tasks:
        raise ValueError(f"Invalid task {task!r}; choose from {', '.join(tasks)}")
    caps = (client or Client(target)).capabilities()
    source = _trainer(caps)
    hw = source.hardware
    options = [m.name for m in caps.models if m.task in ("", task)]
    return {
        "status_code": 200,
        "profile": PROFILES.get(hw.profile, hw.profile),
        "task": task,
        "gpu_name": hw.accelerator or None,
        "gpu_total_memory_gb": round(hw.accelerator_memory_total / GB, 2),
        "ram_total_gb": round(hw.ram_total / GB, 2),
        "available_diskspace_gb": None,
        "cpu_cores": hw.cpu_cores,
        "model_recommendation": options[0] if options else "",
        "possible_options": options,
        "forgeway_profile": hw.profile,
        "recommendation": hw.recommendation,
        "device": hw.device,
        "backend": source.backend,
    }


def _trainer(caps: Capabilities) -> Capabilities:
    """The machine that would fine-tune: an available trainer behind the gateway, else the endpoint itself."""
    trainers = [e.capabilities for e in caps.endpoints if e.capabilities.training.methods]
    available = [c for c in trainers if c.available]
    return (available or trainers or [caps])[0]


def router(client: Client | None = None, target: str | None = None):
    """A FastAPI router serving POST /finetune/detect and /api/finetune/detect (JSON or form body with "task")."""
    from fastapi import APIRouter, HTTPException, Request

    routes = APIRouter()
    sdk = client or Client(target)

    async def handler(request: Request) -> dict[str, Any]:
        if request.headers.get("content-type", "").startswith("application/json"):
            body = await request.json()
        else:
            body = dict(await request.form())
        try:
            return await _in_thread(detect, str((body or {}).get("task", "text-generation")), client=sdk)
        except ValueError as error:
            raise HTTPException(status_code=400, detail=str(error)) from None
        except APIError as error:  # the error table's HTTP status (503 when the gateway is down, ...)
            raise HTTPException(status_code=error.http_status, detail=error.message) from None

    for path in ("/finetune/detect", "/api/finetune/detect"):
        routes.add_api_route(path, handler, methods=["POST"])
    return routes


async def _in_thread(function, *args, **kwargs):
    import asyncio

    return await asyncio.to_thread(function, *args, **kwargs)
