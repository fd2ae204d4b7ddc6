"""POST /v1/embeddings (OpenAI's API) and POST /v1/rerank, /v2/rerank, /rerank (the API vLLM and llama-server serve)
over the contract's Embed and Rerank."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from . import convert_embeddings as convert
from .responses import documented
from .schemas_embeddings import EmbeddingList, EmbeddingRequest, Reranked, RerankRequest
from .upstream import Upstream, answer, call_metadata, upstream

router = APIRouter(tags=["retrieval"])
STATUSES = (400, 401, 403, 404, 409, 413, 415, 429, 500, 501, 503, 504)


@router.post("/v1/embeddings", response_model=None, responses=documented(EmbeddingList, statuses=STATUSES))
async def embeddings(body: EmbeddingRequest, request: Request, target: Upstream = Depends(upstream)) -> JSONResponse:
    """Vectors of a text, a list of texts or token-id inputs, from an embedding model."""
    call = target.backend.Embed(convert.embed_request(body), metadata=call_metadata(request),
                                timeout=target.settings.generation_timeout_seconds)
    response = await answer(request, call, convert.param_mapper(body))
    return JSONResponse(convert.embedding_list(response, body.encoding_format))


@router.post("/v1/rerank", response_model=None, responses=documented(Reranked, statuses=STATUSES))
@router.post("/v2/rerank", response_model=None, responses=documented(Reranked, statuses=STATUSES))
@router.post("/rerank", response_model=None, responses=documented(Reranked, statuses=STATUSES))
async def rerank(body: RerankRequest, request: Request, target: Upstream = Depends(upstream)) -> JSONResponse:
    """Documents scored against a query by a rerank model, most relevant first."""
    call = target.backend.Rerank(convert.rerank_request(body), metadata=call_metadata(request),
                                 timeout=target.settings.generation_timeout_seconds)
    response = await answer(request, call, convert.param_mapper(body))
    return JSONResponse(convert.reranked(response, f"rerank-{uuid.uuid4().hex}", body.return_documents))
