"""Embedding and reranking requests and results, validated on the way in (from_proto), converted on the way out.

Errors name the fields as the OpenAI and rerank APIs do (`input`, `input[3]`, `documents[2]`, `top_n`), the names
users see in the HTTP shim; the proto comments say which contract field each is.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from forgeway.v1 import embed_pb2

from .enums import TRUNCATION
from .errors import InvalidArgument

# Inputs (texts, token-id lists or documents) one call may carry: OpenAI's limit for /v1/embeddings.
MAX_INPUTS = 2048


def _check_count(count: int, where: str) -> None:
    if not count:
        raise InvalidArgument(where, "required: at least one input")
    if count > MAX_INPUTS:
        raise InvalidArgument(where, f"{count} inputs; at most {MAX_INPUTS} per call (split the batch)")


@dataclass(frozen=True)
class EmbeddingRequest:
    model: str
    texts: tuple[str, ...] = ()
    token_ids: tuple[tuple[int, ...], ...] = ()
    dimensions: int | None = None
    normalize: bool | None = None
    truncation: str = "none"  # a TRUNCATION name: none (refuse), end, start
    backend: str = ""
    user: str = ""
    adapter = ""  # no adapters for embeddings; routing reads it as for generation

    @property
    def size(self) -> int:
        return len(self.texts) or len(self.token_ids)

    @classmethod
    def from_proto(cls, msg: embed_pb2.EmbedRequest) -> EmbeddingRequest:
        if not msg.model:
            raise InvalidArgument("model", "required")
        if msg.texts and msg.token_ids:
            raise InvalidArgument("input", "texts or token ids, not both")
        _check_count(len(msg.texts) or len(msg.token_ids), "input")
        for i, text in enumerate(msg.texts):
            if not text:
                raise InvalidArgument(f"input[{i}]", "empty string; every input needs at least one character")
        for i, ids in enumerate(msg.token_ids):
            if not ids.ids:
                raise InvalidArgument(f"input[{i}]", "empty token list")
        if msg.HasField("dimensions") and msg.dimensions < 1:
            raise InvalidArgument("dimensions", "must be at least 1")
        return cls(
            model=msg.model,
            texts=tuple(msg.texts),
            token_ids=tuple(tuple(t.ids) for t in msg.token_ids),
            dimensions=msg.dimensions if msg.HasField("dimensions") else None,
            normalize=msg.normalize if msg.HasField("normalize") else None,
            truncation=TRUNCATION.name(msg.truncation) or "none",
            backend=msg.backend,
            user=msg.user,
        )

    def to_proto(self) -> embed_pb2.EmbedRequest:
        msg = embed_pb2.EmbedRequest(
            model=self.model, texts=self.texts, token_ids=[embed_pb2.TokenIds(ids=ids) for ids in self.token_ids],
            truncation=TRUNCATION.value(self.truncation), backend=self.backend, user=self.user,
        )
        if self.dimensions is not None:
            msg.dimensions = self.dimensions
        if self.normalize is not None:
            msg.normalize = self.normalize
        return msg


@dataclass
class Embedding:
    index: int
    values: list[float]
    tokens: int = 0
    truncated: bool = False


@dataclass
class EmbeddingResult:
    model: str
    embeddings: list[Embedding]
    served_by: str = ""
    # The call's tokens where a backend knows only the total (an upstream API's usage); None: the inputs' sum.
    total_tokens: int | None = None

    @property
    def prompt_tokens(self) -> int:
        return self.total_tokens if self.total_tokens is not None else sum(e.tokens for e in self.embeddings)

    def to_proto(self) -> embed_pb2.EmbedResponse:
        tokens = self.prompt_tokens
        return embed_pb2.EmbedResponse(
            model=self.model,
            embeddings=[embed_pb2.Embedding(index=e.index, values=e.values, tokens=e.tokens, truncated=e.truncated)
                        for e in self.embeddings],
            usage=embed_pb2.EmbedUsage(prompt_tokens=tokens, total_tokens=tokens),
            served_by=self.served_by,
            dimensions=len(self.embeddings[0].values) if self.embeddings else 0,
        )


@dataclass(frozen=True)
class RerankRequest:
    model: str
    query: str
    documents: tuple[str, ...]
    top_n: int | None = None
    return_documents: bool = False
    truncation: str = "none"
    backend: str = ""
    adapter = ""

    @property
    def size(self) -> int:
        return len(self.documents)

    @classmethod
    def from_proto(cls, msg: embed_pb2.RerankRequest) -> RerankRequest:
        if not msg.model:
            raise InvalidArgument("model", "required")
        if not msg.query:
            raise InvalidArgument("query", "required: a non-empty query")
        _check_count(len(msg.documents), "documents")
        for i, document in enumerate(msg.documents):
            if not document:
                raise InvalidArgument(f"documents[{i}]", "empty string; every document needs at least one character")
        if msg.HasField("top_n") and msg.top_n < 1:
            raise InvalidArgument("top_n", "must be at least 1")
        return cls(
            model=msg.model, query=msg.query, documents=tuple(msg.documents),
            top_n=msg.top_n if msg.HasField("top_n") else None, return_documents=msg.return_documents,
            truncation=TRUNCATION.name(msg.truncation) or "none", backend=msg.backend,
        )

    def to_proto(self) -> embed_pb2.RerankRequest:
        msg = embed_pb2.RerankRequest(
            model=self.model, query=self.query, documents=self.documents, return_documents=self.return_documents,
            truncation=TRUNCATION.value(self.truncation), backend=self.backend,
        )
        if self.top_n is not None:
            msg.top_n = self.top_n
        return msg


@dataclass
class RerankResult:
    """Scores in document order, as the engine computed them; to_proto sorts, cuts to top_n and echoes texts."""

    model: str
    scores: list[float]
    prompt_tokens: int = 0
    served_by: str = ""
    request: RerankRequest | None = field(default=None, repr=False)

    def to_proto(self) -> embed_pb2.RerankResponse:
        order = sorted(range(len(self.scores)), key=lambda i: (-self.scores[i], i))
        request = self.request
        if request is not None and request.top_n is not None:
            order = order[: request.top_n]
        echo = request is not None and request.return_documents
        return embed_pb2.RerankResponse(
            model=self.model,
            results=[embed_pb2.RerankResult(index=i, relevance_score=self.scores[i],
                                            document=request.documents[i] if echo else "") for i in order],
            usage=embed_pb2.EmbedUsage(prompt_tokens=self.prompt_tokens, total_tokens=self.prompt_tokens),
            served_by=self.served_by,
        )


def too_long(index: int, tokens: int, limit: int, where: str = "input") -> InvalidArgument:
    """The error for an input over a model's max input length when the request does not allow truncation."""
    return InvalidArgument(f"{where}[{index}]", f"{tokens} tokens, over the model's max input length of {limit}; "
                                                f"shorten it or allow truncation")
