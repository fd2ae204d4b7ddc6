"""LlamaForge's model parameters, split into LoadModel options and generation parameters for the SDK."""

from __future__ import annotations

from typing import Any

# LlamaForge generation parameter -> SDK keyword (Forgeway's sampling names).
GENERATION = {"temperature": "temperature", "top_p": "top_p", "top_k": "top_k", "min_p": "min_p",
              "max_tokens": "max_tokens", "max_new_tokens": "max_tokens", "stop": "stop", "seed": "seed",
              "repeat_penalty": "repetition_penalty", "repetition_penalty": "repetition_penalty",
              "presence_penalty": "presence_penalty", "frequency_penalty": "frequency_penalty", "do_sample": None}
# LlamaForge backend name -> Forgeway backend kind (what LoadModel's options["backend"] routes by).
KINDS = {"llama.cpp": "llamacpp", "huggingface": "hf", "openai": "openai"}
# LlamaForge load parameter -> the LoadModel option each kind calls it (agreed names: hf max_length, llama.cpp n_ctx).
LOAD_RENAMES = {"llamacpp": {"context_length": "n_ctx"}, "hf": {"context_length": "max_length"}}


def split(kind: str, parameters: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(LoadModel options, generation parameters) of a model's parameters for a backend kind; None values dropped."""
    renames = LOAD_RENAMES.get(kind, {})
    options = {renames.get(k, k): v for k, v in parameters.items() if k not in GENERATION and v is not None}
    generation = {k: v for k, v in parameters.items() if k in GENERATION and v is not None}
    return options, generation


def sampling(parameters: dict[str, Any]) -> dict[str, Any]:
    """Generation parameters -> SDK keyword arguments; unknown ones are refused, not dropped. do_sample=False (Hugging
    Face's switch to greedy decoding, which then ignores temperature) is temperature 0."""
    unknown = sorted(set(parameters) - set(GENERATION))
    if unknown:
        known = ", ".join(k for k in GENERATION)
        raise ValueError(f"unknown generation parameters: {', '.join(unknown)} (known: {known})")
    values = {GENERATION[k]: v for k, v in parameters.items() if v is not None and GENERATION[k]}
    if parameters.get("do_sample") is False:
        values["temperature"] = 0.0
    return values


def normalised(parameters: dict[str, Any]) -> dict[str, Any]:
    """LlamaForge's other spellings (max_new_tokens, repeat_penalty) renamed, so that layers merge by meaning."""
    renames = {"max_new_tokens": "max_tokens", "repeat_penalty": "repetition_penalty"}
    return {renames.get(k, k): v for k, v in parameters.items()}
