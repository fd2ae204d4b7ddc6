"""Forgeway requests to OpenAI API calls, and OpenAI responses and stream chunks back to Forgeway results."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from forgeway.core.errors import InvalidArgument, Unsupported
from forgeway.core.generation import ChatMessage, FinishReason, GenerationRequest, TokenLogprob
from forgeway.core.tools import ToolCall, ToolCallAssembler, ToolCallDelta, new_call_id

from .settings import OpenAIProxySettings, UpstreamModel


@dataclass
class UpstreamCall:
    """One call to the upstream: which endpoint and its keyword arguments for the openai client."""

    chat: bool
    kwargs: dict[str, Any]
    stops: bool = False
    top_logprobs: int = 0
    parallel_tool_calls: bool = True


def build_call(request: GenerationRequest, model: UpstreamModel, settings: OpenAIProxySettings) -> UpstreamCall:
    """The upstream call for a request admitted for model; greedy unless a temperature is set, as the contract says."""
    chat = bool(request.messages)
    if not chat and not model.prompt:
        raise InvalidArgument("prompt", f"the upstream serves {model.name!r} for chat only; send messages")
    s = request.sampling
    kwargs: dict[str, Any] = {"model": model.upstream_name, "temperature": s.temperature or 0.0}
    if chat:
        kwargs["messages"] = [chat_message(m, settings) for m in request.messages]
    else:
        kwargs["prompt"] = request.prompt
    optional = {
        "max_tokens": s.max_tokens, "top_p": s.top_p, "presence_penalty": s.presence_penalty,
        "frequency_penalty": s.frequency_penalty, "seed": s.seed, "stop": list(s.stop) or None,
        "n": request.n if request.n > 1 else None,
    }  # fmt: skip
    kwargs.update({k: v for k, v in optional.items() if v is not None})
    if request.logprobs:
        if chat:  # at least 1: llama-cpp-python returns no logprobs at all for top_logprobs 0; cut back to 0 here
            kwargs.update(logprobs=True, top_logprobs=max(1, request.top_logprobs))
        else:
            kwargs["logprobs"] = request.top_logprobs
    extra: dict[str, Any] = {}
    if request.tools:
        kwargs["tools"] = [t.to_openai() for t in request.tools]
        kwargs["tool_choice"] = _tool_choice(request, settings)
        if not request.parallel_tool_calls:
            kwargs["parallel_tool_calls"] = False
    if request.thinking is not None:
        if settings.thinking == "chat_template_kwargs":
            extra["chat_template_kwargs"] = {"enable_thinking": request.thinking}
        elif settings.thinking == "reasoning_effort":
            kwargs["reasoning_effort"] = settings.thinking_efforts[int(request.thinking)]
        else:
            raise Unsupported("reasoning", "openai", "this upstream takes no thinking switch")
    response_format = _response_format(request, settings.structured_output)
    if response_format is not None:
        if not chat and settings.structured_output == "json_object_schema":  # its /v1/completions ignores it
            raise Unsupported("json_schema", "openai", "this upstream constrains chat messages only; send messages")
        if chat:
            kwargs["response_format"] = response_format
        else:  # the client's completions.create has no response_format; servers that take it read it from the body
            extra["response_format"] = response_format
    wanted = {"top_k": s.top_k, "min_p": s.min_p, "repetition_penalty": s.repetition_penalty,
              "grammar": request.grammar}  # fmt: skip
    for feature, upstream_field in settings.extra_body_params.items():
        if wanted[feature] is not None:
            extra[upstream_field] = wanted[feature]
    if extra:
        kwargs["extra_body"] = extra
    return UpstreamCall(chat, kwargs, stops=bool(s.stop), top_logprobs=request.top_logprobs,
                        parallel_tool_calls=request.parallel_tool_calls)


def chat_message(message: ChatMessage, settings: OpenAIProxySettings) -> dict:
    """A message as OpenAI's chat API takes it: tool calls with JSON-text arguments, tool results by call id.

    Reasoning goes back as `reasoning_content` (vLLM, llama.cpp's server), except to OpenAI (thinking:
    reasoning_effort), whose chat API has no field for it.
    """
    result: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.tool_calls:
        result["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in message.tool_calls
        ]
        if not message.content and settings.null_tool_call_content:
            result["content"] = None
    if message.tool_call_id:
        result["tool_call_id"] = message.tool_call_id
    if message.reasoning and settings.thinking != "reasoning_effort":
        result["reasoning_content"] = message.reasoning
    return result


def _tool_choice(request: GenerationRequest, settings: OpenAIProxySettings) -> str | dict:
    choice = request.tool_choice
    if choice.mode == "required" and not settings.tool_choice_required:
        if len(request.tools) != 1:
            raise Unsupported("tool_choice", "openai", "this upstream cannot be required to call one of several "
                                                       "tools; name the function")
        return {"type": "function", "function": {"name": request.tools[0].name}}  # one tool: the same demand
    if choice.mode == "function":
        return {"type": "function", "function": {"name": choice.function}}
    return choice.mode


def _response_format(request: GenerationRequest, style: str) -> dict | None:
    if request.json_schema is not None:
        if style == "json_object_schema":
            return {"type": "json_object", "schema": request.json_schema}
        return {"type": "json_schema", "json_schema": {"name": "output", "schema": request.json_schema}}
    if request.json_object:
        return {"type": "json_object"}
    return None


def finish_reason(reason: str | None, choice: Any, stops: bool, called: bool = False) -> FinishReason:
    """Forgeway's finish reason for an OpenAI one.

    OpenAI says "stop" both for an end-of-sequence token and for a stop sequence. vLLM adds stop_reason (the
    matched string, or a token id / null); where no upstream says which, a request with stop sequences reports
    STOP_SEQUENCE. A choice that called tools reports TOOL_CALLS, also where the upstream says "stop" (OpenAI does
    when tool_choice names the function).
    """
    if reason == "length":
        return FinishReason.LENGTH
    if reason in ("tool_calls", "function_call") or (called and reason in ("stop", None)):
        return FinishReason.TOOL_CALLS
    if reason == "stop" and stops:
        extra = getattr(choice, "model_extra", None) or {}
        if "stop_reason" not in extra or isinstance(extra["stop_reason"], str):
            return FinishReason.STOP_SEQUENCE
    return FinishReason.STOP  # stop, content_filter


def _bytes(token: str, raw: list[int] | None) -> bytes:
    return bytes(raw) if raw else token.encode()


def chat_logprobs(logprobs: Any, top: int) -> list[TokenLogprob]:
    """TokenLogprobs from a chat choice's logprobs (content list)."""
    if logprobs is None or not logprobs.content:
        return []
    return [
        TokenLogprob(
            token=lp.token,
            token_bytes=_bytes(lp.token, lp.bytes),
            logprob=lp.logprob,
            top=[(t.token, _bytes(t.token, t.bytes), t.logprob) for t in (lp.top_logprobs or [])][:top],
        )
        for lp in logprobs.content
    ]


