"""The tool loop with local Python functions: the model calls, the functions run, their results go back as tool
messages, and the model is called again, until it answers with content."""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from . import types
from .errors import invalid_argument
from .schema import function_name, function_tool

ToolChoice = str | Mapping[str, Any] | Callable[..., Any]
ToolChoices = ToolChoice | Sequence[ToolChoice]


@dataclass(frozen=True)
class ToolResult:
    """A call the model made and what running it gave: the tool message's content, and the exception the function
    raised (its text is what the model was sent) or None."""

    call: types.ToolCall
    content: str
    error: BaseException | None = None


@dataclass(frozen=True)
class ToolRun:
    """The end of a tool loop: the final generation, every message (the ones given, then each assistant and tool
    message), the calls run in order, and how many tool rounds there were."""

    final: types.Generation
    messages: list[dict[str, Any]]
    results: tuple[ToolResult, ...]
    rounds: int

    @property
    def text(self) -> str:
        return self.final.text


class ToolLoop:
    """The loop's state and decisions, shared by Client.run_tools and AsyncClient.run_tools (which only call the
    model and run the functions).

    Each model call k uses tool_choice[k] (a single value for every call; the last of a sequence repeats). After
    max_rounds rounds of tool calls the model is called once more with tool_choice "none", so that it answers.
    """

    def __init__(self, messages: Iterable[Any], functions: Iterable[Callable[..., Any]], max_rounds: int,
                 tool_choice: ToolChoices, options: Mapping[str, Any]):
        if max_rounds < 1:
            raise invalid_argument("max_rounds", "must be at least 1")
        self.functions = {function_name(f): f for f in functions}
        if not self.functions:
            raise invalid_argument("functions", "give at least one function to call")
        self.messages = [_as_dict(m) for m in messages]
        single = isinstance(tool_choice, str | Mapping) or callable(tool_choice)
        self.choices = [tool_choice] if single else list(tool_choice)
        self.options = dict(options)
        self.tools = [function_tool(f) for f in self.functions.values()] + list(self.options.pop("tools", ()))
        self.max_rounds, self.rounds = max_rounds, 0
        self.results: list[ToolResult] = []

    def request(self) -> dict[str, Any]:
        """The next chat call's keyword arguments."""
        choice = "none" if self.rounds >= self.max_rounds else self.choices[min(self.rounds, len(self.choices) - 1)]
        return {**self.options, "messages": list(self.messages), "tools": self.tools, "tool_choice": choice}

    def answered(self, generation: types.Generation) -> tuple[types.ToolCall, ...]:
        """Record the model's reply; the calls to run now (none: the loop is over). Calls cut short (finish reason
        "length") are not run: the reply ends the loop, as it came."""
        self.messages.append(generation.message)
        if self.rounds >= self.max_rounds or generation.finish_reason != "tool_calls":
            return ()
        self.rounds += 1
        return generation.tool_calls

    def start(self, call: types.ToolCall) -> Any:
        """Run the function `call` names with its arguments: its return value (maybe awaitable), or an exception
        raised by the function or by the call's name or arguments (the model is told, as agent frameworks do)."""
        function = self.functions.get(call.name)
        if function is None:
            return LookupError(f"no function named {call.name!r}; there are: {', '.join(self.functions)}")
        try:
            return function(**call.args)
        except Exception as exc:  # the model made a mistake or the function failed: it reads why and may retry
            return exc

    def finish(self, call: types.ToolCall, outcome: Any) -> None:
        """Append the tool message for `call` from its outcome (a value or an exception)."""
        if isinstance(outcome, BaseException):
            result = ToolResult(call, f"Error: {type(outcome).__name__}: {outcome}", outcome)
        else:
            result = ToolResult(call, outcome if isinstance(outcome, str) else json.dumps(outcome, default=str))
        self.results.append(result)
        self.messages.append({"role": "tool", "tool_call_id": call.id, "content": result.content})

    def done(self, final: types.Generation) -> ToolRun:
        return ToolRun(final, self.messages, tuple(self.results), self.rounds)


async def settle(outcome: Any) -> Any:
    """An awaitable outcome's value (or the exception it raised); any other outcome as it is."""
    if not inspect.isawaitable(outcome):
        return outcome
    try:
        return await outcome
    except Exception as exc:
        return exc


def _as_dict(message: Any) -> dict[str, Any]:
    if isinstance(message, Mapping):
        return dict(message)
    if isinstance(message, tuple) and len(message) == 2:
        return {"role": message[0], "content": message[1]}
    if hasattr(message, "role") and hasattr(message, "content"):
        return {"role": message.role, "content": message.content}
    raise invalid_argument("messages", f"a message is a mapping or a (role, content) pair, not "
                                       f"{type(message).__name__}")
