"""Tools on the way out: tool definitions (OpenAI-shaped dicts or Python functions), tool_choice, and the tool calls
and tool results chat messages carry, as forgeway.v1 protos."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from forgeway.core.enums import TOOL_CHOICE
from forgeway.v1 import generate_pb2

from .errors import invalid_argument
from .schema import function_name, function_tool

ToolLike = Mapping[str, Any] | Callable[..., Any] | generate_pb2.Tool


def tool(item: ToolLike | Any, index: int = 0) -> generate_pb2.Tool:
    """A Tool from {"type": "function", "function": {name, description, parameters, strict}} (OpenAI's shape), the
    bare function definition, a Python function (its schema from the signature and docstring), or a Tool proto."""
    if isinstance(item, generate_pb2.Tool):
        return item
    if hasattr(item, "to_proto") and hasattr(item, "parameters"):  # forgeway.core.tools.Tool
        return item.to_proto()
    if callable(item) and not isinstance(item, Mapping):
        item = function_tool(item)
    if not isinstance(item, Mapping):
        raise invalid_argument(f"tools[{index}]", f"a tool is an OpenAI tool dict or a Python function, not "
                                                  f"{type(item).__name__}")
    if item.get("type", "function") != "function":
        raise invalid_argument(f"tools[{index}].type", f"only function tools are offered, not {item['type']!r}")
    function = item.get("function", item)
    parameters = function.get("parameters")
    return generate_pb2.Tool(function=generate_pb2.FunctionDefinition(
        name=str(function.get("name", "")), description=str(function.get("description") or ""),
        parameters=parameters if isinstance(parameters, str) else json.dumps(parameters) if parameters else "",
        strict=bool(function.get("strict", False))))


def tool_choice(value: str | Mapping[str, Any] | Callable[..., Any]) -> generate_pb2.ToolChoice:
    """"none", "auto", "required", a function's name (or the function itself), or OpenAI's
    {"type": "function", "function": {"name": ...}}: a call of that function."""
    if isinstance(value, Mapping):
        function = value.get("function") or {}
        name = function.get("name") if isinstance(function, Mapping) else None
        value = name or value.get("name") or value.get("type", "")
    elif callable(value):
        value = function_name(value)
    if not isinstance(value, str) or not value:
        raise invalid_argument("tool_choice", "none, auto, required or a function's name")
    if value in TOOL_CHOICE.names and value != "function":
        return generate_pb2.ToolChoice(mode=TOOL_CHOICE.to_value[value])
    return generate_pb2.ToolChoice(mode=generate_pb2.TOOL_CHOICE_MODE_FUNCTION, function=value)


def tool_call(item: Any, field: str) -> generate_pb2.ToolCall:
    """A ToolCall from a result's ToolCall, OpenAI's {"id", "type", "function": {"name", "arguments"}} or a flat
    {"id", "name", "arguments"}; arguments may be JSON text or a dict."""
    if isinstance(item, Mapping):
        function = item.get("function") or item
        call_id, name, arguments = item.get("id", ""), function.get("name", ""), function.get("arguments", "")
    elif hasattr(item, "name") and hasattr(item, "arguments"):
        call_id, name, arguments = item.id, item.name, item.arguments
    else:
        raise invalid_argument(field, f"a tool call is a mapping or a ToolCall, not {type(item).__name__}")
    if not isinstance(arguments, str):
        arguments = json.dumps(arguments)
    return generate_pb2.ToolCall(id=str(call_id), name=str(name), arguments=arguments)


def chat_message(item: Mapping[str, Any], index: int) -> generate_pb2.Message:
    """A Message from an OpenAI-style dict: role, content (None on a message that only calls tools), tool_calls,
    tool_call_id, and reasoning (or reasoning_content)."""
    message = generate_pb2.Message(role=str(item.get("role", "")), content=str(item.get("content") or ""),
                                   tool_call_id=str(item.get("tool_call_id") or ""),
                                   reasoning=str(item.get("reasoning") or item.get("reasoning_content") or ""))
    message.tool_calls.extend(tool_call(c, f"messages[{index}].tool_calls[{j}]")
                              for j, c in enumerate(item.get("tool_calls") or ()))
    return message
