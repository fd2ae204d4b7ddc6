"""The echo backend's embeddings: a hashed bag of words, so texts sharing words point the same way. Deterministic and
model-free like the rest of echo; it exercises the Embed and Rerank paths (limits, truncation, Matryoshka cuts) with
no model to load."""

from __future__ import annotations

import math
import re
import zlib

from forgeway.core.embeddings import Embedding, EmbeddingRequest, RerankRequest, too_long

WORD = re.compile(r"\w+")


def words_of(request: EmbeddingRequest) -> list[list[str]]:
    """Each input's words: a text's words lower-cased, a token-id list's ids as words."""
    if request.token_ids:
        return [[str(i) for i in ids] for ids in request.token_ids]
    return [WORD.findall(text.lower()) or [text] for text in request.texts]


def fit(words: list[str], index: int, limit: int, truncation: str, where: str = "input") -> tuple[list[str], bool]:
    """The words a model with a `limit`-word input reads: all, cut at one end, or the table's error."""
    if len(words) <= limit:
        return words, False
    if truncation == "none":
        raise too_long(index, len(words), limit, where)
    return (words[:limit] if truncation == "end" else words[-limit:]), True


def vector(words: list[str], dimensions: int) -> list[float]:
    """A signed hashed bag of words, `dimensions` long, not normalized."""
    values = [0.0] * dimensions
    for word in words:
        h = zlib.crc32(word.encode())
        values[h % dimensions] += 1.0 if (h >> 16) & 1 else -1.0
    return values


def unit(values: list[float]) -> list[float]:
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [v / norm for v in values]


def embed(request: EmbeddingRequest, dimensions: int, limit: int) -> list[Embedding]:
    out = []
    for i, words in enumerate(words_of(request)):
        read, truncated = fit(words, i, limit, request.truncation)
        values = vector(read, dimensions)[: request.dimensions or dimensions]
        out.append(Embedding(i, values if request.normalize is False else unit(values), len(read), truncated))
    return out


def scores(request: RerankRequest, dimensions: int, limit: int) -> tuple[list[float], int]:
    """Cosine of query and document vectors mapped to 0..1, in document order; and the words read."""
    query = WORD.findall(request.query.lower())
    results, tokens = [], 0
    for i, document in enumerate(request.documents):
        read, _ = fit(query + WORD.findall(document.lower()), i, limit, request.truncation, "documents")
        tokens += len(read)
        q, d = unit(vector(read[: len(query)], dimensions)), unit(vector(read[len(query):], dimensions))
        results.append((1.0 + sum(a * b for a, b in zip(q, d))) / 2.0)
    return results, tokens
