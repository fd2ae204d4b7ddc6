"""Tool calling as domain types: the tools a request offers, how they may be used, the calls a model makes.

Validated on the way in (from_proto, the error table's field names mirror OpenAI's: `tools[i].function.parameters`,
`tool_choice`, `messages[i].tool_call_id`) and shaped for chat templates on the way to a model (`to_template`).
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass

from forgeway.v1 import generate_pb2

from .enums import TOOL_CHOICE
from .errors import InvalidArgument

TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MAX_TOOLS = 128
NO_PARAMETERS = {"type": "object", "properties": {}}


def new_call_id() -> str:
    """A fresh tool-call id, in OpenAI's shape (call_ and 24 characters)."""
    return "call_" + secrets.token_hex(12)


def check_schema(schema: object, field: str) -> None:
    """INVALID_ARGUMENT naming `field` unless `schema` is a valid JSON Schema object (Draft 2020-12)."""
    import jsonschema

    if not isinstance(schema, dict):
        raise InvalidArgument(field, "must be a JSON Schema object")
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        where = "/".join(str(p) for p in exc.path)
        raise InvalidArgument(field, f"not a valid JSON Schema{f' at {where}' if where else ''}: {exc.message}") from None
    if schema.get("type", "object") != "object":
        raise InvalidArgument(field, f"must describe an object (type 'object'), not {schema.get('type')!r}")


def arguments_errors(parameters: dict | None, arguments: str) -> list[str]:
    """Why `arguments` (JSON text) does not satisfy `parameters`; empty when it does."""
    import jsonschema

    try:
        value = json.loads(arguments)
    except json.JSONDecodeError as exc:
        return [f"not JSON: {exc}"]
    if not isinstance(value, dict):
        return ["not a JSON object"]
    validator = jsonschema.Draft202012Validator(parameters or NO_PARAMETERS)
    return [e.message for e in validator.iter_errors(value)]


@dataclass(frozen=True)
class Tool:
    """A function the model may call."""

    name: str
    description: str = ""
    parameters: dict | None = None  # a JSON Schema object; None means no arguments
    strict: bool = False

    @classmethod
    def from_proto(cls, msg: generate_pb2.Tool, index: int) -> Tool:
        fn = msg.function
        where = f"tools[{index}].function"
        if not fn.name:
            raise InvalidArgument(f"{where}.name", "required")
        if not TOOL_NAME.match(fn.name):
            raise InvalidArgument(f"{where}.name", f"{fn.name!r}: letters, digits, '_' and '-' only, at most 64")
        parameters = None
        if fn.parameters:
            try:
                parameters = json.loads(fn.parameters)
            except json.JSONDecodeError as exc:
                raise InvalidArgument(f"{where}.parameters", f"not valid JSON: {exc}") from None
            check_schema(parameters, f"{where}.parameters")
        return cls(fn.name, fn.description, parameters, fn.strict)

    def to_proto(self) -> generate_pb2.Tool:
        return generate_pb2.Tool(function=generate_pb2.FunctionDefinition(
            name=self.name, description=self.description,
            parameters=json.dumps(self.parameters) if self.parameters is not None else "", strict=self.strict))

    def to_template(self) -> dict:
        """The tool as chat templates take it: name, description, parameters (llama.cpp renders the same three)."""
        function = {"name": self.name, "description": self.description,
                    "parameters": self.parameters if self.parameters is not None else NO_PARAMETERS}
        return {"type": "function", "function": function}

    def to_openai(self) -> dict:
        """The tool as OpenAI's API takes it (strict included)."""
        tool = self.to_template()
        if self.strict:
            tool["function"]["strict"] = True
        return tool


