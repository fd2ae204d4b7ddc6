"""/v1/embeddings and /v1/rerank bodies -> EmbedRequest / RerankRequest, and their replies -> the HTTP shapes."""

from __future__ import annotations

import base64
import struct
from collections.abc import Sequence

from forgeway.core.enums import TRUNCATION
from forgeway.v1 import embed_pb2

from .errors import ParamOf
from .schemas_embeddings import EmbeddingRequest, RerankRequest

# Contract fields an error may name -> the HTTP parameter that set them.
_PARAM = {"truncation": "truncate", "texts": "input", "token_ids": "input"}


def param_mapper(body: EmbeddingRequest | RerankRequest) -> ParamOf:
    """How a field named in an upstream error reads as this request's parameter: `input[0]` of a single input is
    `input`, the contract's own names are the HTTP ones."""
    single = isinstance(body, EmbeddingRequest) and body.single

    def param_of(field: str) -> str | None:
        if single and field.startswith("input[0]"):
            return "input" + field[len("input[0]"):]
        head, dot, rest = field.partition(".")
        return _PARAM.get(head, head) + dot + rest if field else None

    return param_of


def embed_request(body: EmbeddingRequest) -> embed_pb2.EmbedRequest:
    request = embed_pb2.EmbedRequest(model=body.model, truncation=TRUNCATION.value(body.truncation),
                                     backend=body.backend or "", user=body.user or "")
    inputs = [body.input] if body.single else body.input
    if inputs and not isinstance(inputs[0], str):
        request.token_ids.extend(embed_pb2.TokenIds(ids=ids) for ids in inputs)
    else:
        request.texts.extend(inputs)
    if body.dimensions is not None:
        request.dimensions = body.dimensions
    if body.normalize is not None:
        request.normalize = body.normalize
    return request


def rerank_request(body: RerankRequest) -> embed_pb2.RerankRequest:
    request = embed_pb2.RerankRequest(model=body.model, query=body.query, documents=body.texts,
                                      return_documents=body.return_documents,
                                      truncation=TRUNCATION.value(body.truncation), backend=body.backend or "")
    if body.top_n:  # 0 asks for every document, as in vLLM
        request.top_n = body.top_n
    return request


def base64_vector(values: Sequence[float]) -> str:
    """OpenAI's base64 encoding: the vector's little-endian float32 bytes."""
    return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode("ascii")


def usage(reply: embed_pb2.EmbedUsage) -> dict:
    return {"prompt_tokens": reply.prompt_tokens, "total_tokens": reply.total_tokens}


def embedding_list(response: embed_pb2.EmbedResponse, encoding_format: str) -> dict:
    """OpenAI's embedding list: one entry per input, in input order."""
    encode = base64_vector if encoding_format == "base64" else list
    data = [{"object": "embedding", "index": e.index, "embedding": encode(e.values)}
            for e in sorted(response.embeddings, key=lambda e: e.index)]
    return {"object": "list", "data": data, "model": response.model, "usage": usage(response.usage)}


def reranked(response: embed_pb2.RerankResponse, rerank_id: str, return_documents: bool) -> dict:
    """vLLM's rerank answer: results best first, each with its document's text when return_documents is set."""
    results = []
    for r in response.results:
        result: dict = {"index": r.index, "relevance_score": r.relevance_score}
        if return_documents:
            result["document"] = {"text": r.document}
        results.append(result)
    return {"id": rerank_id, "model": response.model, "usage": usage(response.usage), "results": results}
