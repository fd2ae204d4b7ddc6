"""A Python function's JSON Schema, from its signature and docstring, to offer it to a model as a tool.

transformers has this (`transformers.utils.get_json_schema`), but the SDK must not need transformers, and its schemas
say `"nullable": true`, which is not JSON Schema: backends that enforce the schema by constrained decoding (hf,
llama.cpp) refuse or ignore it. Here an optional value is `anyOf: [..., {"type": "null"}]`.
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
import re
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any

SIMPLE = {str: "string", int: "integer", float: "number", bool: "boolean", type(None): "null"}
# Google style ("Args:" then "name (type): text") and reST (":param name: text").
SECTION = re.compile(r"^\s*(Args|Arguments|Parameters|Returns?|Raises|Yields|Examples?|Notes?)\s*:\s*$")
GOOGLE_ARG = re.compile(r"^(\s+)(\*{0,2}\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")
ARG_SECTIONS = ("args", "arguments", "parameters")
REST_PARAM = re.compile(r"^\s*:param\s+(?:[^:]*\s)?(\w+)\s*:\s*(.*)$")


def function_tool(func: Callable[..., Any]) -> dict[str, Any]:
    """The OpenAI-shaped tool ({"type": "function", "function": {name, description, parameters}}) of `func`:
    one property per parameter (typed from its annotation, described from the docstring's Args or :param lines, and
    refined by Annotated metadata: a string describes, a dict adds schema keywords), required unless it has a
    default. *args and **kwargs are not offered."""
    summary, described = docstring(inspect.getdoc(func) or "")
    hints = type_hints(func)
    properties: dict[str, Any] = {}
    required: list[str] = []
    for name, parameter in inspect.signature(func).parameters.items():
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        prop = value_schema(hints.get(name, Any))
        if name in described:
            prop = {**prop, "description": described[name]}
        properties[name] = prop
        if parameter.default is parameter.empty:
            required.append(name)
    parameters: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        parameters["required"] = required
    function = {"name": function_name(func), "description": summary,
                "parameters": parameters}
    return {"type": "function", "function": function}


def function_name(func: Callable[..., Any]) -> str:
    """The name the model calls `func` by: its __name__, or its class's for a callable object."""
    return getattr(func, "__name__", type(func).__name__)


def type_hints(func: Callable[..., Any]) -> dict[str, Any]:
    """The parameters' annotations, string ones (from __future__ annotations) resolved where they can be."""
    try:
        return typing.get_type_hints(func, include_extras=True)
    except Exception:  # a name only the caller's scope knows, or a callable get_type_hints cannot read
        return {name: p.annotation for name, p in inspect.signature(func).parameters.items()
                if p.annotation is not p.empty and not isinstance(p.annotation, str)}


def value_schema(hint: Any) -> dict[str, Any]:
    """The JSON Schema of values of a type annotation; {} (anything) for what has no JSON shape."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Annotated:  # Annotated[str, "a description", {"maxLength": 12}]: text and schema keywords
        schema = value_schema(args[0])
        for note in args[1:]:
            schema.update({"description": note} if isinstance(note, str) else note if isinstance(note, dict) else {})
        return schema
    if hint in SIMPLE:
        return {"type": SIMPLE[hint]}
    if origin is typing.Literal:
        return {**_common_type(args), "enum": list(args)}
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        values = [member.value for member in hint]
        return {**_common_type(values), "enum": values}
    if origin in (typing.Union, types.UnionType):
        return {"anyOf": [value_schema(a) for a in args]}
    if origin is tuple and args and args[-1] is not Ellipsis:
        return {"type": "array", "prefixItems": [value_schema(a) for a in args], "minItems": len(args),
                "maxItems": len(args)}
    container = origin or hint
    if isinstance(container, type) and issubclass(container, Mapping):
        return {"type": "object", **({"additionalProperties": value_schema(args[1])} if len(args) == 2 else {})}
    if isinstance(container, type) and issubclass(container, Sequence | set | frozenset) and container is not str:
        return {"type": "array", **({"items": value_schema(args[0])} if args else {})}
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return function_tool(hint)["function"]["parameters"]
    if hasattr(hint, "model_json_schema"):  # a pydantic model
        return hint.model_json_schema()
    return {}


def _common_type(values: Sequence[Any]) -> dict[str, Any]:
    kinds = {SIMPLE.get(type(v)) for v in values}
    return {"type": kinds.pop()} if len(kinds) == 1 and None not in kinds else {}


def docstring(text: str) -> tuple[str, dict[str, str]]:
    """(the description before the first section, {parameter: its description})."""
    summary: list[str] = []
    described: dict[str, str] = {}
    section, current, indent = None, None, 0
    for line in text.splitlines():
        if match := SECTION.match(line):
            section, current, indent = match.group(1).lower(), None, 0
            continue
        google = GOOGLE_ARG.match(line) if section in ARG_SECTIONS else None
        if match := REST_PARAM.match(line):
            section, current = "rest", match.group(1)
            described[current] = match.group(2).strip()
        elif google and (not indent or len(google.group(1)) <= indent):  # deeper lines continue the last one
            indent, current = len(google.group(1)), google.group(2).lstrip("*")
            described[current] = google.group(3).strip()
        elif section is None:
            summary.append(line.strip())
        elif current and line.strip() and section in (*ARG_SECTIONS, "rest"):
            described[current] = f"{described[current]} {line.strip()}"
        elif not line.strip() and section == "rest":
            current = None
    return " ".join(" ".join(summary).split()), described
