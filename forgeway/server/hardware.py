"""What machine a service runs on and which libraries it has, with a ModelForge-style profile and recommendation."""

from __future__ import annotations

import importlib.metadata
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass

import psutil

from forgeway.v1 import capabilities_pb2

GIB = 1024**3

# ModelForge's hardware classes: (profile, advice), by accelerator memory.
PROFILES = [
    (0, "cpu", "CPU only: serve GGUF models with llama.cpp or models under 1B parameters; train LoRA on tiny models."),
    (1, "low_end_gpu", "Under 8 GiB: 4-bit (nf4) models up to ~3B, LoRA with batch size 1-2."),
    (8 * GIB, "mid_range_gpu", "8-24 GiB: 4-bit models up to ~13B or fp16 up to ~7B, QLoRA with batch size 4-8."),
    (24 * GIB, "high_end_gpu", "24 GiB or more: fp16/bf16 models up to ~30B, full fine-tuning of small models."),
]


@dataclass
class Hardware:
    device: str
    accelerator: str
    accelerator_memory_total: int
    accelerator_memory_free: int
    ram_total: int
    ram_available: int
    cpu_cores: int
    profile: str
    recommendation: str


def detect() -> Hardware:
    """Read the machine now. Uses torch only when this process already imported it (llama.cpp never does)."""
    device, name, total, free = "cpu", "", 0, 0
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        device = "cuda"
        name = torch.cuda.get_device_name(0)
        free, total = torch.cuda.mem_get_info(0)
    elif torch is not None and getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        device, name = "mps", "Apple GPU"
    profile, advice = next((p, a) for limit, p, a in reversed(PROFILES) if (total if device != "cpu" else 0) >= limit)
    if device != "cpu" and total == 0:
        profile, advice = PROFILES[1][1], PROFILES[1][2]
    memory = psutil.virtual_memory()
    return Hardware(
        device=device,
        accelerator=name,
        accelerator_memory_total=int(total),
        accelerator_memory_free=int(free),
        ram_total=int(memory.total),
        ram_available=int(memory.available),
        cpu_cores=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1),
        profile=profile,
        recommendation=advice,
    )


def installed_versions(distributions: Iterable[str]) -> dict[str, str]:
    """The installed version of each named distribution, for Capabilities; one that is not installed is left out."""
    versions = {}
    for name in distributions:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def hardware_to_proto(hw: Hardware) -> capabilities_pb2.Hardware:
    return capabilities_pb2.Hardware(**hw.__dict__)
