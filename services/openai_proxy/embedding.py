"""Embed and Rerank through the upstream: /v1/embeddings as OpenAI serves it, and a Cohere/Jina-shaped rerank endpoint.

What OpenAI's embeddings API cannot do is refused before the call: vectors that are not unit length (normalize
false) and truncation (it answers an over-long input with a 400). The upstream reports tokens per call, not per input,
so the result carries the call's total.
"""

from __future__ import annotations

import base64
import math
import struct
from typing import Any

from forgeway.core.embeddings import Embedding, EmbeddingRequest, EmbeddingResult, RerankRequest, RerankResult
from forgeway.core.errors import Internal, Unsupported
from forgeway.core.generation import Task
from forgeway.server import metrics

from .settings import UpstreamModel

BACKEND = "openai"
UNIT = 1e-3  # how far from length 1 a vector may be and still count as normalized


def retrieval_rpcs(models: list[UpstreamModel]) -> tuple[str, ...]:
    """Embed and Rerank where a configured model serves them (models listed by the upstream all generate)."""
    tasks = {m.task for m in models}
    return tuple(rpc for rpc, task in (("Embed", Task.EMBEDDING), ("Rerank", Task.RERANK)) if task in tasks)


def _refuse_truncation(truncation: str) -> None:
    if truncation != "none":
        raise Unsupported("truncation", BACKEND, "the upstream API cuts no input; an over-long input is its 400")


def embed_kwargs(request: EmbeddingRequest, model: UpstreamModel) -> dict[str, Any]:
    """Keyword arguments of client.embeddings.create for an admitted request."""
    if request.normalize is False:
        raise Unsupported("normalize", BACKEND, "the upstream's vectors come as it makes them (OpenAI's are unit "
                                                "length); the proxy cannot undo a normalization")
    _refuse_truncation(request.truncation)
    inputs = list(request.texts) if request.texts else [list(ids) for ids in request.token_ids]
    kwargs: dict[str, Any] = {"model": model.upstream_name, "input": inputs, "encoding_format": "base64"}
    if request.dimensions is not None and request.dimensions != model.dimensions:
        kwargs["dimensions"] = request.dimensions  # the full length is not sent: vLLM refuses it for other models
    if request.user:
        kwargs["user"] = request.user
    return kwargs


def decode(vector: str | list[float]) -> list[float]:
    """A vector as base64 of little-endian float32 (what OpenAI sends for encoding_format base64), or as floats
    (upstreams that ignore encoding_format)."""
    if not isinstance(vector, str):
        if not all(isinstance(v, (int, float)) for v in vector):
            raise Internal("the upstream answered a vector that is not a list of numbers (per-token vectors of a "
                           "model without pooling?)")
        return [float(v) for v in vector]
    raw = base64.b64decode(vector)
    if len(raw) % 4:
        raise Internal(f"the upstream answered a base64 vector of {len(raw)} bytes, not float32s")
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))


def _unit(values: list[float]) -> list[float]:
    norm = math.sqrt(sum(v * v for v in values))
    return [v / norm for v in values] if norm else values


def _shape(values: list[float], request: EmbeddingRequest) -> list[float]:
    """Cut to the requested length where the upstream ignored `dimensions` (llama.cpp's server), renormalizing as
    OpenAI does when the full vector was unit length; unit length wherever the request asked for it."""
    wanted = request.dimensions
    if wanted is not None and len(values) != wanted:
        if len(values) < wanted:
            raise Internal(f"the upstream answered {len(values)}-dimensional vectors for dimensions={wanted}")
        was_unit = abs(math.sqrt(sum(v * v for v in values)) - 1) < UNIT
        values = values[:wanted]
        if was_unit:
            values = _unit(values)
    return _unit(values) if request.normalize else values


def embedding_result(response: Any, request: EmbeddingRequest, model: UpstreamModel, served_by: str) -> EmbeddingResult:
    """The contract's result from the upstream's CreateEmbeddingResponse: vectors in input order, the call's tokens."""
    data = sorted(response.data or [], key=lambda d: d.index)
    if [d.index for d in data] != list(range(request.size)):
        raise Internal(f"the upstream answered {len(data)} embeddings for {request.size} inputs")
    embeddings = [Embedding(d.index, _shape(decode(d.embedding), request)) for d in data]
    usage = response.usage
    tokens = (usage.prompt_tokens or usage.total_tokens or 0) if usage else 0
    metrics.TOKENS.labels(BACKEND, model.name, "prompt").inc(tokens)
    return EmbeddingResult(model.name, embeddings, served_by=served_by, total_tokens=tokens)


def rerank_body(request: RerankRequest, model: UpstreamModel) -> dict[str, Any]:
    """The JSON body for the rerank endpoint: every document scored (the contract's result sorts, cuts to top_n and
    echoes texts itself, so top_n and return_documents are not sent)."""
    _refuse_truncation(request.truncation)
    return {"model": model.upstream_name, "query": request.query, "documents": list(request.documents)}


def rerank_result(body: Any, request: RerankRequest, model: UpstreamModel, served_by: str) -> RerankResult:
    """Scores in document order from {results: [{index, relevance_score}], usage?}, the Cohere/Jina/vLLM shape."""
    results = body.get("results") if isinstance(body, dict) else None
    if not isinstance(results, list):
        raise Internal("the upstream's rerank answer has no results list")
    scores: list[float | None] = [None] * request.size
    for item in results:
        index = item.get("index") if isinstance(item, dict) else None
        score = item.get("relevance_score") if isinstance(item, dict) else None
        if not isinstance(index, int) or not 0 <= index < request.size or not isinstance(score, (int, float)):
            raise Internal(f"the upstream's rerank answer has a malformed result: {str(item)[:200]}")
        scores[index] = float(score)
    missing = [i for i, s in enumerate(scores) if s is None]
    if missing:
        raise Internal(f"the upstream scored {request.size - len(missing)} of {request.size} documents "
                       f"(document {missing[0]} missing)")
    usage = body.get("usage") if isinstance(body.get("usage"), dict) else {}
    tokens = int(usage.get("prompt_tokens") or usage.get("total_tokens") or 0)
    metrics.TOKENS.labels(BACKEND, model.name, "prompt").inc(tokens)
    return RerankResult(model.name, scores, tokens, served_by=served_by, request=request)
