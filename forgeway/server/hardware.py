"""What machine a service runs on and which libraries it has: accelerator (NVML, or torch where the process already
imported it), RAM, cores, the disk under the model store, ModelForge's profile and per-task recommendations."""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import psutil

from forgeway.core.profiles import Recommendation, advice, profile_of, recommendation_to_proto
from forgeway.v1 import capabilities_pb2


@dataclass
class Accelerator:
    device: str  # "cuda" or "mps"
    name: str
    count: int
    memory_total: int
    memory_free: int
    driver_version: str = ""
    cuda_version: str = ""


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
    disk_free: int = 0
    disk_total: int = 0
    accelerator_count: int = 0
    driver_version: str = ""
    cuda_version: str = ""
    recommendations: tuple[Recommendation, ...] = field(default_factory=tuple)


def detect(store: Path | None = None) -> Hardware:
    """Read the machine now; `store` is the model store whose filesystem's free space is reported. Uses torch only
    when this process already imported it (the gateway and llama.cpp never do), NVML where the driver has it."""
    memory = psutil.virtual_memory()
    gpu = _torch_accelerator(memory) or _nvml_accelerator()
    if gpu is not None and gpu.device == "cuda" and not gpu.driver_version:
        nvml = _nvml_accelerator()
        if nvml is not None:
            gpu.driver_version, gpu.cuda_version = nvml.driver_version, nvml.cuda_version
    device = gpu.device if gpu else "cpu"
    profile = profile_of(device, gpu.memory_total if gpu else 0, memory.total)
    profile_advice = advice(profile)
    disk = disk_usage(store) if store is not None else None
    return Hardware(
        device=device,
        accelerator=gpu.name if gpu else "",
        accelerator_memory_total=int(gpu.memory_total) if gpu else 0,
        accelerator_memory_free=int(gpu.memory_free) if gpu else 0,
        ram_total=int(memory.total),
        ram_available=int(memory.available),
        cpu_cores=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1),
        profile=profile,
        recommendation=profile_advice.advice,
        disk_free=disk.free if disk else 0,
        disk_total=disk.total if disk else 0,
        accelerator_count=gpu.count if gpu else 0,
        driver_version=gpu.driver_version if gpu else "",
        cuda_version=gpu.cuda_version if gpu else "",
        recommendations=profile_advice.recommendations,
    )


class DiskUsage(NamedTuple):
    total: int
    free: int


def disk_usage(path: Path) -> DiskUsage:
    """Total and free bytes of the filesystem that holds `path` (or would: its nearest existing folder)."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    usage = shutil.disk_usage(path)
    return DiskUsage(usage.total, usage.free)


def _torch_accelerator(memory) -> Accelerator | None:
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    if torch.cuda.is_available():
        free, total = torch.cuda.mem_get_info(0)
        return Accelerator("cuda", torch.cuda.get_device_name(0), torch.cuda.device_count(), int(total), int(free))
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():  # unified memory: the system's, as ModelForge counts it
        return Accelerator("mps", "Apple M-series (MPS)", 1, int(memory.total), int(memory.available))
    return None


def _nvml_accelerator() -> Accelerator | None:
    """The first visible NVIDIA GPU through NVML (nvidia-ml-py), honouring CUDA_VISIBLE_DEVICES; None without one."""
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:  # no driver: no NVIDIA GPU here
        return None
    try:
        handles = _visible_handles(pynvml)
        if not handles:
            return None
        info = pynvml.nvmlDeviceGetMemoryInfo(handles[0])
        cuda = pynvml.nvmlSystemGetCudaDriverVersion_v2()
        return Accelerator("cuda", _text(pynvml.nvmlDeviceGetName(handles[0])), len(handles), int(info.total),
                           int(info.free), _text(pynvml.nvmlSystemGetDriverVersion()),
                           f"{cuda // 1000}.{cuda % 1000 // 10}")
    except pynvml.NVMLError:
        return None
    finally:
        pynvml.nvmlShutdown()


def _visible_handles(pynvml) -> list:
    """NVML handles of the GPUs this process may use."""
    handles = []
    for entry in visible_devices(os.environ.get("CUDA_VISIBLE_DEVICES"), pynvml.nvmlDeviceGetCount()):
        try:
            handles.append(pynvml.nvmlDeviceGetHandleByIndex(entry) if isinstance(entry, int)
                           else pynvml.nvmlDeviceGetHandleByUUID(entry))
        except pynvml.NVMLError:  # an unknown UUID ends the list, as in CUDA
            break
    return handles


def visible_devices(listed: str | None, count: int) -> list[int | str]:
    """The devices CUDA_VISIBLE_DEVICES (`listed`; None when unset) leaves visible of `count`, as indexes or GPU
    UUIDs in the order listed; like CUDA, the list ends at the first entry that names no device."""
    if listed is None:
        return list(range(count))
    devices: list[int | str] = []
    for entry in (e.strip() for e in listed.split(",")):
        if entry.isdigit() and int(entry) < count and int(entry) not in devices:
            devices.append(int(entry))
        elif entry.startswith("GPU-"):
            devices.append(entry)
        else:
            break
    return devices


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


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
    fields = {k: v for k, v in hw.__dict__.items() if k != "recommendations"}
    return capabilities_pb2.Hardware(**fields, recommendations=[recommendation_to_proto(r) for r in hw.recommendations])
