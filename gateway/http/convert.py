"""OpenAI request bodies -> GenerateRequest, and GenerateResponse / stream events -> OpenAI bodies and chunks."""

from __future__ import annotations

import json

from forgeway.core.enums import FINISH_REASON
from forgeway.v1 import generate_pb2

from .errors import ParamOf
from .schemas import ChatCompletionRequest, CompletionRequest, Sampling

# Forgeway's finish reasons -> OpenAI's set (stop, length, tool_calls, content_filter); the choice keeps Forgeway's own
# reason in `forgeway_finish_reason`, so a cancelled or failed choice is told apart from one that stopped.
OPENAI_FINISH_REASON = {"stop": "stop", "stop_sequence": "stop", "length": "length", "cancelled": "stop", "error": "stop"}


def finish_reasons(value: int) -> dict:
    """The `finish_reason` and `forgeway_finish_reason` fields of an OpenAI choice for a contract finish reason."""
    own = FINISH_REASON.name(value) or "stop"
    return {"finish_reason": OPENAI_FINISH_REASON[own], "forgeway_finish_reason": own}

# Feature names (GenerationFeatures, as Unsupported reports them) and contract fields -> OpenAI parameters.
_PARAM = {
    "multiple_choices": "n",
    "json_schema": "response_format",
    "structured_output": "response_format",
    "adapters": "adapter",
    "streaming": "stream",
    "task": "model",
    "summarize": "prompt",
    "question_answer": "prompt",
}


def param_mapper(body: Sampling) -> ParamOf:
    """How a contract field named in an error reads as this request's OpenAI parameter."""
    chat = isinstance(body, ChatCompletionRequest)

    def param_of(field: str) -> str | None:
        head, _, rest = field.partition(".")
        if head == "sampling":
            head, _, rest = rest.partition(".")
            if head == "max_tokens" and chat and body.max_completion_tokens is not None:
                return "max_completion_tokens"
            return head
        if head == "grammar" or field.startswith("structured_output.grammar"):
            return "grammar"
        if head in _PARAM:
            return _PARAM[head]
        if head == "prompt" and chat:
            return "messages"
        if head == "top_logprobs" and not chat:
            return "logprobs"
        return field or None

    return param_of


def _sampling(body: Sampling, max_tokens: int | None) -> generate_pb2.SamplingParams:
    stop = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
    sampling = generate_pb2.SamplingParams(stop=stop)
    values = {
        "max_tokens": max_tokens,
        "temperature": body.temperature,
        "top_p": body.top_p,
        "top_k": body.top_k,
        "min_p": body.min_p,
        "repetition_penalty": body.repetition_penalty,
        "presence_penalty": body.presence_penalty,
        "frequency_penalty": body.frequency_penalty,
        # OpenAI seeds are signed 64-bit; the contract's are unsigned: the same seed always maps to the same value.
        "seed": body.seed % 2**64 if body.seed is not None else None,
    }
    for name, value in values.items():
        if value is not None:
            setattr(sampling, name, value)
    return sampling


def _common(body: Sampling, max_tokens: int | None) -> generate_pb2.GenerateRequest:
    request = generate_pb2.GenerateRequest(
        model=body.model,
        n=body.n or 1,
        sampling=_sampling(body, max_tokens),
        adapter=body.adapter or "",
        backend=body.backend or "",
        priority=body.priority or 0,
    )
    fmt = body.response_format
    if fmt is not None and fmt.type == "json_object":
        request.structured_output.json_object = True
    elif fmt is not None and fmt.type == "json_schema":
        schema = fmt.json_schema.schema_ if fmt.json_schema.schema_ is not None else {"type": "object"}
        request.structured_output.json_schema = json.dumps(schema)
    if body.grammar is not None:
        request.structured_output.grammar = body.grammar
    return request


def chat_request(body: ChatCompletionRequest) -> generate_pb2.GenerateRequest:
    request = _common(body, body.token_limit)
    request.messages.extend(generate_pb2.Message(role=m.role, content=m.text) for m in body.messages)
    request.logprobs = bool(body.logprobs)
    request.top_logprobs = body.top_logprobs or 0
    return request


def completion_requests(body: CompletionRequest) -> list[generate_pb2.GenerateRequest]:
    """One GenerateRequest per prompt; their choices are numbered prompt-major, as OpenAI does."""
    requests = []
    for prompt in body.prompts:
        request = _common(body, body.max_tokens)
        request.prompt = prompt
        if body.logprobs is not None:
            request.logprobs = True
            request.top_logprobs = body.logprobs
        requests.append(request)
    return requests


def usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def sum_usage(responses: list[generate_pb2.GenerateResponse]) -> dict:
    return usage(sum(r.usage.prompt_tokens for r in responses), sum(r.usage.completion_tokens for r in responses))


def chat_logprobs(logprobs) -> dict | None:
    if not logprobs:
        return None
    def entry(lp) -> dict:
        return {"token": lp.token, "logprob": lp.logprob, "bytes": list(lp.token_bytes or lp.token.encode())}

    return {"content": [{**entry(lp), "top_logprobs": [entry(t) for t in lp.top_logprobs]} for lp in logprobs]}


def completion_logprobs(logprobs, offset: int = 0) -> dict | None:
    if not logprobs:
        return None
    offsets, position = [], offset
    for lp in logprobs:
        offsets.append(position)
        position += len(lp.token)
    return {
        "tokens": [lp.token for lp in logprobs],
        "token_logprobs": [lp.logprob for lp in logprobs],
        "top_logprobs": [{t.token: t.logprob for t in lp.top_logprobs} for lp in logprobs],
        "text_offset": offsets,
    }


def chat_completion(response: generate_pb2.GenerateResponse, completion_id: str, created: int) -> dict:
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": response.model,
        "system_fingerprint": response.served_by or None,
        "choices": [
            {"index": c.index, "message": {"role": "assistant", "content": c.text, "refusal": None},
             **finish_reasons(c.finish_reason), "logprobs": chat_logprobs(c.logprobs)}
            for c in response.choices
        ],
        "usage": usage(response.usage.prompt_tokens, response.usage.completion_tokens),
    }


def text_completion(responses: list[generate_pb2.GenerateResponse], n: int, completion_id: str, created: int) -> dict:
    return {
        "id": completion_id,
        "object": "text_completion",
        "created": created,
        "model": responses[0].model,
        "system_fingerprint": responses[0].served_by or None,
        "choices": [
            {"index": p * n + c.index, "text": c.text, **finish_reasons(c.finish_reason),
             "logprobs": completion_logprobs(c.logprobs)}
            for p, response in enumerate(responses)
            for c in response.choices
        ],
        "usage": sum_usage(responses),
    }
