"""Request bodies of /v1/chat/completions and /v1/completions as OpenAI defines them, plus Forgeway's extras."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

UINT32 = 2**32 - 1
INT32 = 2**31 - 1


def _utf8(value: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid UTF-8 (no lone surrogates)") from None
    return value


Text = Annotated[str, AfterValidator(_utf8)]

# Parameters OpenAI defines that Forgeway does not honour: a request using one is rejected, never ignored.
UNSUPPORTED = {
    "functions": "legacy function calling (use tools)",
    "function_call": "legacy function calling (use tool_choice)",
    "logit_bias": "logit bias",
    "audio": "audio output",
    "modalities": "output modalities other than text",
    "prediction": "predicted outputs",
    "web_search_options": "web search",
    "verbosity": "verbosity",
    "store": "stored completions",
    "metadata": "stored completion metadata",
    "prompt_cache_key": "prompt caching keys",
    "service_tier": "service tiers",
}
# Values of those parameters that ask for nothing, and so are accepted.
NEUTRAL = {"modalities": (["text"],), "service_tier": ("auto", "default")}
UNSUPPORTED_IN_MESSAGE = {"name", "function_call", "audio", "refusal"}
# OpenAI's reasoning_effort values; "none" turns the model's thinking off, any other turns it on.
REASONING_EFFORT = ("none", "minimal", "low", "medium", "high", "xhigh", "max")


def invalid(param: str, message: str) -> PydanticCustomError:
    return PydanticCustomError("invalid_parameter", message, {"param": param})


def unsupported(param: str, what: str) -> PydanticCustomError:
    return PydanticCustomError(
        "unsupported_parameter", "{param}: {what} is not supported by Forgeway", {"param": param, "what": what}
    )


def reject_unsupported(data: Any, names: dict[str, str]) -> Any:
    """Raise for the first parameter in `names` set to a value that asks for something; drop those that ask nothing."""
    if not isinstance(data, dict):
        return data
    for name, what in names.items():
        value = data.get(name)
        if name in data and not (value in (None, False, [], {}) or value in NEUTRAL.get(name, ())):
            raise unsupported(name, what)
    return {k: v for k, v in data.items() if k not in names}


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class TextPart(Strict):
    """A text content part."""

    type: Literal["text"]
    text: Text


class FunctionCall(Strict):
    """The function an assistant message called, with its arguments as JSON text."""

    name: Text
    arguments: Text


class ToolCall(Strict):
    """A tool call of an assistant message in the history, as the API returned it."""

    id: Text
    type: Literal["function"]
    function: FunctionCall


class ChatMessage(Strict):
    """One chat message; content as a string or a list of text parts. Which role may carry tool_calls or
    tool_call_id is checked with the rest of the conversation upstream (the errors name `messages[i]...`)."""

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: Text | list[TextPart] | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: Text | None = None
    reasoning_content: Text | None = Field(None, description="Reasoning of an earlier assistant turn.")

    @model_validator(mode="before")
    @classmethod
    def _text_only(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = reject_unsupported(data, {name: f"message field {name!r}" for name in UNSUPPORTED_IN_MESSAGE})
            content = data.get("content")
            if isinstance(content, list):
                for part in content:
                    kind = part.get("type") if isinstance(part, dict) else None
                    if kind not in (None, "text"):
                        raise unsupported("content", f"content parts of type {kind!r}")
        return data

    @property
    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(part.text for part in self.content)
        return self.content or ""


class JsonSchemaFormat(Strict):
    """The schema the output must satisfy."""

    name: Text = Field(max_length=64)
    description: Text | None = None
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    strict: bool | None = None


class TextFormat(Strict):
    type: Literal["text"]


class JsonObjectFormat(Strict):
    type: Literal["json_object"]


class JsonSchemaResponseFormat(Strict):
    type: Literal["json_schema"]
    json_schema: JsonSchemaFormat


ResponseFormat = Annotated[TextFormat | JsonObjectFormat | JsonSchemaResponseFormat, Field(discriminator="type")]


class FunctionDefinition(Strict):
    """A function the model may call. `parameters` is passed on as given: whether it is a JSON Schema object is
    checked upstream, with an error naming `tools[i].function.parameters`."""

    name: Text
    description: Text | None = None
    parameters: Any = None
    strict: bool | None = None


class Tool(Strict):
    type: Literal["function"]
    function: FunctionDefinition


class FunctionName(Strict):
    name: Text


class NamedToolChoice(Strict):
    """A call of this function, nothing else."""

    type: Literal["function"]
    function: FunctionName


ToolChoice = Literal["none", "auto", "required"] | NamedToolChoice


class StreamOptions(Strict):
    include_usage: bool | None = None


class Sampling(Strict):
    """Parameters shared by chat and text completions, with Forgeway's (vLLM-style) sampling extras."""

    model: Text = Field(min_length=1, description="Model name or alias, as GET /v1/models lists it.")
    max_tokens: int | None = Field(None, ge=1, le=UINT32)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    n: int | None = Field(None, ge=1, le=128)
    stop: Text | list[Text] | None = None
    seed: int | None = Field(None, ge=-(2**63), le=2**64 - 1)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    user: Text | None = Field(None, description="End-user id; accepted for compatibility, not used.")
    response_format: ResponseFormat | None = None
    top_k: int | None = Field(None, ge=0, le=UINT32, description="Forgeway extra: keep the top k tokens (0: off).")
    min_p: float | None = Field(None, ge=0, le=1, description="Forgeway extra: min-p sampling.")
    repetition_penalty: float | None = Field(None, gt=0, le=10, description="Forgeway extra: multiplicative penalty.")
    grammar: Text | None = Field(None, description="Forgeway extra: a GBNF grammar the output must match.")
    adapter: Text | None = Field(None, description="Forgeway extra: a LoRA adapter loaded beside the model.")
    backend: Text | None = Field(None, description="Forgeway extra: backend kind to prefer (hf, llamacpp, ...).")
    priority: int | None = Field(None, ge=-INT32, le=INT32, description="Forgeway extra: higher is served first.")

    @model_validator(mode="after")
    def _stream_options_need_stream(self):
        if self.stream_options is not None and not self.stream:
            raise invalid("stream_options", "stream_options is only allowed when stream is true")
        if self.grammar is not None and self.response_format is not None and self.response_format.type != "text":
            raise invalid("grammar", "grammar and response_format cannot be combined")
        return self


