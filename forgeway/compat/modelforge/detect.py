"""ModelForge's hardware detection (`POST /finetune/detect`) answered from Forgeway's Capabilities.

`detect(task)` returns ModelForge's answer shape; `router()` serves it as a FastAPI route at the paths ModelForge
used (`/finetune/detect` and `/api/finetune/detect`), body `{"task": ...}` as JSON or form data.

Mapping, ModelForge field <- Capabilities (the hardware of an available trainer behind the gateway, else of the
endpoint itself; sizes in GiB as ModelForge counts them):

| ModelForge | Forgeway |
|---|---|
| profile ("low_end", "mid_range", "high_end"; "cpu" without accelerator) | hardware.profile (ModelForge's thresholds) |
| gpu_name, gpu_total_memory_gb, gpu_count, driver_version, cuda_version, device_type | hardware.accelerator (null on CPU), accelerator_memory_total, accelerator_count, driver_version, cuda_version, device |
| ram_total_gb (whole GiB), cpu_cores | hardware.ram_total, cpu_cores |
| available_diskspace_gb | hardware.disk_free (the trainer's model store) |
| model_recommendation, possible_options | hardware.recommendations[task]: model, alternatives (ModelForge's curated lists) |
| recommended_settings (TrainingConfig's names) | the same recommendation's hyperparameters, LoRA and quantization |
| providers, available_providers (those for the task) | ProviderRegistry.list_all() (providers.py): trl -> "huggingface", unsloth -> "unsloth" |
| (Forgeway only) recommendation, device, backend | hardware.recommendation (advice in words), device, the backend read |
"""

# No `from __future__ import annotations`: FastAPI reads the route handler's annotations (Request) at run time.
from typing import Any

from forgeway.client import APIError, Client
from forgeway.client.types import Capabilities, Recommendation
from forgeway.core.generation import TRAINED_TASKS

from .providers import ProviderRegistry

GB = 1024**3
UNSLOTH_PROFILES = ("mid_range", "high_end")  # ModelForge's provider advice by profile


def detect(task: str = "text-generation", *, client: Client | None = None, target: str | None = None) -> dict[str, Any]:
    """ModelForge's /finetune/detect answer; ValueError for a task it does not know."""
    tasks = [t.value for t in TRAINED_TASKS]
    if task not in tasks:
        raise ValueError(f"Invalid task {task!r}; choose from {', '.join(tasks)}")
    sdk = client or Client(target)
    source = _trainer(sdk.capabilities())
    hw = source.hardware
    rec = hw.recommended(task)
    providers = ProviderRegistry(sdk).list_all()
    available = [p["name"] for p in providers if p["available"] and task in p["supported_tasks"]]
    return {
        "status_code": 200,
        "profile": hw.profile,
        "task": task,
        "gpu_name": hw.accelerator or None,
        "gpu_total_memory_gb": round(hw.accelerator_memory_total / GB, 2),
        "gpu_count": hw.accelerator_count,
        "driver_version": hw.driver_version or None,
        "cuda_version": hw.cuda_version or None,
        "device_type": hw.device,
        "ram_total_gb": float(round(hw.ram_total / GB)),
        "available_diskspace_gb": round(hw.disk_free / GB, 2),
        "cpu_cores": hw.cpu_cores,
        "model_recommendation": rec.model if rec else "",
        "possible_options": list(rec.alternatives) if rec else [],
        "recommended_settings": recommended_settings(rec, hw.profile, available) if rec else {},
        "providers": providers,
        "available_providers": available,
        "recommendation": hw.recommendation,
        "device": hw.device,
        "backend": source.backend,
    }


def recommended_settings(rec: Recommendation, profile: str, providers: list[str]) -> dict[str, Any]:
    """A recommendation in ModelForge's TrainingConfig names; the provider: unsloth where ModelForge advises it
    (mid_range and high_end, text generation) and it is available, else huggingface."""
    prefer_unsloth = profile in UNSLOTH_PROFILES and rec.task == "text-generation"
    provider = "unsloth" if prefer_unsloth and "unsloth" in providers else "huggingface"
    return {
        "task": rec.task,
        "model_name": rec.model,
        "provider": provider,
        "compute_specs": profile,
        "num_train_epochs": int(rec.epochs) if float(rec.epochs).is_integer() else rec.epochs,
        "per_device_train_batch_size": rec.batch_size,
        "gradient_accumulation_steps": rec.gradient_accumulation_steps,
        "learning_rate": rec.learning_rate,
        "warmup_ratio": rec.warmup_ratio,
        "max_seq_length": rec.max_seq_length,
        "lora_r": rec.lora_r,
        "lora_alpha": rec.lora_alpha,
        "lora_dropout": rec.lora_dropout,
        "use_4bit": rec.quantization in ("nf4", "fp4"),
        "use_8bit": rec.quantization == "int8",
        "bnb_4bit_quant_type": rec.quantization if rec.quantization in ("nf4", "fp4") else "nf4",
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
