"""Bodies of /v1/embeddings (OpenAI's shape) and /v1/rerank (the Jina/Cohere shape vLLM and llama-server serve),
with Forgeway's extras, and the shapes of their answers."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, StrictInt, model_validator

from .schemas import UINT32, Strict, Text, invalid, reject_unsupported

TokenId = Annotated[StrictInt, Field(ge=0, le=UINT32)]
# TEI's spellings of its truncation_direction values, and the same in lower case.
Direction = Literal["right", "left", "Right", "Left"]

# Parameters of vLLM's and Cohere's APIs that Forgeway does not honour: a request using one is rejected, never ignored.
RETRIEVAL_UNSUPPORTED = {
    "truncate_prompt_tokens": "vLLM's truncation to a token count (use truncate: true, with truncation_direction)",
}
RERANK_UNSUPPORTED = {
    **RETRIEVAL_UNSUPPORTED,
    "rank_fields": "Cohere's rank_fields (documents are strings or {\"text\": ...} objects)",
    "max_chunks_per_doc": "Cohere's document chunking",
    "max_tokens_per_doc": "Cohere's per-document token limit (use truncate: true)",
}


def _token(value: Any) -> bool:
    return type(value) is int and 0 <= value <= UINT32


def _input_shape(value: Any) -> bool:
    """Whether `input` is one of OpenAI's four forms (one kind of element throughout; [] is left to the core)."""
    if isinstance(value, str):
        return True
    if not isinstance(value, list):
        return False
    return (all(isinstance(v, str) for v in value) or all(_token(v) for v in value)
            or all(isinstance(v, list) and all(_token(t) for t in v) for v in value))


class Retrieval(Strict):
    """What embedding and rerank requests share: the model, the truncation switch (TEI's), the backend hint."""

    model: Text = Field(min_length=1, description="Model name or alias, as GET /v1/models lists it.")
    truncate: bool | None = Field(None, description="Forgeway extra (TEI's name): cut an input longer than the "
                                                    "model's max input length instead of answering 400.")
    truncation_direction: Direction | None = Field(
        None, description="Forgeway extra (TEI's name): which end loses tokens when truncate is true: right (the "
                          "default; keeps the start) or left (keeps the end).")
    backend: Text | None = Field(None, description="Forgeway extra: backend kind to serve on (hf, llamacpp, ...).")

    @model_validator(mode="after")
    def _direction_needs_truncate(self):
        if self.truncation_direction in ("left", "Left") and not self.truncate:
            raise invalid("truncation_direction", "truncation_direction 'left' needs truncate: true")
        return self

    @property
    def truncation(self) -> str:
        """The contract's Truncation name: none (refuse a too-long input), end or start."""
        if not self.truncate:
            return "none"
        return "start" if self.truncation_direction in ("left", "Left") else "end"


class EmbeddingRequest(Retrieval):
    """POST /v1/embeddings."""

    input: Text | list[Text] | list[TokenId] | list[list[TokenId]] = Field(
        description="A text, a list of texts, one input as token ids, or a list of token-id inputs (at most 2048 "
                    "inputs; none empty).")
    encoding_format: Literal["float", "base64"] = Field(
        "float", description="float: lists of numbers; base64: each vector's little-endian float32 bytes in base64.")
    dimensions: int | None = Field(None, ge=1, le=UINT32, description="Cut vectors to this length; only the "
                                                                      "lengths the model lists (Matryoshka).")
    user: Text | None = Field(None, description="End-user id; passed on for the backend's logs, not used to route.")
    normalize: bool | None = Field(None, description="Forgeway extra (TEI's name): scale vectors to unit length; "
                                                     "unset keeps the model's own setting.")

    @model_validator(mode="before")
    @classmethod
    def _reject_unsupported(cls, data: Any) -> Any:
        if isinstance(data, dict) and "input" in data and not _input_shape(data["input"]):
            raise invalid("input", "input must be a string, a list of strings, a list of token ids (integers from 0 "
                                   f"to {UINT32}) or a list of such lists")
        return reject_unsupported(data, RETRIEVAL_UNSUPPORTED)

    @property
    def single(self) -> bool:
        """One input (a text, or one list of token ids) rather than a list of them."""
        return isinstance(self.input, str) or bool(self.input) and isinstance(self.input[0], int)


class RerankDocument(Strict):
    """A document as an object (Cohere's and Jina's form)."""

    text: Text


class RerankRequest(Retrieval):
    """POST /v1/rerank, /v2/rerank and /rerank."""

    query: Text = Field(description="The query the documents are scored against.")
    documents: list[Text | RerankDocument] = Field(description="Texts, or {\"text\": ...} objects; at most 2048.")
    top_n: int | None = Field(None, ge=0, le=UINT32, description="Return only the best top_n; 0 or unset: all "
                                                                 "(vLLM's default is 0).")
    return_documents: bool = Field(True, description="Echo each document's text in its result (as vLLM and Jina "
                                                     "do by default).")

    @model_validator(mode="before")
    @classmethod
    def _reject_unsupported(cls, data: Any) -> Any:
        return reject_unsupported(data, RERANK_UNSUPPORTED)

    @property
    def texts(self) -> list[str]:
        return [d if isinstance(d, str) else d.text for d in self.documents]


class EmbeddingData(BaseModel):
    object: Literal["embedding"]
    index: int
    embedding: list[float] | str = Field(description="The vector; with encoding_format base64, its little-endian "
                                                     "float32 bytes in base64.")


class EmbeddingUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingList(BaseModel):
    """One vector per input, in input order."""

    object: Literal["list"]
    data: list[EmbeddingData]
    model: str
    usage: EmbeddingUsage


class RerankedDocument(BaseModel):
    text: str


class RerankResult(BaseModel):
    index: int = Field(description="Position of the document in the request.")
    relevance_score: float = Field(description="Higher is more relevant.")
    document: RerankedDocument | None = Field(None, description="Present when return_documents is true.")


class Reranked(BaseModel):
    """The documents by relevance, highest first (vLLM's shape, which Cohere's and Jina's clients read)."""

    id: str
    model: str
    usage: EmbeddingUsage
    results: list[RerankResult]