class ChatCompletionRequest(Sampling):
    """POST /v1/chat/completions."""

    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1, le=UINT32)
    logprobs: bool | None = None
    top_logprobs: int | None = Field(None, ge=0, le=20)
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    reasoning_effort: Literal[REASONING_EFFORT] | None = Field(  # type: ignore[valid-type]
        None, description="\"none\" turns the model's thinking off, any other value turns it on; unset keeps the "
                          "model's default. A model without a thinking switch answers 400.")

    @model_validator(mode="before")
    @classmethod
    def _reject_unsupported(cls, data: Any) -> Any:
        return reject_unsupported(data, UNSUPPORTED)

    @model_validator(mode="after")
    def _one_max(self):
        if self.max_tokens is not None and self.max_completion_tokens not in (None, self.max_tokens):
            raise invalid("max_tokens", "set max_completion_tokens or max_tokens, not both")
        return self

    @property
    def token_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


COMPLETIONS_UNSUPPORTED = {"logit_bias": "logit bias", "suffix": "suffix insertion", "echo": "prompt echo",
                           **{name: "tool calling in text completions (use /v1/chat/completions)"
                              for name in ("tools", "tool_choice", "parallel_tool_calls")},
                           "reasoning_effort": "reasoning effort in text completions (use /v1/chat/completions)"}


class CompletionRequest(Sampling):
    """POST /v1/completions (the legacy text-completion API)."""

    prompt: Text | list[Text] = Field(description="A prompt, or a list of prompts answered together.")
    max_tokens: int | None = Field(16, ge=1, le=UINT32, description="Defaults to 16, as in OpenAI.")
    logprobs: int | None = Field(None, ge=0, le=5, description="Return logprobs and this many alternatives per token.")
    best_of: int | None = Field(None, ge=1, le=128, description="Only best_of = n is accepted (no ranking).")
    echo: bool | None = None
    suffix: Text | None = None

    @model_validator(mode="before")
    @classmethod
    def _reject_unsupported(cls, data: Any) -> Any:
        if isinstance(data, dict):
            prompt = data.get("prompt")
            if isinstance(prompt, list) and prompt and not all(isinstance(p, str) for p in prompt):
                raise unsupported("prompt", "token-id prompts")
            if isinstance(prompt, list) and not prompt:
                raise invalid("prompt", "prompt must not be an empty list")
            data = reject_unsupported(data, {**UNSUPPORTED, **COMPLETIONS_UNSUPPORTED})
            best_of, n = data.get("best_of"), data.get("n") or 1
            if isinstance(best_of, int) and best_of != n:
                raise unsupported("best_of", "best_of other than n (server-side ranking)")
        return data

    @property
    def prompts(self) -> list[str]:
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)