def completion_logprobs(logprobs: Any, top: int) -> list[TokenLogprob]:
    """TokenLogprobs from a legacy completion choice's logprobs (parallel lists; alternatives as dicts)."""
    if logprobs is None or not logprobs.tokens:
        return []
    alternatives = logprobs.top_logprobs or [{}] * len(logprobs.tokens)
    result = []
    for token, logprob, options in zip(logprobs.tokens, logprobs.token_logprobs or [], alternatives):
        ranked = sorted((options or {}).items(), key=lambda kv: kv[1], reverse=True)[:top]
        result.append(TokenLogprob(token, token.encode(), logprob or 0.0, [(t, t.encode(), lp) for t, lp in ranked]))
    return result


@dataclass
class ChoicePiece:
    """What one choice of a response or stream chunk carries."""

    index: int
    text: str | None
    reason: str | None
    logprobs: list[TokenLogprob] = field(default_factory=list)
    source: Any = None
    tool_calls: list[ToolCallDelta] = field(default_factory=list)
    reasoning: str = ""

    @property
    def is_token(self) -> bool:
        """Whether the chunk carried a token (llama.cpp and vLLM stream one token per chunk; '' is a partial one)."""
        text = self.text is not None and (self.text != "" or self.reason is None)
        return text or bool(self.reasoning) or any(c.arguments for c in self.tool_calls)


