"""Tool calls and the thinking switch in llama-server's terms, and its answers back as domain calls.

Under tool_choice auto, llama-server's own tool-call parser (detected from the GGUF's chat template) reads the calls,
and its lazy grammar, triggered by the template's call marker, holds each call's arguments to the function's schema.
Under required and a named function the service asks for the calls as JSON (the call objects Hermes-style templates
describe, `{"name": ..., "arguments": ...}`, the arguments per the function's schema) and reads them itself: llama.cpp's own
grammar for required lets the model write any text before its first call, which a model that never writes the call
marker (a small or random one) does until max_tokens. The grammar is llama.cpp's for that schema, with at most one
space between JSON tokens (its own allows up to 22 whitespace characters at each, where a small model can spend its
whole budget); with thinking on, the schema goes as `json_schema`, whose grammar lets the reasoning come first.
The calls are read as the JSON grows (ForcedCalls), so a stream sends their arguments piece by piece.
"""

from __future__ import annotations

import json
import re

import httpx

from forgeway.core.errors import InvalidArgument
from forgeway.core.generation import GenerationRequest
from forgeway.core.tools import NO_PARAMETERS, Tool, ToolCall, ToolCallAssembler, ToolCallDelta, new_call_id


def chat_fields(request: GenerationRequest, call_grammar: str | None = None) -> dict:
    """The request's tools, tool choice and thinking switch as /v1/chat/completions fields; `call_grammar` holds a
    forced answer to its calls (else forced_schema does, as json_schema)."""
    fields: dict = {}
    if request.thinking is not None:
        fields["chat_template_kwargs"] = {"enable_thinking": request.thinking}
    if not request.calls_tools:
        if request.tools:  # tool_choice none: rendered as the template does, no call is parsed
            fields |= {"tools": request.template_tools, "tool_choice": "none"}
        return fields
    structured = request.json_schema is not None or request.json_object or request.grammar is not None
    if structured:
        raise InvalidArgument("structured_output", "llama.cpp cannot hold an answer to a response format and read "
                                                   "tool calls from it; drop structured_output or set tool_choice none")
    fields["tools"] = request.template_tools
    if request.tool_choice.forced:
        fields["tool_choice"] = "none"  # the calls come as JSON under forced_schema; the service reads them
        if call_grammar:
            fields["grammar"] = call_grammar
        else:
            fields["json_schema"] = forced_schema(request)
    else:
        fields["tool_choice"] = "auto"
        fields["parallel_tool_calls"] = request.parallel_tool_calls
    return fields


def thinks(request: GenerationRequest, default: str) -> bool:
    """Whether the template's thinking switch is on for this request (`default`: the model's `thinking` setting)."""
    return request.thinking if request.thinking is not None else default != "off"


def compact(grammar: str) -> str:
    """llama.cpp's GBNF for a JSON schema with at most one space between JSON tokens."""
    lines = [SPACE_RULE if line.startswith("space ::=") else line for line in grammar.splitlines()]
    return "\n".join(lines) + "\n"


SPACE_RULE = 'space ::= " "?'


def call_schema(tool: Tool) -> dict:
    """One call of `tool` as a JSON object: its name, then its arguments."""
    return {"type": "object", "properties": {"name": {"const": tool.name},
                                             "arguments": tool.parameters or NO_PARAMETERS},
            "required": ["name", "arguments"], "additionalProperties": False}


def forced_schema(request: GenerationRequest) -> dict:
    """The calls a forced tool choice allows: one call of the named function; under required one call of any tool,
    or a non-empty array of calls when parallel calls are allowed."""
    calls = [call_schema(t) for t in request.tool_choice.callable(request.tools)]
    one = calls[0] if len(calls) == 1 else {"anyOf": calls}
    if request.tool_choice.mode == "required" and request.parallel_tool_calls:
        return {"type": "array", "items": one, "minItems": 1}
    return one


# Where a call's arguments open in a forced answer: after `[`, `,` or the previous call's `}`,
# `{"name": "...", "arguments": {` (llama.cpp's grammar writes the properties in the schema's order).
CALL_OPEN = re.compile(r'[\s\[\],}]*\{\s*"name"\s*:\s*"([A-Za-z0-9_-]*)"\s*,\s*"arguments"\s*:\s*(?=\{)')


class ForcedCalls:
    """Reads a forced answer's calls as its JSON grows: a call's first piece (id and name) once its arguments open,
    then their text as it comes, up to where the arguments object closes. The arguments are the model's own text, so
    a stream's pieces and the whole answer read the same."""

    def __init__(self):
        self.at = 0  # where the next call may open
        self.index = -1
        self.arguments_at: int | None = None  # where the open call's arguments start
        self.sent = 0  # how much of them has been read

    def read(self, text: str) -> list[ToolCallDelta]:
        pieces = []
        while True:
            if self.arguments_at is None:
                opened = CALL_OPEN.match(text, self.at)
                if not opened:
                    return pieces
                self.index += 1
                self.arguments_at, self.sent = opened.end(), 0
                pieces.append(ToolCallDelta(self.index, new_call_id(), opened.group(1)))
            start = self.arguments_at + self.sent
            try:
                end = DECODER.raw_decode(text, self.arguments_at)[1]
            except ValueError:
                if len(text) > start:
                    pieces.append(ToolCallDelta(self.index, arguments=text[start:]))
                    self.sent = len(text) - self.arguments_at
                return pieces
            if end > start:
                pieces.append(ToolCallDelta(self.index, arguments=text[start:end]))
            self.at, self.arguments_at = end, None


DECODER = json.JSONDecoder()


def forced_calls(text: str) -> list[ToolCall]:
    """The calls in a whole forced answer."""
    assembler = ToolCallAssembler()
    for piece in ForcedCalls().read(text):
        assembler.add(piece)
    return assembler.calls()


def call_of(entry: dict) -> ToolCall:
    """One of llama-server's `message.tool_calls` (OpenAI's shape)."""
    function = entry.get("function") or {}
    arguments = function.get("arguments") or "{}"
    if not isinstance(arguments, str):
        arguments = json.dumps(arguments, ensure_ascii=False)
    return ToolCall(entry.get("id") or new_call_id(), function.get("name") or "", arguments)


def call_delta(entry: dict, ids: dict[int, str]) -> ToolCallDelta:
    """One of llama-server's streamed `delta.tool_calls` pieces; the first piece of a call carries its id (one is
    made when llama-server sends none), later ones argument text."""
    function = entry.get("function") or {}
    index = int(entry.get("index") or 0)
    first = index not in ids
    if first:
        ids[index] = entry.get("id") or new_call_id()
    return ToolCallDelta(index, ids[index] if first else "", function.get("name") or "",
                         function.get("arguments") or "")


async def template_limits(client: httpx.AsyncClient, props: dict) -> dict[str, str]:
    """What the model's chat template cannot do, as ModelInfo.unsupported: tool calls (llama.cpp's template
    capabilities), and the thinking switch (the template renders the same with enable_thinking on and off)."""
    if not props.get("chat_template"):
        return {"tools": "it has no chat template", "reasoning": "it has no chat template"}
    limits = {}
    if not (props.get("chat_template_caps") or {}).get("supports_tool_calls"):
        limits["tools"] = "its chat template has no tool calls"
    probe = [{"role": "user", "content": "Hello"}]
    renders = [(await client.post("/apply-template", json={"messages": probe, "chat_template_kwargs": {
        "enable_thinking": on}}, timeout=10.0)).json().get("prompt") for on in (True, False)]
    if renders[0] == renders[1]:
        limits["reasoning"] = "its chat template has no thinking switch"
    return limits
