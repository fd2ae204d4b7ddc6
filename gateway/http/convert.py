"""OpenAI request bodies -> GenerateRequest, and GenerateResponse / stream events -> OpenAI bodies and chunks."""

from __future__ import annotations

import json

from forgeway.core.enums import FINISH_REASON, TOOL_CHOICE
from forgeway.v1 import generate_pb2

from .errors import ParamOf
from .schemas import ChatCompletionRequest, ChatMessage, CompletionRequest, Sampling, Tool, ToolChoice
from .task_inputs import answer_field

# Forgeway's finish reasons -> OpenAI's set (stop, length, tool_calls, content_filter); the choice keeps Forgeway's own
# reason in `forgeway_finish_reason`, so a cancelled or failed choice is told apart from one that stopped.
OPENAI_FINISH_REASON = {"stop": "stop", "stop_sequence": "stop", "length": "length", "cancelled": "stop",
                        "error": "stop", "tool_calls": "tool_calls"}


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
    "reasoning": "reasoning_effort",
    "thinking": "reasoning_effort",
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
        if head in ("summarize", "question_answer") and chat:  # the task input a chat's messages became
            return "messages"
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


def _message(m: ChatMessage) -> generate_pb2.Message:
    calls = [generate_pb2.ToolCall(id=c.id, name=c.function.name, arguments=c.function.arguments)
             for c in m.tool_calls or ()]
    return generate_pb2.Message(role=m.role, content=m.text, tool_calls=calls, tool_call_id=m.tool_call_id or "",
                                reasoning=m.reasoning_content or "")


def _tool(tool: Tool) -> generate_pb2.Tool:
    fn = tool.function
    parameters = json.dumps(fn.parameters) if fn.parameters is not None else ""
    return generate_pb2.Tool(function=generate_pb2.FunctionDefinition(
        name=fn.name, description=fn.description or "", parameters=parameters, strict=bool(fn.strict)))


def _tool_choice(choice: ToolChoice) -> generate_pb2.ToolChoice:
    if isinstance(choice, str):
        return generate_pb2.ToolChoice(mode=TOOL_CHOICE.to_value[choice])
    return generate_pb2.ToolChoice(mode=TOOL_CHOICE.to_value["function"], function=choice.function.name)


def chat_request(body: ChatCompletionRequest) -> generate_pb2.GenerateRequest:
    request = _common(body, body.token_limit)
    request.messages.extend(_message(m) for m in body.messages)
    request.logprobs = bool(body.logprobs)
    request.top_logprobs = body.top_logprobs or 0
    request.tools.extend(_tool(t) for t in body.tools or ())
    if body.tool_choice is not None:
        request.tool_choice.CopyFrom(_tool_choice(body.tool_choice))
    if body.parallel_tool_calls is not None:
        request.parallel_tool_calls = body.parallel_tool_calls
    if body.reasoning_effort is not None:
        request.thinking = body.reasoning_effort != "none"
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


def tool_call(call: generate_pb2.ToolCall) -> dict:
    return {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}


def tool_call_piece(piece: generate_pb2.ToolCallDelta) -> dict:
    """A streamed piece of a tool call: id, type and name on a call's first piece, arguments text on the others."""
    if piece.id or piece.name:
        return {"index": piece.index, "id": piece.id, "type": "function",
                "function": {"name": piece.name, "arguments": piece.arguments}}
    return {"index": piece.index, "function": {"arguments": piece.arguments}}


def assistant_message(choice: generate_pb2.Choice) -> dict:
    """The message of a chat choice: content null when the model only called tools."""
    content = None if choice.tool_calls and not choice.text else choice.text
    message: dict = {"role": "assistant", "content": content, "refusal": None}
    if choice.tool_calls:
        message["tool_calls"] = [tool_call(c) for c in choice.tool_calls]
    if choice.reasoning:
        message["reasoning_content"] = choice.reasoning
    return message


def chunk_delta(delta: generate_pb2.GenerateDelta) -> dict:
    """The `delta` of a chat chunk: new content, reasoning and tool-call pieces (content "" when it carries none)."""
    out: dict = {}
    if delta.reasoning:
        out["reasoning_content"] = delta.reasoning
    if delta.text or not (delta.reasoning or delta.tool_calls):
        out["content"] = delta.text
    if delta.tool_calls:
        out["tool_calls"] = [tool_call_piece(p) for p in delta.tool_calls]
    return out


def unsent(full: str, sent: str) -> str:
    """What the final text holds beyond the streamed deltas (nothing, when the backend streamed it all)."""
    return full[len(sent):] if full.startswith(sent) else ""


class StreamedChat:
    """What a chat stream has sent of each choice (content, reasoning, tool calls), so that the final message adds
    only what the deltas left out: a backend may stream everything, or send some of it only in the final message."""

    def __init__(self) -> None:
        self.text: dict[int, str] = {}
        self.reasoning: dict[int, str] = {}
        self.calls: dict[int, dict[int, str]] = {}  # choice -> call index -> arguments sent

    def add(self, delta: generate_pb2.GenerateDelta) -> dict:
        """Record a delta; returns its chunk `delta`."""
        i = delta.index
        self.text[i] = self.text.get(i, "") + delta.text
        self.reasoning[i] = self.reasoning.get(i, "") + delta.reasoning
        calls = self.calls.setdefault(i, {})
        for piece in delta.tool_calls:
            calls[piece.index] = calls.get(piece.index, "") + piece.arguments
        return chunk_delta(delta)

    def rest(self, choice: generate_pb2.Choice) -> dict:
        """The chunk `delta` of what `choice` (a final message's) holds beyond what was streamed; {} when nothing."""
        i = choice.index
        out: dict = {}
        if reasoning := unsent(choice.reasoning, self.reasoning.get(i, "")):
            out["reasoning_content"] = reasoning
        if text := unsent(choice.text, self.text.get(i, "")):
            out["content"] = text
        sent, pieces = self.calls.get(i, {}), []
        for index, call in enumerate(choice.tool_calls):
            if index not in sent:
                pieces.append(tool_call_piece(generate_pb2.ToolCallDelta(
                    index=index, id=call.id, name=call.name, arguments=call.arguments)))
            elif arguments := unsent(call.arguments, sent[index]):
                pieces.append({"index": index, "function": {"arguments": arguments}})
        if pieces:
            out["tool_calls"] = pieces
        return out


def chat_completion(response: generate_pb2.GenerateResponse, completion_id: str, created: int) -> dict:
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": response.model,
        "system_fingerprint": response.served_by or None,
        "choices": [
            {"index": c.index, "message": assistant_message(c), **finish_reasons(c.finish_reason),
             "logprobs": chat_logprobs(c.logprobs), **answer_field(c)}
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
