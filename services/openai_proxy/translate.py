"""Forgeway requests to OpenAI API calls, and OpenAI responses and stream chunks back to Forgeway results."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from forgeway.core.errors import InvalidArgument, Unsupported
from forgeway.core.generation import FinishReason, GenerationRequest, TokenLogprob

from .settings import OpenAIProxySettings, UpstreamModel


@dataclass
class UpstreamCall:
    """One call to the upstream: which endpoint and its keyword arguments for the openai client."""

    chat: bool
    kwargs: dict[str, Any]
    stops: bool = False
    top_logprobs: int = 0


def build_call(request: GenerationRequest, model: UpstreamModel, settings: OpenAIProxySettings) -> UpstreamCall:
    """The upstream call for a request admitted for model; greedy unless a temperature is set, as the contract says."""
    chat = bool(request.messages)
    if not chat and not model.prompt:
        raise InvalidArgument("prompt", f"the upstream serves {model.name!r} for chat only; send messages")
    s = request.sampling
    kwargs: dict[str, Any] = {"model": model.upstream_name, "temperature": s.temperature or 0.0}
    if chat:
        kwargs["messages"] = [{"role": m.role, "content": m.content} for m in request.messages]
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
    return UpstreamCall(chat, kwargs, stops=bool(s.stop), top_logprobs=request.top_logprobs)


def _response_format(request: GenerationRequest, style: str) -> dict | None:
    if request.json_schema is not None:
        if style == "json_object_schema":
            return {"type": "json_object", "schema": request.json_schema}
        return {"type": "json_schema", "json_schema": {"name": "output", "schema": request.json_schema}}
    if request.json_object:
        return {"type": "json_object"}
    return None


def finish_reason(reason: str | None, choice: Any, stops: bool) -> FinishReason:
    """Forgeway's finish reason for an OpenAI one.

    OpenAI says "stop" both for an end-of-sequence token and for a stop sequence. vLLM adds stop_reason (the
    matched string, or a token id / null); where no upstream says which, a request with stop sequences reports
    STOP_SEQUENCE.
    """
    if reason == "length":
        return FinishReason.LENGTH
    if reason == "stop" and stops:
        extra = getattr(choice, "model_extra", None) or {}
        if "stop_reason" not in extra or isinstance(extra["stop_reason"], str):
            return FinishReason.STOP_SEQUENCE
    return FinishReason.STOP  # stop, content_filter, tool_calls, function_call


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

    @property
    def is_token(self) -> bool:
        """Whether the chunk carried a token (llama.cpp and vLLM stream one token per chunk; '' is a partial one)."""
        return self.text is not None and (self.text != "" or self.reason is None)


def pieces(response: Any, call: UpstreamCall) -> list[ChoicePiece]:
    """The choices of a (chunk of a) chat or text completion."""
    result = []
    for choice in response.choices or []:
        if call.chat:
            message = getattr(choice, "delta", None) or getattr(choice, "message", None)
            text = message.content if message is not None else None
            logprobs = chat_logprobs(choice.logprobs, call.top_logprobs)
        else:
            text = choice.text
            logprobs = completion_logprobs(choice.logprobs, call.top_logprobs)
        result.append(ChoicePiece(choice.index, text, choice.finish_reason, logprobs, choice))
    return result
