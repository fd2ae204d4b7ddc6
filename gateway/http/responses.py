"""Response shapes as OpenAI defines them; they document /openapi.json (bodies are built as plain dicts)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

FinishReason = Literal["stop", "length", "tool_calls"]
# Forgeway's own reason beside OpenAI's: stop_sequence, cancelled and error all read "stop" in finish_reason.
OwnFinishReason = Literal["stop", "length", "stop_sequence", "cancelled", "error", "tool_calls"]


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorResponse(BaseModel):
    """Every error: {"error": {"message", "type", "param", "code"}}."""

    error: ErrorDetail


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class TopLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int] | None


class TokenLogprob(TopLogprob):
    top_logprobs: list[TopLogprob]


class ChoiceLogprobs(BaseModel):
    content: list[TokenLogprob] | None


class FunctionCall(BaseModel):
    name: str
    arguments: str = Field(description="JSON text (an object).")


class ToolCall(BaseModel):
    id: str
    type: Literal["function"]
    function: FunctionCall


class AssistantMessage(BaseModel):
    role: Literal["assistant"]
    content: str | None = Field(description="null when the model only called tools.")
    refusal: str | None = None
    tool_calls: list[ToolCall] | None = None
    reasoning_content: str | None = Field(None, description="The model's reasoning, apart from its content.")


class Answer(BaseModel):
    """Forgeway extra, extractive-QA models only: the answer's span of the context (the system message)."""

    text: str
    start: int = Field(description="Character offset in the context where the answer starts.")
    end: int = Field(description="Character offset where it ends (exclusive): context[start:end] == text.")
    score: float = Field(description="The model's probability of this span.")


class ChatChoice(BaseModel):
    index: int
    message: AssistantMessage
    finish_reason: FinishReason
    forgeway_finish_reason: OwnFinishReason
    logprobs: ChoiceLogprobs | None
    answer: Answer | None = None


class ChatCompletion(BaseModel):
    """A chat completion (stream: false)."""

    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    system_fingerprint: str | None = Field(None, description="The backend instance that answered (served_by).")
    choices: list[ChatChoice]
    usage: Usage


class FunctionCallPiece(BaseModel):
    name: str | None = None
    arguments: str


class ToolCallPiece(BaseModel):
    """A piece of a streamed tool call: id, type and name come on the call's first piece only; concatenating the
    arguments of one index gives the call's arguments."""

    index: int
    id: str | None = None
    type: Literal["function"] | None = None
    function: FunctionCallPiece


class ChunkDelta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None
    reasoning_content: str | None = None
    tool_calls: list[ToolCallPiece] | None = None


class ChunkChoice(BaseModel):
    index: int
    delta: ChunkDelta
    finish_reason: FinishReason | None
    forgeway_finish_reason: OwnFinishReason | None = None
    logprobs: ChoiceLogprobs | None
    answer: Answer | None = Field(None, description="On the chunk that finishes an extractive-QA choice.")


class ChatCompletionChunk(BaseModel):
    """One server-sent event of a streamed chat completion (stream: true); the stream ends with `data: [DONE]`."""

    id: str
    object: Literal["chat.completion.chunk"]
    created: int
    model: str
    system_fingerprint: str | None = None
    choices: list[ChunkChoice]
    usage: Usage | None = None


class CompletionLogprobs(BaseModel):
    tokens: list[str]
    token_logprobs: list[float]
    top_logprobs: list[dict[str, float]] | None
    text_offset: list[int]


class CompletionChoice(BaseModel):
    index: int
    text: str
    finish_reason: FinishReason | None
    forgeway_finish_reason: OwnFinishReason | None = None
    logprobs: CompletionLogprobs | None


class TextCompletion(BaseModel):
    """A text completion; streamed as events of the same shape (with per-event text), ending with [DONE]."""

    id: str
    object: Literal["text_completion"]
    created: int
    model: str
    system_fingerprint: str | None = None
    choices: list[CompletionChoice]
    usage: Usage | None = None


class Model(BaseModel):
    """A model or an alias of one; Forgeway adds backend, task, context_length, loaded, alias_of and, for embedding
    models, dimensions and matryoshka_dimensions."""

    id: str
    object: Literal["model"]
    created: int
    owned_by: str
    backend: str
    task: str = Field(description="Its kind: text-generation, summarization, extractive-question-answering, "
                                  "embedding or rerank.")
    context_length: int = Field(description="Longest prompt plus completion; for embedding and rerank models the "
                                            "longest input.")
    loaded: bool
    chat: bool
    alias_of: str | None
    adapters: list[str]
    dimensions: int | None = Field(description="Embedding models: length of their vectors; null for others.")
    matryoshka_dimensions: list[int] | None = Field(
        description="Embedding models: the shorter lengths `dimensions` may ask for; null for others.")
    description: str | None = Field(None, description="Trained models: what the model is; null when unknown.")
    base_model: str | None = Field(None, description="Trained models: the base model it was fine-tuned from.")
    provider: str | None = Field(None, description="Trained models: who trained it in ModelForge's vocabulary "
                                                   "(huggingface, unsloth); `created` is then when it was written.")


class ModelList(BaseModel):
    object: Literal["list"]
    data: list[Model]


class Health(BaseModel):
    status: str
    reason: str | None = None
    details: dict[str, Any] | None = None


STREAM_EVENTS = (ChatCompletionChunk, TextCompletion)

ERRORS = {status: {"model": ErrorResponse} for status in (400, 401, 403, 404, 409, 413, 415, 429, 500, 501, 503, 504)}


def documented(model: type[BaseModel] | None = None, *, stream: type[BaseModel] | None = None,
               statuses: tuple[int, ...] = (400, 401, 403, 404, 413, 415, 429, 500, 501, 503, 504)) -> dict:
    """The `responses=` of a route: its 200 body (and event stream), and the error statuses it can answer."""
    ok: dict[str, Any] = {}
    if model is not None:
        ok["model"] = model
    if stream is not None:
        ok["content"] = {"text/event-stream": {
            "schema": {"type": "string", "description": stream.__doc__ or ""},
            "x-forgeway-event": {"$ref": f"#/components/schemas/{stream.__name__}"},
        }}
    return {200: ok, **{s: ERRORS[s] for s in statuses}}