@dataclass(frozen=True)
class ToolChoice:
    """none, auto, required, or function (a call of `function`, one of the request's tools)."""

    mode: str = "auto"
    function: str = ""

    @property
    def forced(self) -> bool:
        """The model must call a tool (required or a named function)."""
        return self.mode in ("required", "function")

    @classmethod
    def from_proto(cls, msg: generate_pb2.ToolChoice, tools: tuple[Tool, ...], present: bool) -> ToolChoice:
        mode = TOOL_CHOICE.name(msg.mode) if present and msg.mode else ("auto" if tools else "none")
        if present and msg.mode and not mode:
            raise InvalidArgument("tool_choice", f"unknown mode {msg.mode}; allowed: {', '.join(TOOL_CHOICE.names)}")
        if mode != "none" and not tools:
            raise InvalidArgument("tool_choice", f"{mode!r} needs tools; the request has none")
        if mode == "function":
            names = [t.name for t in tools]
            if not msg.function:
                raise InvalidArgument("tool_choice", "names no function")
            if msg.function not in names:
                raise InvalidArgument("tool_choice", f"function {msg.function!r} is not among the tools: "
                                                     f"{', '.join(names)}")
        return cls(mode, msg.function if mode == "function" else "")

    def to_proto(self) -> generate_pb2.ToolChoice:
        return generate_pb2.ToolChoice(mode=TOOL_CHOICE.to_value[self.mode], function=self.function)

    def callable(self, tools: tuple[Tool, ...]) -> tuple[Tool, ...]:
        """The tools the model may call under this choice."""
        if self.mode == "none":
            return ()
        if self.mode == "function":
            return tuple(t for t in tools if t.name == self.function)
        return tools


@dataclass(frozen=True)
class ToolCall:
    """A call the model made: arguments are JSON text (an object)."""

    id: str
    name: str
    arguments: str

    @classmethod
    def from_proto(cls, msg: generate_pb2.ToolCall, field: str) -> ToolCall:
        if not msg.id:
            raise InvalidArgument(f"{field}.id", "required")
        if not msg.name:
            raise InvalidArgument(f"{field}.name", "required")
        try:
            arguments = json.loads(msg.arguments or "{}")
        except json.JSONDecodeError as exc:
            raise InvalidArgument(f"{field}.arguments", f"not valid JSON: {exc}") from None
        if not isinstance(arguments, dict):
            raise InvalidArgument(f"{field}.arguments", "must be a JSON object")
        return cls(msg.id, msg.name, msg.arguments or "{}")

    def to_proto(self) -> generate_pb2.ToolCall:
        return generate_pb2.ToolCall(id=self.id, name=self.name, arguments=self.arguments)

    def to_template(self) -> dict:
        """The call as chat templates render it (arguments as an object, the way templates expect them)."""
        return {"id": self.id, "type": "function",
                "function": {"name": self.name, "arguments": json.loads(self.arguments)}}


@dataclass
class ToolCallDelta:
    """A piece of a streamed tool call: the first piece of a call has id and name, later ones argument text."""

    index: int
    id: str = ""
    name: str = ""
    arguments: str = ""

    def to_proto(self) -> generate_pb2.ToolCallDelta:
        return generate_pb2.ToolCallDelta(index=self.index, id=self.id, name=self.name, arguments=self.arguments)

    @classmethod
    def from_proto(cls, msg: generate_pb2.ToolCallDelta) -> ToolCallDelta:
        return cls(msg.index, msg.id, msg.name, msg.arguments)


class ToolCallAssembler:
    """Rebuilds whole tool calls from streamed pieces (what a client does with `delta.tool_calls`)."""

    def __init__(self):
        self._calls: dict[int, list[str]] = {}

    def add(self, piece: ToolCallDelta) -> None:
        call = self._calls.setdefault(piece.index, ["", "", ""])
        call[0] = call[0] or piece.id
        call[1] = call[1] or piece.name
        call[2] += piece.arguments

    def calls(self) -> list[ToolCall]:
        return [ToolCall(*self._calls[i]) for i in sorted(self._calls)]


def parse_tools(tools, tool_choice: generate_pb2.ToolChoice, choice_present: bool) -> tuple[tuple[Tool, ...], ToolChoice]:
    if len(tools) > MAX_TOOLS:
        raise InvalidArgument("tools", f"at most {MAX_TOOLS} tools")
    parsed = tuple(Tool.from_proto(t, i) for i, t in enumerate(tools))
    seen: set[str] = set()
    for i, tool in enumerate(parsed):
        if tool.name in seen:
            raise InvalidArgument(f"tools[{i}].function.name", f"{tool.name!r} is given twice")
        seen.add(tool.name)
    return parsed, ToolChoice.from_proto(tool_choice, parsed, choice_present)
