"""Settings of the Unsloth trainer service: the TRL trainer's, plus how Unsloth loads and where it may run."""

from __future__ import annotations

from pydantic import Field

from forgeway.services.trl.settings import TRLSettings

# model_type values with an Unsloth fast path (unsloth/models/*.py and its CPU backend's chunked-loss families).
ARCHITECTURES = ["llama", "mistral", "mixtral", "gemma", "gemma2", "gemma3", "gemma3_text", "qwen2", "qwen3",
                 "qwen3_moe", "cohere", "granite", "falcon_h1", "glm4_moe", "llama4", "llama4_text", "phi3", "olmo2",
                 "smollm3"]


class UnslothSettings(TRLSettings):
    """Settings of the Unsloth trainer (`forgeway serve unsloth`, from .venv-unsloth)."""

    cpu_fallback: bool = Field(
        True, description="Without a CUDA device, train on Unsloth's CPU path (SFT only, reported in Capabilities); "
        "false: stay unavailable (NOT_SERVING) so the gateway falls back to trl.",
    )
    probe_timeout_seconds: float = Field(
        180.0, gt=0, description="How long the start-up probe may take to import unsloth in a child process.",
    )
    architectures: list[str] = Field(
        default_factory=lambda: list(ARCHITECTURES),
        description="Model types (config.json model_type) Unsloth trains; any other base model is INVALID_ARGUMENT.",
    )
    gradient_checkpointing: str = Field(
        "unsloth", pattern="^(unsloth|true|false)$",
        description="Unsloth's gradient checkpointing: unsloth (its offloaded variant), true (plain) or false.",
    )
    default_max_seq_length: int = Field(
        2048, ge=8, description="The sequence length FastLanguageModel is loaded for when a request sets none.",
    )
