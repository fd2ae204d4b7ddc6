"""Embeddings and reranking in the SDK: request builders (keyword arguments -> EmbedRequest / RerankRequest) and the
typed results Client.embed and Client.rerank return (their conversions from the protos live in convert.py)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from forgeway.core.enums import TRUNCATION
from forgeway.v1 import embed_pb2

from .errors import invalid_argument
from .requests import named
from .types import Usage

UINT32 = 1 << 32

# What embed() takes: one text, several texts, one token-id list, or several token-id lists.
Inputs = str | Sequence[str] | Sequence[int] | Sequence[Sequence[int]]


@dataclass(frozen=True)
class Embedding:
    """The vector of input `index`; tokens is what the model read of it, truncated whether it was cut to fit."""

    index: int
    values: list[float]
    tokens: int = 0
    truncated: bool = False


@dataclass(frozen=True)
class EmbeddingResult:
    """One Embedding per input, in input order; every vector is `dimensions` long."""

    model: str
    embeddings: tuple[Embedding, ...]
    usage: Usage = Usage()
    served_by: str = ""
    dimensions: int = 0

    @property
    def vectors(self) -> list[list[float]]:
        """The vectors alone, in input order."""
        return [e.values for e in self.embeddings]


@dataclass(frozen=True)
class RankedDocument:
    """Document `index` of the request and its relevance (higher is more relevant); its text with return_documents."""

    index: int
    relevance_score: float
    document: str = ""


@dataclass(frozen=True)
class RerankResult:
    """Documents by relevance, highest first (ties in input order), cut to top_n when it was given."""

    model: str
    results: tuple[RankedDocument, ...]
    usage: Usage = Usage()
    served_by: str = ""

    @property
    def order(self) -> list[int]:
        """The documents' indices, most relevant first."""
        return [r.index for r in self.results]


def _token_ids(ids: Sequence[int], index: int) -> embed_pb2.TokenIds:
    if not all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < UINT32 for i in ids):
        raise invalid_argument(f"input[{index}]", "token ids are integers from 0 to 2**32-1")
    return embed_pb2.TokenIds(ids=list(ids))


def _inputs(request: embed_pb2.EmbedRequest, inputs: Inputs) -> None:
    """Texts or token ids into the request; an empty list goes as it is and the server answers naming `input`."""
    if isinstance(inputs, str):
        request.texts.append(inputs)
        return
    if not isinstance(inputs, Sequence):
        raise invalid_argument("input", f"a string, a list of strings or token-id lists, not {type(inputs).__name__}")
    items = list(inputs)
    if items and all(isinstance(i, int) and not isinstance(i, bool) for i in items):
        request.token_ids.append(_token_ids(items, 0))  # one token-id list (OpenAI's `input: [1, 2, 3]`)
    elif all(isinstance(i, str) for i in items):
        request.texts.extend(items)
    elif all(isinstance(i, Sequence) and not isinstance(i, str) for i in items):
        request.token_ids.extend(_token_ids(ids, n) for n, ids in enumerate(items))
    else:
        raise invalid_argument("input", "all strings or all token-id lists, not a mix")


def _truncation(value: str | None) -> int:
    return named(TRUNCATION, value, "truncation") if value is not None else 0


def _count(value: int, field: str) -> int:
    """A uint32 option as the wire carries it; a negative one cannot be sent (the server checks the rest)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < UINT32:
        raise invalid_argument(field, f"a positive integer, not {value!r}")
    return value


def embed_request(model: str, inputs: Inputs, *, dimensions: int | None = None, normalize: bool | None = None,
                  truncation: str | None = None, backend: str = "", user: str = "") -> embed_pb2.EmbedRequest:
    """An EmbedRequest: truncation "end" or "start" (None: refuse inputs over the model's length)."""
    if not model:
        raise invalid_argument("model", "required")
    request = embed_pb2.EmbedRequest(model=model, truncation=_truncation(truncation), backend=backend, user=user)
    _inputs(request, inputs)
    if dimensions is not None:
        request.dimensions = _count(dimensions, "dimensions")
    if normalize is not None:
        request.normalize = normalize
    return request


def rerank_request(model: str, query: str, documents: Iterable[str], *, top_n: int | None = None,
                   return_documents: bool = False, truncation: str | None = None,
                   backend: str = "") -> embed_pb2.RerankRequest:
    """A RerankRequest: documents are strings (a single string is refused rather than read letter by letter)."""
    if not model:
        raise invalid_argument("model", "required")
    texts = [] if isinstance(documents, str) else list(documents)
    if isinstance(documents, str) or not all(isinstance(d, str) for d in texts):
        raise invalid_argument("documents", "a list of strings")
    request = embed_pb2.RerankRequest(model=model, query=query, documents=texts,
                                      return_documents=return_documents, truncation=_truncation(truncation),
                                      backend=backend)
    if top_n is not None:
        request.top_n = _count(top_n, "top_n")
    return request