def pieces(response: Any, call: UpstreamCall) -> list[ChoicePiece]:
    """The choices of a (chunk of a) chat or text completion."""
    result = []
    for choice in response.choices or []:
        if call.chat:
            message = getattr(choice, "delta", None) or getattr(choice, "message", None)
            piece = ChoicePiece(choice.index, message.content if message is not None else None, choice.finish_reason,
                                chat_logprobs(choice.logprobs, call.top_logprobs), choice,
                                tool_call_pieces(message), reasoning(message))  # fmt: skip
        else:
            piece = ChoicePiece(choice.index, choice.text, choice.finish_reason,
                                completion_logprobs(choice.logprobs, call.top_logprobs), choice)  # fmt: skip
        result.append(piece)
    return result


def reasoning(message: Any) -> str:
    """The reasoning beside the content: `reasoning_content` (vLLM, llama.cpp, DeepSeek) or `reasoning` (others)."""
    extra = (getattr(message, "model_extra", None) or {}) if message is not None else {}
    value = extra.get("reasoning_content") or extra.get("reasoning")
    return value if isinstance(value, str) else ""


def tool_call_pieces(message: Any) -> list[ToolCallDelta]:
    """A message's tool calls, or a stream delta's pieces of them, as ToolCallDeltas (a message's by position)."""
    result = []
    for position, call in enumerate(getattr(message, "tool_calls", None) or []):
        function = getattr(call, "function", None)
        if function is None:  # a custom (non-function) tool call; the proxy sends function tools only
            continue
        index = getattr(call, "index", position)
        result.append(ToolCallDelta(index, call.id or "", function.name or "", function.arguments or ""))
    return result


class ToolCallRelay:
    """Tool-call pieces in the contract's shape, and the whole calls they make.

    The first piece of a call carries its id and name, later ones only argument text (llama-cpp-python repeats
    both in every chunk); a call the upstream gives no id gets one; with parallel tool calls off, a second call
    from an upstream that ignores the switch is dropped.
    """

    def __init__(self, parallel: bool):
        self.parallel = parallel
        self._started: set[tuple[int, int]] = set()
        self._named: set[tuple[int, int]] = set()
        self._first: dict[int, int] = {}
        self._calls: dict[int, ToolCallAssembler] = {}

    def relay(self, choice: int, upstream: list[ToolCallDelta]) -> list[ToolCallDelta]:
        """The pieces to pass on for one choice of one chunk."""
        result = []
        for piece in upstream:
            key = (choice, piece.index)
            if not self.parallel and self._first.setdefault(choice, piece.index) != piece.index:
                continue
            out = ToolCallDelta(piece.index, arguments=piece.arguments)
            if key not in self._started:
                self._started.add(key)
                out.id = piece.id or new_call_id()
            if piece.name and key not in self._named:
                self._named.add(key)
                out.name = piece.name
            if out.id or out.name or out.arguments:
                result.append(out)
                self._calls.setdefault(choice, ToolCallAssembler()).add(out)
        return result

    def calls(self, choice: int) -> list[ToolCall]:
        """The calls a choice made, whole (arguments "{}" where the upstream sent none)."""
        assembler = self._calls.get(choice)
        calls = assembler.calls() if assembler is not None else []
        return [ToolCall(c.id, c.name, c.arguments or "{}") for c in calls]


def listed_context_length(model) -> int:
    """A model's context length from a /v1/models entry: vLLM lists max_model_len; OpenAI does not (0)."""
    value = (getattr(model, "model_extra", None) or {}).get("max_model_len")
    return value if isinstance(value, int) else 0
