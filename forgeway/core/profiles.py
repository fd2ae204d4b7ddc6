"""Hardware profiles as ModelForge classifies them, and what to train on each: per task a model from ModelForge's
curated lists and the training settings to start from (the data lies in model_recommendations/<profile>.json)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources

from forgeway.v1 import capabilities_pb2, train_pb2

from .enums import QUANTIZATION
from .generation import TRAINED_TASKS, Task

GIB = 1024**3
PROFILES = ("cpu", "low_end", "mid_range", "high_end")
# ModelForge's thresholds, in GiB (its hardware_detector.classify_hardware_profile defaults).
LOW_END_GPU_MAX = 7.2
MID_RANGE_GPU_MAX = 15.2
LOW_END_RAM_MAX = 15.2


def classify(device: str, accelerator_memory_gb: float, ram_gb: float) -> str:
    """ModelForge's profile: GPU memory under 7.2 GiB is low_end; under 15.2 GiB mid_range, but low_end with under
    15.2 GiB of RAM; more is high_end, but mid_range with under 15.2 GiB of RAM. No accelerator ("cpu"): cpu."""
    if device == "cpu":
        return "cpu"
    if accelerator_memory_gb < LOW_END_GPU_MAX:
        return "low_end"
    if accelerator_memory_gb < MID_RANGE_GPU_MAX:
        return "low_end" if ram_gb < LOW_END_RAM_MAX else "mid_range"
    return "mid_range" if ram_gb < LOW_END_RAM_MAX else "high_end"


def profile_of(device: str, accelerator_memory: int, ram: int) -> str:
    """The profile of a machine given in bytes, rounded as ModelForge rounds: GPU memory to 0.01 GiB, RAM to 1 GiB."""
    return classify(device, round(accelerator_memory / GIB, 2), round(ram / GIB))


@dataclass(frozen=True)
class TrainingDefaults:
    """Training settings to start from on a profile (ModelForge's /finetune/load_settings and SettingsBuilder)."""

    quantization: str
    batch_size: int
    gradient_accumulation_steps: int
    max_seq_length: int
    epochs: float
    learning_rate: float
    warmup_ratio: float
    lora_r: int
    lora_alpha: int
    lora_dropout: float


@dataclass(frozen=True)
class Recommendation:
    """What to train for one task on one profile: the model, the curated choices (recommended one first), settings."""

    task: Task
    model: str
    alternatives: tuple[str, ...]
    settings: TrainingDefaults


@dataclass(frozen=True)
class ProfileAdvice:
    profile: str
    advice: str
    recommendations: tuple[Recommendation, ...]

    def recommendation(self, task: Task) -> Recommendation:
        return next(r for r in self.recommendations if r.task is task)


@cache
def advice(profile: str) -> ProfileAdvice:
    """The advice and per-task recommendations of a profile (one of PROFILES; KeyError for another)."""
    if profile not in PROFILES:
        raise KeyError(f"unknown hardware profile {profile!r}; known: {', '.join(PROFILES)}")
    data = json.loads(resources.files("forgeway.core").joinpath(f"model_recommendations/{profile}.json").read_text())
    recommendations = []
    for task in TRAINED_TASKS:
        entry = data["tasks"][task.value]
        settings = {**data["settings"], **entry.get("settings", {})}
        lora = settings.pop("lora")
        recommendations.append(Recommendation(
            task=task, model=entry["primary"], alternatives=tuple(entry["alternatives"]),
            settings=TrainingDefaults(**settings, lora_r=lora["r"], lora_alpha=lora["alpha"],
                                      lora_dropout=lora["dropout"]),
        ))
    return ProfileAdvice(profile, data["advice"], tuple(recommendations))


def recommendation_to_proto(rec: Recommendation) -> capabilities_pb2.Recommendation:
    s = rec.settings
    return capabilities_pb2.Recommendation(
        task=rec.task.to_proto(), model=rec.model, alternatives=rec.alternatives,
        hyperparameters=train_pb2.Hyperparameters(
            epochs=s.epochs, batch_size=s.batch_size, gradient_accumulation_steps=s.gradient_accumulation_steps,
            learning_rate=s.learning_rate, warmup_ratio=s.warmup_ratio, max_seq_length=s.max_seq_length),
        lora=train_pb2.LoraParams(r=s.lora_r, alpha=s.lora_alpha, dropout=s.lora_dropout),
        quantization=train_pb2.QuantizationParams(quantization=QUANTIZATION.to_value[s.quantization]),
    )
