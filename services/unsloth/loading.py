"""Loading a base model the Unsloth way: FastLanguageModel.from_pretrained (4-bit for QLoRA), then get_peft_model.
Everything after this (trainers, callbacks, export) is the TRL service's."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported at run time only after unsloth, which must patch transformers/trl/peft first
    from forgeway.services.trl.plan import RunPlan

    from .settings import UnslothSettings

CHECKPOINTING = {"unsloth": "unsloth", "true": True, "false": False}


def max_seq_length(plan: RunPlan, settings: UnslothSettings) -> int:
    """What FastLanguageModel is loaded for: the request's max_seq_length, prompt plus completion for online RL."""
    spec = plan.spec
    if plan.max_seq_length:
        return plan.max_seq_length
    if spec.max_prompt_length or spec.max_completion_length:
        return (spec.max_prompt_length or 512) + (spec.max_completion_length or 256)
    return settings.default_max_seq_length


def dtype_for(precision: str):
    """The weights' dtype; auto leaves it to Unsloth (bf16 where the device has it, else fp16 on CUDA)."""
    import torch

    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}.get(precision)


def load_for_training(plan: RunPlan, settings: UnslothSettings):
    """(model, tokenizer): the base patched by Unsloth, 4-bit nf4 when quantized, with LoRA adapters when asked
    (without LoRA: full fine-tuning)."""
    from unsloth import FastLanguageModel

    spec = plan.spec
    checkpointing = CHECKPOINTING[settings.gradient_checkpointing]
    model, tokenizer = FastLanguageModel.from_pretrained(
        model_name=plan.base.path, max_seq_length=max_seq_length(plan, settings), dtype=dtype_for(spec.precision),
        load_in_4bit=spec.quantization != "none", full_finetuning=spec.lora is None,
        use_gradient_checkpointing=checkpointing,
    )
    tokenizer = getattr(tokenizer, "tokenizer", tokenizer)  # a processor for multimodal checkpoints: its text part
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if spec.lora is None:
        return model, tokenizer
    targets = {"target_modules": list(spec.lora.target_modules)} if spec.lora.target_modules else {}
    model = FastLanguageModel.get_peft_model(
        model, r=spec.lora.r, lora_alpha=spec.lora.alpha, lora_dropout=spec.lora.dropout, bias=settings.lora_bias,
        use_gradient_checkpointing=checkpointing, random_state=spec.seed if spec.seed is not None else 3407,
        **targets,
    )
    return model, tokenizer
