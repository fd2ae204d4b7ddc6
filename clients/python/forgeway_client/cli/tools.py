"""Tool calling and reasoning on the command line: --tool / --tool-choice / --thinking, and how calls and reasoning
are printed (calls on stdout, one line each; reasoning on stderr, apart from the answer)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

CALL_PREFIX = "[tool call]"
THINKING_PREFIX = "[thinking]"


def tool_json(text: str) -> list[dict[str, Any]]:
    """--tool's value: OpenAI tool JSON (one tool or a list of them), inline or in a file."""
    source = text.strip()
    if not source.startswith(("{", "[")):
        try:
            source = Path(text).expanduser().read_text()
        except OSError as exc:
            raise argparse.ArgumentTypeError(f"{text!r} is neither tool JSON nor a readable file: "
                                             f"{exc.strerror}") from None
    try:
        value = json.loads(source)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not valid JSON: {exc}") from None
    tools = value if isinstance(value, list) else [value]
    if not all(isinstance(t, dict) for t in tools):
        raise argparse.ArgumentTypeError(f"{text!r}: a tool is a JSON object")
    return tools


def add_tool_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("tools and reasoning")
    group.add_argument("--tool", type=tool_json, action="append", default=None, metavar="FILE_OR_JSON",
                       help='a tool the model may call: OpenAI tool JSON ({"type": "function", "function": {"name", '
                            '"description", "parameters"}}), or a list of them, inline or in a file (repeatable)')
    group.add_argument("--tool-choice", metavar="none|auto|required|NAME",
                       help="how the tools may be used; a function's name forces a call of it (default auto)")
    group.add_argument("--no-parallel-tool-calls", dest="parallel_tool_calls", action="store_false", default=None,
                       help="at most one tool call per reply")
    group.add_argument("--thinking", action=argparse.BooleanOptionalAction, default=None,
                       help="switch the model's thinking on or off (default: the chat template's); its reasoning is "
                            f"printed to stderr after {THINKING_PREFIX}")


def tool_options(args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {"tools": [t for group in args.tool or () for t in group]}
    for name in ("tool_choice", "parallel_tool_calls", "thinking"):
        if getattr(args, name) is not None:
            options[name] = getattr(args, name)
    return options


def wants_chat(args: argparse.Namespace) -> bool:
    """Tools and the thinking switch work through the chat template: the prompt goes as a user message."""
    return bool(args.tool) or args.thinking is not None


def call_line(call) -> str:
    """One line per call: the arguments as compact JSON (a model may write newlines between JSON tokens)."""
    try:
        arguments = json.dumps(json.loads(call.arguments), ensure_ascii=False)
    except json.JSONDecodeError:
        arguments = json.dumps(call.arguments, ensure_ascii=False)  # as a JSON string: still one line
    return f"{CALL_PREFIX} {call.name} {arguments} (id {call.id})"


def print_calls(calls) -> None:
    for call in calls:
        print(call_line(call), flush=True)


class ReasoningWriter:
    """Writes streamed reasoning to stderr after [thinking], and ends its line before the answer starts."""

    def __init__(self) -> None:
        self.open = False

    def write(self, piece: str) -> None:
        if piece:
            if not self.open:
                sys.stderr.write(f"{THINKING_PREFIX} ")
                self.open = True
            sys.stderr.write(piece)
            sys.stderr.flush()

    def close(self) -> None:
        if self.open:
            print(file=sys.stderr, flush=True)
            self.open = False


def print_reasoning(text: str) -> None:
    writer = ReasoningWriter()
    writer.write(text)
    writer.close()
