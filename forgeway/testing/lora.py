"""A LoRA adapter on a tiny model, built offline with peft: random, non-zero weights, so it visibly changes output."""

from __future__ import annotations

from pathlib import Path


def build_tiny_lora(base_dir: str | Path, out_dir: str | Path, seed: int = 0) -> Path:
    """Save a rank-4 peft LoRA adapter (q, v and down projections) for the causal LM in ``base_dir`` into
    ``out_dir``; returns ``out_dir``."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base_dir)
    config = LoraConfig(r=4, lora_alpha=16, target_modules=["q_proj", "v_proj", "down_proj"], init_lora_weights=False)
    get_peft_model(model, config).save_pretrained(out_dir)
    return Path(out_dir)
