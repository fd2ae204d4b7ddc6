"""The first generation each model runs before the service reports SERVING."""

from __future__ import annotations

from forgeway.core.embeddings import EmbeddingRequest, RerankRequest
from forgeway.core.generation import GenerationRequest, Sampling, Task

TEXT = "Forgeway warms up the model before it serves."


def warm_up_request(model: str, task: Task) -> GenerationRequest | EmbeddingRequest | RerankRequest:
    """A short request exercising the model's whole path (tokenize, prefill, decode, detokenize; or one pass)."""
    if task == Task.EMBEDDING:
        return EmbeddingRequest(model=model, texts=(TEXT,), truncation="end")
    if task == Task.RERANK:
        return RerankRequest(model=model, query="Who warms up?", documents=(TEXT,), truncation="end")
    sampling = Sampling(max_tokens=2)
    if task == Task.SUMMARIZATION:
        return GenerationRequest(model=model, document=TEXT, sampling=sampling)
    if task == Task.EXTRACTIVE_QA:
        return GenerationRequest(model=model, question="Who warms up?", context=TEXT, sampling=sampling)
    return GenerationRequest(model=model, prompt=TEXT, sampling=sampling)
