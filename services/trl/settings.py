"""Settings of the TRL trainer service."""

from __future__ import annotations

from pydantic import Field

from forgeway.services.training.engine import TrainingSettings


class TRLSettings(TrainingSettings):
    """Settings of the TRL trainer (`forgeway serve trl`)."""

    min_dataset_rows: int = Field(
        10, ge=1, description="Fewest training examples a dataset may have (after selection); 10 is ModelForge's "
        "minimum and OpenAI fine-tuning's.",
    )
    eval_fraction: float = Field(
        0.0, ge=0, lt=1, description="Carve this fraction of the training rows out for evaluation when no eval dataset "
        "is given (0: no evaluation unless one is given).",
    )
    eval_steps: int = Field(0, ge=0, description="Evaluate every this many steps (0: only at the end).")
    log_every_steps: int = Field(1, ge=1, description="Send a progress event every this many optimizer steps.")
    lora_bias: str = Field("none", pattern="^(none|all|lora_only)$", description="Which biases LoRA trains.")
    keep_checkpoints: bool = Field(
        False, description="Keep a succeeded job's checkpoints (failed and cancelled jobs always keep theirs)."
    )
    torch_threads: int = Field(0, ge=0, description="CPU threads torch uses (0: torch's default).")
